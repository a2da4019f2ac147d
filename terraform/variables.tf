# Inputs. Secrets are marked sensitive and have no defaults; terraform.tfvars.example shows
# every variable with a placeholder. docs/DEPLOY.md walks through choosing the values.

# --- Hetzner Cloud ----------------------------------------------------------------------

variable "hcloud_token" {
  description = "Hetzner Cloud API token (read/write). Leave null and export HCLOUD_TOKEN instead, which keeps it out of files."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.hcloud_token == null || length(coalesce(var.hcloud_token, "x")) == 64
    error_message = "A Hetzner Cloud API token is 64 characters long."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name and the `app` label, so several deployments can share a Hetzner project."
  type        = string
  default     = "marketplace"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "Use 2-21 characters: lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "server_image" {
  description = "OS image of every server. Ubuntu, because its archive ships Docker (docker.io) and the Compose v2 plugin (docker-compose-v2) as distribution packages."
  type        = string
  default     = "ubuntu-24.04"

  validation {
    condition     = can(regex("^ubuntu-[0-9]{2}\\.04$", var.server_image))
    error_message = "Use an Ubuntu LTS image name such as ubuntu-24.04 (cloud-init installs docker.io and docker-compose-v2 from its archive)."
  }
}

variable "delete_protection" {
  description = "Hetzner delete protection on the core server and its data volume. Turn off (and apply) before `terraform destroy`."
  type        = bool
  default     = true
}

# --- core server --------------------------------------------------------------------------

variable "core_location" {
  description = "Location of the core server (Redis, ClickHouse, S3, consumers, reporter, Grafana, Tempo, Prometheus). Must be in network zone eu-central, where the private network is."
  type        = string
  default     = "fsn1"

  validation {
    condition     = contains(["fsn1", "nbg1", "hel1"], var.core_location)
    error_message = "The core must be in fsn1, nbg1 or hel1 (network zone eu-central)."
  }
}

variable "core_server_type" {
  description = "Server type of the core. Dedicated vCPUs (ccx*) keep ClickHouse merges predictable; see `hcloud server-type list`."
  type        = string
  default     = "ccx23"

  validation {
    condition     = can(regex("^[a-z]+[0-9]+$", var.core_server_type))
    error_message = "Use a Hetzner server type name such as ccx23."
  }
}

variable "core_volume_size_gb" {
  description = "Size of the core's data volume in GB. It holds all Docker state: ClickHouse data and backups, the Redis AOF, S3 objects, Prometheus and Tempo data, and the images."
  type        = number
  default     = 100

  validation {
    condition     = var.core_volume_size_gb >= 20 && var.core_volume_size_gb <= 10240 && floor(var.core_volume_size_gb) == var.core_volume_size_gb
    error_message = "Use a whole number of GB between 20 and 10240."
  }
}

variable "core_replica" {
  description = <<-EOT
    Opt-in second core node (docs/DEPLOY.md, "High availability"): a server with its own data
    volume that holds a replica of Redis and of ClickHouse and runs a consumer, plus a small
    witness server for the third Redis Sentinel and ClickHouse Keeper (two machines cannot
    hold a quorum of three). The core, the replica and the witness then survive the loss of
    any one of them with no acknowledged event lost. Off by default: no change to a plan.
    Locations must be in eu-central (the private network); put each on its own.
  EOT
  type = object({
    enabled             = optional(bool, false)
    location            = optional(string, "nbg1")
    server_type         = optional(string, "ccx23")
    volume_size_gb      = optional(number, 100)
    witness_location    = optional(string, "hel1")
    witness_server_type = optional(string, "cx22")
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["fsn1", "nbg1", "hel1"], var.core_replica.location) && contains(["fsn1", "nbg1", "hel1"], var.core_replica.witness_location)
    error_message = "The core replica and the witness must be in fsn1, nbg1 or hel1 (network zone eu-central)."
  }

  validation {
    condition     = var.core_replica.volume_size_gb >= 20 && var.core_replica.volume_size_gb <= 10240 && floor(var.core_replica.volume_size_gb) == var.core_replica.volume_size_gb
    error_message = "Use a whole number of GB between 20 and 10240 for core_replica.volume_size_gb."
  }
}

variable "consumer_replicas" {
  description = "Consumer containers on the core (CONSUMER_REPLICAS); each loads batches from Redis into ClickHouse."
  type        = number
  default     = 2

  validation {
    condition     = var.consumer_replicas >= 1 && var.consumer_replicas <= 32 && floor(var.consumer_replicas) == var.consumer_replicas
    error_message = "Use a whole number between 1 and 32."
  }
}

variable "redis_maxmemory" {
  description = "Redis memory limit on the core (REDIS_MAXMEMORY). At the limit Redis refuses writes (noeviction) and gateways push back; leave room for ClickHouse."
  type        = string
  default     = "4gb"

  validation {
    condition     = can(regex("^[0-9]+(mb|gb)$", var.redis_maxmemory))
    error_message = "Use a size like 512mb or 4gb."
  }
}

variable "reporter_at" {
  description = "Time of day (HH:MM, UTC) the reporter writes the daily reports (REPORTER_AT)."
  type        = string
  default     = "02:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.reporter_at))
    error_message = "Use HH:MM in 24-hour UTC time, e.g. 02:00."
  }
}

# --- gateways -----------------------------------------------------------------------------

variable "gateways_per_location" {
  description = "Edge gateways per Hetzner location. Europe: fsn1, nbg1, hel1 (on the private network); America: ash (us-east), hil (us-west); Asia: sin (ap-southeast), the latter three over WireGuard. Gateways are named <location>-<n>, e.g. ash-1."
  type        = map(number)
  default = {
    fsn1 = 1
    ash  = 1
    sin  = 1
  }

  validation {
    condition     = alltrue([for location in keys(var.gateways_per_location) : contains(["fsn1", "nbg1", "hel1", "ash", "hil", "sin"], location)])
    error_message = "Locations must be among fsn1, nbg1, hel1 (Europe), ash, hil (America) and sin (Asia)."
  }

  validation {
    condition     = alltrue([for n in values(var.gateways_per_location) : n >= 0 && n <= 19 && floor(n) == n])
    error_message = "Each count must be a whole number from 0 to 19 (each location has 19 reserved addresses)."
  }

  validation {
    condition     = sum(concat([0], values(var.gateways_per_location))) >= 1
    error_message = "Run at least one gateway."
  }
}

variable "gateway_server_type" {
  description = "Server type of the gateways; it must be offered in every location used (ccx* is available in all six)."
  type        = string
  default     = "ccx13"

  validation {
    condition     = can(regex("^[a-z]+[0-9]+$", var.gateway_server_type))
    error_message = "Use a Hetzner server type name such as ccx13."
  }
}

variable "stores_file" {
  description = "Path (relative to the directory you run terraform in) of the TOML stores file the gateways authenticate against: [[store]] id, region, token_sha256, max_events_per_second, max_bytes_per_second."
  type        = string

  validation {
    condition     = fileexists(var.stores_file)
    error_message = "The stores file does not exist."
  }
}

variable "gateway_tls_cert_file" {
  description = "Path of the gateways' TLS certificate chain (PEM), valid for the names stores connect to. null: plaintext gRPC, which the plan refuses unless gateway_insecure_demo accepts it."
  type        = string
  default     = null

  validation {
    condition     = var.gateway_tls_cert_file == null || fileexists(coalesce(var.gateway_tls_cert_file, "/nonexistent"))
    error_message = "The certificate file does not exist."
  }
}

variable "gateway_insecure_demo" {
  description = "Only for a demo: \"i-understand-this-gateway-is-unsafe\" lets the gateways run without TLS or with the published demo tokens of deploy/stores.example.toml. Otherwise the plan stops (module gateway_exposure) and the gateways refuse to start."
  type        = string
  default     = ""
}

variable "gateway_tls_key_file" {
  description = "Path of the private key (PEM) of gateway_tls_cert_file. Set both or neither."
  type        = string
  default     = null

  validation {
    condition     = var.gateway_tls_key_file == null || fileexists(coalesce(var.gateway_tls_key_file, "/nonexistent"))
    error_message = "The key file does not exist."
  }
}

# --- probers ------------------------------------------------------------------------------

variable "prober_targets_file" {
  description = "Path of the prober targets file (format: deploy/prober/targets.example.toml, prober/src/targets.rs). Set, every gateway node runs a prober that probes these targets from the node's region and publishes to the gateway beside it; null: no probers."
  type        = string
  default     = null

  validation {
    condition     = var.prober_targets_file == null || fileexists(coalesce(var.prober_targets_file, "/nonexistent"))
    error_message = "The prober targets file does not exist."
  }
}

variable "prober_tokens" {
  description = "With prober_targets_file: the prober token of every region that has gateways, e.g. { europe = \"...\", asia = \"...\" }. Each must be the token of a `role = \"prober\"` entry of that region in stores_file (`gateway stores add --id prober-<region> --region <region> --role prober --stores-file <stores_file>` prints it)."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for region in keys(var.prober_tokens) : contains(["europe", "america", "asia"], region)])
    error_message = "prober_tokens is keyed by region: europe, america or asia."
  }
}

variable "prober_gateway_tls_domain" {
  description = "With TLS and probers: a name the gateways' certificate carries (e.g. eu.ingest.example.com). Each prober reaches its gateway as https://gateway:50051 and checks the certificate against this name (PROBER_GATEWAY_TLS_DOMAIN)."
  type        = string
  default     = null
}

variable "prober_gateway_ca_file" {
  description = "Path of the PEM CA the gateways' certificate chains to, when it is a private CA; null: the probers trust the image's system roots."
  type        = string
  default     = null

  validation {
    condition     = var.prober_gateway_ca_file == null || fileexists(coalesce(var.prober_gateway_ca_file, "/nonexistent"))
    error_message = "The prober gateway CA file does not exist."
  }
}

# --- access -------------------------------------------------------------------------------

variable "ssh_public_keys" {
  description = "Admin SSH public keys installed for root on every server, by name."
  type        = map(string)

  validation {
    condition     = length(var.ssh_public_keys) > 0
    error_message = "Give at least one SSH public key."
  }

  validation {
    condition     = alltrue([for key in values(var.ssh_public_keys) : can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$", key))])
    error_message = "Each value must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)."
  }
}

variable "admin_cidrs" {
  description = "Networks allowed to reach SSH (22) on every server, and Grafana (3000) on the core unless grafana_cidrs is set."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for cidr in var.admin_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Give at least one CIDR, e.g. 203.0.113.7/32 or 2001:db8::/48."
  }

  validation {
    condition     = !anytrue([for cidr in var.admin_cidrs : contains(["0.0.0.0/0", "::/0"], cidr)])
    error_message = "SSH must not be open to the whole internet: list your admin networks."
  }
}

variable "grafana_cidrs" {
  description = "Networks allowed to reach Grafana (3000) on the core. null: the admin_cidrs; []: nobody (use an SSH tunnel: ssh -L 3000:localhost:3000 root@core)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.grafana_cidrs == null ? true : alltrue([for cidr in var.grafana_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Each entry must be a CIDR."
  }
}

variable "store_cidrs" {
  description = "Networks the stores connect from: the only sources allowed to reach the gateways' gRPC port (50051). 0.0.0.0/0 and ::/0 are allowed when stores are everywhere; the gateway still requires their tokens."
  type        = list(string)

  validation {
    condition     = length(var.store_cidrs) > 0 && alltrue([for cidr in var.store_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Give at least one CIDR."
  }
}

# --- images -------------------------------------------------------------------------------

variable "pipeline_image" {
  description = "The pipeline image (gateway, consumer, reporter) in a registry the servers can pull from, pinned by version tag or digest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]{1,128}|@sha256:[0-9a-f]{64})$", var.pipeline_image)) && !endswith(var.pipeline_image, ":latest")
    error_message = "Use registry/path/name:version (or @sha256:digest); :latest is not a version."
  }
}

variable "registry_server" {
  description = "Registry to `docker login` to before pulling pipeline_image, e.g. ghcr.io. null: the image is public."
  type        = string
  default     = null
}

variable "registry_username" {
  description = "User for registry_server."
  type        = string
  default     = null
}

variable "registry_password" {
  description = "Password or read-only token for registry_server (only pull rights are needed)."
  type        = string
  default     = null
  sensitive   = true
}

# --- secrets ------------------------------------------------------------------------------
# Generate each with `openssl rand -hex 32`. Letters, digits, '-' and '_' only: they are
# embedded in URLs (REDIS_URL) and in .env files.

variable "redis_password" {
  description = "Password of the Redis user admin (operators, healthchecks; deploy/redis/users.acl)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.redis_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "redis_gateway_password" {
  description = "Password of the Redis user gateway: XADD to the stream and backpressure reads only, so a compromised edge gateway cannot delete or trim the queue. Held by every gateway."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.redis_gateway_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "redis_consumer_password" {
  description = "Password of the Redis user consumer (the consumer group's commands on the stream). Stays on the core."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.redis_consumer_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "clickhouse_user" {
  description = "ClickHouse user of the consumer and the reporter (CLICKHOUSE_USER)."
  type        = string
  default     = "pipeline"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,31}$", var.clickhouse_user)) && var.clickhouse_user != "default" && var.clickhouse_user != "grafana_ro"
    error_message = "Use a lowercase identifier other than default and grafana_ro."
  }
}

variable "clickhouse_password" {
  description = "Password of clickhouse_user."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.clickhouse_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "clickhouse_grafana_password" {
  description = "Password of the read-only ClickHouse user grafana_ro that Grafana queries with."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.clickhouse_grafana_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "s3_access_key_id" {
  description = "Access key of the core's S3 (SeaweedFS) and of the reporter (AWS_ACCESS_KEY_ID)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{16,128}$", var.s3_access_key_id))
    error_message = "Use 16-128 characters from A-Z a-z 0-9 - _."
  }
}

variable "s3_secret_access_key" {
  description = "Secret key of that pair (AWS_SECRET_ACCESS_KEY)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.s3_secret_access_key))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

variable "grafana_admin_password" {
  description = "Password of Grafana's admin user."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{24,128}$", var.grafana_admin_password))
    error_message = "Use 24-128 characters from A-Z a-z 0-9 - _ (openssl rand -hex 32)."
  }
}

# --- WireGuard (core <-> gateways outside eu-central) ---------------------------------------
# Keys: `wg genkey | tee private.key | wg pubkey > public.key`, one pair for the core and
# one per gateway in ash, hil or sin.

variable "wireguard_port" {
  description = "UDP port the core's WireGuard listens on; the firewall opens it to the remote gateways' addresses only."
  type        = number
  default     = 51820

  validation {
    condition     = var.wireguard_port >= 1024 && var.wireguard_port <= 65535 && floor(var.wireguard_port) == var.wireguard_port
    error_message = "Use a port from 1024 to 65535."
  }
}

variable "wireguard_core_private_key" {
  description = "The core's WireGuard private key (base64)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", var.wireguard_core_private_key))
    error_message = "Not a WireGuard key (44 characters of base64 from `wg genkey`)."
  }
}

variable "wireguard_core_public_key" {
  description = "The core's WireGuard public key (`wg pubkey` of the private key)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", var.wireguard_core_public_key))
    error_message = "Not a WireGuard key (44 characters of base64 from `wg pubkey`)."
  }
}

variable "wireguard_gateway_keys" {
  description = "WireGuard key pair of every gateway outside Europe, by gateway name (ash-1, hil-1, sin-1, ...). European gateways use the private network and need none."
  type = map(object({
    private_key = string
    public_key  = string
  }))
  default   = {}
  sensitive = true

  validation {
    condition = alltrue(flatten([
      for pair in values(var.wireguard_gateway_keys) : [
        can(regex("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", pair.private_key)),
        can(regex("^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", pair.public_key)),
      ]
    ]))
    error_message = "Every private_key and public_key must be a WireGuard key (44 characters of base64)."
  }
}

# --- operations ---------------------------------------------------------------------------

variable "sync_core_over_ssh" {
  description = "Push the core's WireGuard peers and Prometheus gateway targets over SSH whenever the set of gateways changes (needs ssh-agent access to one of ssh_public_keys and an address in admin_cidrs). It also pushes the Grafana dashboards, which do not fit in the user data. false: cloud-init writes the peers and targets once, at the core's first boot only, and the dashboards must be copied by hand (docs/DEPLOY.md)."
  type        = bool
  default     = true
}

variable "log_format" {
  description = "LOG_FORMAT of the services: json (for log shippers) or text."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "Use json or text."
  }
}

variable "rust_log" {
  description = "RUST_LOG filter of the services."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_:=,.-]+$", var.rust_log))
    error_message = "Use a tracing filter such as info or info,consumer=debug."
  }
}
