# The pipeline on Hetzner Cloud: one core server (Redis, ClickHouse, S3, consumers, reporter,
# Grafana, Tempo, Prometheus) in eu-central, and edge gateways close to the stores in Europe,
# America and Asia. docs/DEPLOY.md explains the design and the day-to-day operations.
#
# How the gateways reach the core's Redis (and Tempo):
# - Europe (fsn1, nbg1, hel1): the Hetzner private network, zone eu-central.
# - America (ash: us-east, hil: us-west) and Asia (sin: ap-southeast): Hetzner private networks
#   do not span network zones, so each of these gateways has a WireGuard tunnel to the core
#   (authenticated by key pairs from variables, encrypted end to end).
# Redis and OTLP are published only on the core's private and WireGuard addresses; the
# firewall opens nothing but SSH and Grafana (admin networks) and WireGuard (the remote
# gateways' addresses) on the core, and gRPC (store networks) and SSH on the gateways.
#
# Servers are provisioned once, at first boot, by cloud-init (cloud-init/*.tftpl). Later
# changes to their user data are ignored on purpose (a change would otherwise replace the core
# with all its state): upgrades roll out in place (docs/DEPLOY.md, "Upgrading"), and the one
# thing the core must learn when gateways come and go (WireGuard peers, Prometheus targets)
# is pushed over SSH by terraform_data.core_gateway_sync. The Grafana dashboards, too large for
# the 32 KiB of user data, are pushed over SSH by terraform_data.core_dashboards_sync.
#
# With prober_targets_file set, every gateway node also runs a prober (modules/prober): its
# vantage region is the node's region, and it publishes to the gateway beside it.

locals {
  # Each usable location: its region (a label on metrics), its network zone, and a slot
  # that reserves it a block of 20 addresses.
  locations = {
    fsn1 = { region = "europe", zone = "eu-central", slot = 1 }
    nbg1 = { region = "europe", zone = "eu-central", slot = 2 }
    hel1 = { region = "europe", zone = "eu-central", slot = 3 }
    ash  = { region = "america", zone = "us-east", slot = 4 }
    hil  = { region = "america", zone = "us-west", slot = 5 }
    sin  = { region = "asia", zone = "ap-southeast", slot = 6 }
  }

  network_cidr    = "10.0.0.0/16"
  subnet_cidr     = "10.0.1.0/24" # the eu-central subnet: core and European gateways
  wireguard_cidr  = "10.99.0.0/24"
  core_private_ip = cidrhost(local.subnet_cidr, 10)
  # core_replica (modules/core_replica): the second core node and the quorum's witness
  core_replica_ip   = cidrhost(local.subnet_cidr, 11)
  witness_ip        = cidrhost(local.subnet_cidr, 12)
  core_wireguard_ip = cidrhost(local.wireguard_cidr, 1)

  # Every gateway by name (<location>-<n>). Its address is the one the core reaches it at:
  # on the private network in Europe, on WireGuard elsewhere. Addresses derive from the
  # location's slot and n, never from list positions, so adding a gateway renumbers none:
  # fsn1-1 = 10.0.1.20, nbg1-1 = 10.0.1.40, ash-1 = 10.99.0.80, sin-2 = 10.99.0.121.
  gateways = merge([
    for location, count in var.gateways_per_location : {
      for n in range(1, count + 1) : "${location}-${n}" => {
        location = location
        region   = local.locations[location].region
        private  = local.locations[location].zone == "eu-central"
        address = cidrhost(
          local.locations[location].zone == "eu-central" ? local.subnet_cidr : local.wireguard_cidr,
          local.locations[location].slot * 20 + n - 1,
        )
      }
    }
  ]...)
  remote_gateways = { for name, gateway in local.gateways : name => gateway if !gateway.private }

  labels        = { app = var.name_prefix, managed-by = "terraform" }
  tls_enabled   = var.gateway_tls_cert_file != null && var.gateway_tls_key_file != null
  grafana_cidrs = var.grafana_cidrs == null ? var.admin_cidrs : var.grafana_cidrs
  repo_root     = "${path.module}/.."
}

# Stops the plan when the gateways would be unsafe on the internet (plaintext, or the
# published demo tokens) unless gateway_insecure_demo accepts it; its output feeds the
# gateways' GATEWAY_INSECURE_DEMO, where the binary applies the same rule at startup.
module "gateway_exposure" {
  source        = "./modules/gateway_exposure"
  stores_toml   = file(var.stores_file)
  tls_enabled   = local.tls_enabled
  insecure_demo = var.gateway_insecure_demo
}

# A prober on every gateway node when prober_targets_file is set, probing from the node's
# region and publishing to the gateway beside it; stops the plan when a region has no prober
# token the stores file knows (modules/prober).
module "probers" {
  source         = "./modules/prober"
  gateways       = { for name, gateway in local.gateways : name => { region = gateway.region } }
  targets_toml   = var.prober_targets_file == null ? null : file(var.prober_targets_file)
  tokens         = var.prober_tokens
  stores_toml    = file(var.stores_file)
  tls_enabled    = local.tls_enabled
  tls_domain     = var.prober_gateway_tls_domain
  gateway_ca_pem = var.prober_gateway_ca_file == null ? null : file(var.prober_gateway_ca_file)
}

# With core_replica.enabled, a second core node holding the replicas of Redis and ClickHouse,
# and a witness holding the third sentinel and keeper; renders their settings, the core's and
# the European gateways' changes, and the two servers' user data (modules/core_replica).
module "core_replica" {
  source                  = "./modules/core_replica"
  enabled                 = var.core_replica.enabled
  addresses               = { core = local.core_private_ip, replica = local.core_replica_ip, witness = local.witness_ip }
  redis_gateway_password  = var.redis_gateway_password
  redis_consumer_password = var.redis_consumer_password
  base_env                = local.core_env
  replica_files           = local.core_replica_files
  witness_files           = local.witness_files
  cloud_config_template   = "${path.module}/cloud-init/cloud-config.yaml.tftpl"
  name_prefix             = var.name_prefix
}

# --- WireGuard and Prometheus targets (what the core knows about the gateways) ----------

locals {
  core_wireguard_conf = templatefile("${path.module}/cloud-init/wireguard-core.conf.tftpl", {
    address     = local.core_wireguard_ip
    port        = var.wireguard_port
    private_key = var.wireguard_core_private_key
    peers = {
      for name, gateway in local.remote_gateways : name => {
        address    = gateway.address
        public_key = try(var.wireguard_gateway_keys[name].public_key, "MISSING")
      }
    }
  })

  gateway_wireguard_conf = {
    for name, gateway in local.remote_gateways : name => templatefile("${path.module}/cloud-init/wireguard-gateway.conf.tftpl", {
      name            = name
      address         = gateway.address
      private_key     = try(var.wireguard_gateway_keys[name].private_key, "MISSING")
      core_public_key = var.wireguard_core_public_key
      core_endpoint   = "${hcloud_server.core.ipv4_address}:${var.wireguard_port}"
      core_address    = local.core_wireguard_ip
    })
  }

  # file_sd targets for the job "gateway" in deploy/prometheus/prometheus.yml.
  gateway_targets_json = jsonencode([
    for name, gateway in local.gateways : {
      targets = ["${gateway.address}:9100"]
      labels  = { gateway = name, location = gateway.location, region = gateway.region }
    }
  ])

  # file_sd targets for the job "prober": each gateway node's prober publishes its metrics on
  # port 9101 of the node's internal address (deploy/compose.edge.yaml).
  prober_targets_json = jsonencode(!module.probers.enabled ? [] : [
    for name, gateway in local.gateways : {
      targets = ["${gateway.address}:9101"]
      labels  = { gateway = name, location = gateway.location, region = gateway.region }
    }
  ])
}

# --- what cloud-init writes --------------------------------------------------------------

locals {
  # Host settings shared by every server.
  sysctl_conf = <<-EOT
    # Docker publishes Redis, OTLP and metrics on private/WireGuard addresses only. Allowing
    # non-local binds lets it do so even when it starts before wg0 or the private NIC is up.
    net.ipv4.ip_nonlocal_bind = 1
  EOT

  # 01-: sshd keeps the first value it reads, and cloud-init writes 50-cloud-init.conf.
  sshd_conf = <<-EOT
    # Keys only (installed by Hetzner from ssh_public_keys); no passwords.
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    PermitRootLogin prohibit-password
  EOT

  docker_log_opts = { "log-driver" = "local", "log-opts" = { "max-size" = "50m", "max-file" = "5" } }

  # Every setting of the core's services (compose.yaml reads them from /opt/marketplace/.env).
  core_env = {
    COMPOSE_FILE                = "compose.yaml:deploy/compose.core.yaml"
    COMPOSE_PROJECT_NAME        = "marketplace"
    PIPELINE_IMAGE              = var.pipeline_image
    CORE_PRIVATE_IP             = local.core_private_ip
    CORE_WIREGUARD_IP           = local.core_wireguard_ip
    REDIS_PASSWORD              = var.redis_password
    REDIS_GATEWAY_PASSWORD      = var.redis_gateway_password
    REDIS_CONSUMER_PASSWORD     = var.redis_consumer_password
    REDIS_MAXMEMORY             = var.redis_maxmemory
    STREAM_KEY                  = "events"
    CONSUMER_GROUP              = "loader"
    CONSUMER_REPLICAS           = tostring(var.consumer_replicas)
    CLICKHOUSE_URL              = "http://clickhouse:8123"
    CLICKHOUSE_DATABASE         = "marketplace"
    CLICKHOUSE_USER             = var.clickhouse_user
    CLICKHOUSE_PASSWORD         = var.clickhouse_password
    CLICKHOUSE_GRAFANA_PASSWORD = var.clickhouse_grafana_password
    S3_BUCKET                   = "reports"
    AWS_ENDPOINT_URL_S3         = "http://s3:8333"
    AWS_ACCESS_KEY_ID           = var.s3_access_key_id
    AWS_SECRET_ACCESS_KEY       = var.s3_secret_access_key
    AWS_REGION                  = "us-east-1"
    REPORTER_AT                 = var.reporter_at
    GRAFANA_ADMIN_PASSWORD      = var.grafana_admin_password
    RUST_LOG                    = var.rust_log
    LOG_FORMAT                  = var.log_format
    OTEL_EXPORTER_OTLP_ENDPOINT = "http://tempo:4317"
    OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
    OTEL_TRACES_SAMPLER_ARG     = "0.1"
  }

  # The core gets the repository's compose.yaml and deploy/ files it uses, byte for byte.
  core_repo_files = setunion(
    ["compose.yaml", "deploy/compose.core.yaml"],
    var.core_replica.enabled ? ["deploy/compose.ha-hosts.yaml"] : [],
    fileset(local.repo_root, "deploy/clickhouse/**"),
    fileset(local.repo_root, "deploy/prometheus/**"),
    fileset(local.repo_root, "deploy/tempo/**"),
    # The dashboards are pushed over SSH (terraform_data.core_dashboards_sync): with them the
    # user data would exceed Hetzner's 32 KiB limit.
    [for path in fileset(local.repo_root, "deploy/grafana/**") : path if !startswith(path, "deploy/grafana/dashboards/")],
    fileset(local.repo_root, "deploy/redis/**"),
  )
  dashboard_files = sort(fileset(local.repo_root, "deploy/grafana/dashboards/*.json"))
  # ...as cloud-init files (the core and, with core_replica, its replica get the same)
  core_repo_file_entries = {
    for path in local.core_repo_files : "/opt/marketplace/${path}" => {
      mode = "0644", content = file("${local.repo_root}/${path}")
    } if !endswith(path, ".gitkeep")
  }

  registry_files = var.registry_server == null ? {} : {
    "/etc/marketplace/registry-password" = { mode = "0600", content = var.registry_password == null ? "" : var.registry_password }
  }

  core_files = merge(
    local.core_repo_file_entries,
    {
      "/opt/marketplace/.env" = {
        mode = "0600", content = join("", [for key, value in merge(local.core_env, module.core_replica.core_env) : "${key}=${value}\n"])
      }
      "/opt/marketplace/deploy/prometheus/targets/gateways.json" = {
        mode = "0644", content = local.gateway_targets_json
      }
      "/opt/marketplace/deploy/prometheus/targets/probers.json" = {
        mode = "0644", content = local.prober_targets_json
      }
      # Grafana re-reads this folder every 30 s; core_dashboards_sync fills it.
      "/opt/marketplace/deploy/grafana/dashboards/README" = {
        mode = "0644", content = "Pushed over SSH by terraform_data.core_dashboards_sync (terraform/main.tf).\n"
      }
      "/etc/wireguard/wg0.conf"                    = { mode = "0600", content = local.core_wireguard_conf }
      "/etc/sysctl.d/90-marketplace.conf"          = { mode = "0644", content = local.sysctl_conf }
      "/etc/ssh/sshd_config.d/01-marketplace.conf" = { mode = "0644", content = local.sshd_conf }
      "/etc/docker/daemon.json" = {
        # All Docker state on the data volume: the root disk holds nothing worth keeping.
        mode = "0644", content = jsonencode(merge(local.docker_log_opts, { "data-root" = "/mnt/data/docker" }))
      }
      "/etc/systemd/system/docker.service.d/marketplace.conf" = {
        mode    = "0644"
        content = <<-EOT
          # Docker needs its data volume, and publishes ports on wg0's address.
          [Unit]
          RequiresMountsFor=/mnt/data
          Wants=wg-quick@wg0.service
          After=wg-quick@wg0.service
        EOT
      }
      "/usr/local/sbin/marketplace-bootstrap" = {
        mode = "0700"
        content = templatefile("${path.module}/cloud-init/core-bootstrap.sh.tftpl", {
          volume_id         = hcloud_volume.core_data.id
          wireguard         = true
          registry_server   = var.registry_server
          registry_username = var.registry_username
        })
      }
    },
    module.core_replica.core_files,
    local.registry_files,
  )

  # The second core node (core_replica): the core's repository files, host settings and
  # bootstrap, with its own data volume and no WireGuard; the module adds its .env and
  # coordination files.
  core_replica_files = !var.core_replica.enabled ? {} : merge(
    local.core_repo_file_entries,
    {
      "/etc/sysctl.d/90-marketplace.conf"          = { mode = "0644", content = local.sysctl_conf }
      "/etc/ssh/sshd_config.d/01-marketplace.conf" = { mode = "0644", content = local.sshd_conf }
      "/etc/docker/daemon.json" = {
        mode = "0644", content = jsonencode(merge(local.docker_log_opts, { "data-root" = "/mnt/data/docker" }))
      }
      "/etc/systemd/system/docker.service.d/marketplace.conf" = {
        mode    = "0644"
        content = <<-EOT
          # Docker needs its data volume.
          [Unit]
          RequiresMountsFor=/mnt/data
        EOT
      }
      "/usr/local/sbin/marketplace-bootstrap" = {
        mode = "0700"
        content = templatefile("${path.module}/cloud-init/core-bootstrap.sh.tftpl", {
          volume_id         = hcloud_volume.core_replica_data[0].id
          wireguard         = false
          registry_server   = var.registry_server
          registry_username = var.registry_username
        })
      }
    },
    local.registry_files,
  )

  # The witness: a sentinel and a keeper, nothing on a volume; bootstrapped like a gateway in
  # eu-central (Docker, then `docker compose up`).
  witness_files = !var.core_replica.enabled ? {} : merge(
    {
      for path in ["compose.yaml", "deploy/compose.core.yaml", "deploy/compose.ha-hosts.yaml"] : "/opt/marketplace/${path}" => {
        mode = "0644", content = file("${local.repo_root}/${path}")
      }
    },
    {
      "/etc/sysctl.d/90-marketplace.conf"          = { mode = "0644", content = local.sysctl_conf }
      "/etc/ssh/sshd_config.d/01-marketplace.conf" = { mode = "0644", content = local.sshd_conf }
      "/etc/docker/daemon.json"                    = { mode = "0644", content = jsonencode(local.docker_log_opts) }
      "/usr/local/sbin/marketplace-bootstrap" = {
        mode = "0700"
        content = templatefile("${path.module}/cloud-init/gateway-bootstrap.sh.tftpl", {
          wireguard         = false
          registry_server   = null
          registry_username = null
        })
      }
    },
  )

  core_user_data = templatefile("${path.module}/cloud-init/cloud-config.yaml.tftpl", {
    description = "Core server ${var.name_prefix}-core: Redis, ClickHouse, S3, consumers, reporter, Grafana, Tempo, Prometheus."
    files       = local.core_files
  })

  # An edge gateway's settings (deploy/compose.edge.yaml reads them from /opt/marketplace/.env).
  gateway_env = {
    for name, gateway in local.gateways : name => merge(
      {
        COMPOSE_PROJECT_NAME        = "marketplace"
        PIPELINE_IMAGE              = var.pipeline_image
        REDIS_URL                   = "redis://gateway:${var.redis_gateway_password}@${gateway.private ? local.core_private_ip : local.core_wireguard_ip}:6379"
        STREAM_KEY                  = "events"
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://${gateway.private ? local.core_private_ip : local.core_wireguard_ip}:4317"
        OTEL_TRACES_SAMPLER         = "parentbased_traceidratio"
        OTEL_TRACES_SAMPLER_ARG     = "0.1"
        METRICS_PUBLISH_IP          = gateway.address
        GATEWAY_STORES_SOURCE       = "./stores.toml"
        GATEWAY_TLS_SOURCE          = "./tls"
        RUST_LOG                    = var.rust_log
        LOG_FORMAT                  = var.log_format
      },
      local.tls_enabled ? {
        GATEWAY_TLS_CERT = "/etc/marketplace/tls/tls.crt"
        GATEWAY_TLS_KEY  = "/etc/marketplace/tls/tls.key"
      } : {},
      module.gateway_exposure.insecure_demo == "" ? {} : {
        GATEWAY_INSECURE_DEMO = module.gateway_exposure.insecure_demo
      },
      module.probers.env[name],
      # core_replica: Redis through the sentinels in eu-central; everywhere, OK only once the
      # replica has the entry.
      gateway.private ? module.core_replica.gateway_env : module.core_replica.remote_gateway_env,
    )
  }

  gateway_files = {
    for name, gateway in local.gateways : name => merge(
      {
        "/opt/marketplace/compose.yaml" = { mode = "0644", content = file("${local.repo_root}/deploy/compose.edge.yaml") }
        "/opt/marketplace/stores.toml"  = { mode = "0644", content = file(var.stores_file) }
        "/opt/marketplace/.env" = {
          mode = "0600", content = join("", [for key, value in local.gateway_env[name] : "${key}=${value}\n"])
        }
        "/etc/sysctl.d/90-marketplace.conf"          = { mode = "0644", content = local.sysctl_conf }
        "/etc/ssh/sshd_config.d/01-marketplace.conf" = { mode = "0644", content = local.sshd_conf }
        "/etc/docker/daemon.json"                    = { mode = "0644", content = jsonencode(local.docker_log_opts) }
        "/usr/local/sbin/marketplace-bootstrap" = {
          mode = "0700"
          content = templatefile("${path.module}/cloud-init/gateway-bootstrap.sh.tftpl", {
            wireguard         = !gateway.private
            registry_server   = var.registry_server
            registry_username = var.registry_username
          })
        }
      },
      local.tls_enabled ? {
        "/opt/marketplace/tls/tls.crt" = { mode = "0644", content = file(var.gateway_tls_cert_file) }
        "/opt/marketplace/tls/tls.key" = { mode = "0600", content = file(var.gateway_tls_key_file) }
      } : {},
      gateway.private ? {} : {
        "/etc/wireguard/wg0.conf" = { mode = "0600", content = local.gateway_wireguard_conf[name] }
        "/etc/systemd/system/docker.service.d/marketplace.conf" = {
          mode    = "0644"
          content = <<-EOT
            # The gateway publishes its metrics port on wg0's address.
            [Unit]
            Wants=wg-quick@wg0.service
            After=wg-quick@wg0.service
          EOT
        }
      },
      module.probers.files[name],
      local.registry_files,
    )
  }

  gateway_user_data = {
    for name, gateway in local.gateways : name => templatefile("${path.module}/cloud-init/cloud-config.yaml.tftpl", {
      description = "Edge gateway ${var.name_prefix}-gw-${name} (${gateway.region}, ${gateway.location})."
      files       = local.gateway_files[name]
    })
  }
}

# --- access ------------------------------------------------------------------------------

resource "hcloud_ssh_key" "admin" {
  for_each   = var.ssh_public_keys
  name       = "${var.name_prefix}-${each.key}"
  public_key = each.value
  labels     = local.labels
}

# --- network -----------------------------------------------------------------------------

resource "hcloud_network" "private" {
  name     = var.name_prefix
  ip_range = local.network_cidr
  labels   = local.labels
}

resource "hcloud_network_subnet" "eu_central" {
  network_id   = hcloud_network.private.id
  type         = "cloud"
  network_zone = "eu-central"
  ip_range     = local.subnet_cidr
}

# --- firewalls ---------------------------------------------------------------------------
# Hetzner firewalls filter public interfaces only (the private network is not filtered).
# They are attached by label, so a server is covered from the moment it is created.

resource "hcloud_firewall" "core" {
  name   = "${var.name_prefix}-core"
  labels = local.labels

  rule {
    description = "SSH from admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  # grafana_cidrs = [] closes it: Grafana is then reached through an SSH tunnel only.
  dynamic "rule" {
    for_each = length(local.grafana_cidrs) > 0 ? [local.grafana_cidrs] : []
    content {
      description = "Grafana"
      direction   = "in"
      protocol    = "tcp"
      port        = "3000"
      source_ips  = rule.value
    }
  }

  rule {
    description = "ping from admin networks"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = var.admin_cidrs
  }

  apply_to {
    label_selector = "app=${var.name_prefix},role=core"
  }
}

# Separate from hcloud_firewall.core because it needs the gateways' addresses, and the
# gateways need the core's: one firewall for both would be a dependency cycle.
resource "hcloud_firewall" "core_wireguard" {
  count  = length(local.remote_gateways) > 0 ? 1 : 0
  name   = "${var.name_prefix}-core-wireguard"
  labels = local.labels

  rule {
    description = "WireGuard from the gateways outside eu-central"
    direction   = "in"
    protocol    = "udp"
    port        = tostring(var.wireguard_port)
    source_ips  = [for name, gateway in local.remote_gateways : "${hcloud_server.gateway[name].ipv4_address}/32"]
  }

  apply_to {
    label_selector = "app=${var.name_prefix},role=core"
  }
}

resource "hcloud_firewall" "gateway" {
  name   = "${var.name_prefix}-gateway"
  labels = local.labels

  rule {
    description = "gRPC from the stores"
    direction   = "in"
    protocol    = "tcp"
    port        = "50051"
    source_ips  = var.store_cidrs
  }

  rule {
    description = "SSH from admin networks"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.admin_cidrs
  }

  rule {
    description = "ping from admin networks"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = var.admin_cidrs
  }

  apply_to {
    label_selector = "app=${var.name_prefix},role=gateway"
  }
}

# --- core ----------------------------------------------------------------------------------

resource "hcloud_volume" "core_data" {
  name              = "${var.name_prefix}-core-data"
  size              = var.core_volume_size_gb
  location          = var.core_location
  format            = "ext4"
  delete_protection = var.delete_protection
  labels            = local.labels
}

resource "hcloud_server" "core" {
  name               = "${var.name_prefix}-core"
  image              = var.server_image
  server_type        = var.core_server_type
  location           = var.core_location
  ssh_keys           = [for key in hcloud_ssh_key.admin : key.id]
  user_data          = local.core_user_data
  labels             = merge(local.labels, { role = "core" })
  delete_protection  = var.delete_protection
  rebuild_protection = var.delete_protection # the API requires both to be equal

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.private.id
    ip         = local.core_private_ip
  }

  # The firewall must exist first so that it applies (by label) from the first boot on.
  depends_on = [hcloud_network_subnet.eu_central, hcloud_firewall.core]

  lifecycle {
    # Provisioned once; see the top of this file for how changes reach a running core.
    ignore_changes = [user_data, ssh_keys, image]

    precondition {
      condition     = length(local.core_user_data) <= 32768
      error_message = "The core's cloud-init user data exceeds Hetzner's 32 KiB limit: push the largest deploy/ files over SSH, as terraform_data.core_dashboards_sync does for the dashboards."
    }
  }
}

resource "hcloud_volume_attachment" "core_data" {
  volume_id = hcloud_volume.core_data.id
  server_id = hcloud_server.core.id
  automount = false # cloud-init mounts it at /mnt/data, where Docker keeps its state
}

# The Grafana dashboards, pushed whenever one changes. They are larger than what cloud-init's
# user data can carry (Hetzner: 32 KiB after gzip + base64), so they are the one part of the
# repository the core gets over SSH rather than at first boot.
resource "terraform_data" "core_dashboards_sync" {
  count = var.sync_core_over_ssh ? 1 : 0

  triggers_replace = [for path in local.dashboard_files : "${path}:${filesha256("${local.repo_root}/${path}")}"]

  connection {
    type    = "ssh"
    host    = hcloud_server.core.ipv4_address
    user    = "root"
    agent   = true
    timeout = "15m"
  }

  provisioner "remote-exec" {
    inline = [
      "cloud-init status --wait > /dev/null 2>&1 || true",
      "mkdir -p /opt/marketplace/deploy/grafana/dashboards",
    ]
  }

  # The trailing slash uploads the folder's content into the destination.
  provisioner "file" {
    source      = "${local.repo_root}/deploy/grafana/dashboards/"
    destination = "/opt/marketplace/deploy/grafana/dashboards"
  }

  depends_on = [hcloud_volume_attachment.core_data]
}

# Keeps the core's WireGuard peers and Prometheus gateway targets in step with the gateways
# (cloud-init only wrote the set that existed at the core's first boot).
resource "terraform_data" "core_gateway_sync" {
  count = var.sync_core_over_ssh ? 1 : 0

  triggers_replace = [sha256(local.core_wireguard_conf), sha256(local.gateway_targets_json), sha256(local.prober_targets_json)]

  connection {
    type    = "ssh"
    host    = hcloud_server.core.ipv4_address
    user    = "root"
    agent   = true
    timeout = "15m"
  }

  provisioner "remote-exec" {
    # On a new core, wait for the first-boot provisioning (it installs wireguard-tools).
    inline = ["cloud-init status --wait > /dev/null 2>&1 || true"]
  }

  provisioner "file" {
    content     = local.core_wireguard_conf
    destination = "/etc/wireguard/wg0.conf"
  }

  provisioner "file" {
    content     = local.gateway_targets_json
    destination = "/opt/marketplace/deploy/prometheus/targets/gateways.json"
  }

  provisioner "file" {
    content     = local.prober_targets_json
    destination = "/opt/marketplace/deploy/prometheus/targets/probers.json"
  }

  provisioner "remote-exec" {
    inline = [
      "chmod 600 /etc/wireguard/wg0.conf",
      # Applies peer changes without tearing down the tunnels that stay.
      "bash -c 'wg syncconf wg0 <(wg-quick strip wg0)'",
    ]
  }

  depends_on = [hcloud_volume_attachment.core_data]
}

# --- gateways ------------------------------------------------------------------------------

resource "hcloud_server" "gateway" {
  for_each = local.gateways

  name        = "${var.name_prefix}-gw-${each.key}"
  image       = var.server_image
  server_type = var.gateway_server_type
  location    = each.value.location
  ssh_keys    = [for key in hcloud_ssh_key.admin : key.id]
  user_data   = local.gateway_user_data[each.key]
  labels      = merge(local.labels, { role = "gateway", region = each.value.region, location = each.value.location })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  # European gateways join the private network; the others use WireGuard.
  dynamic "network" {
    for_each = each.value.private ? [each.value.address] : []
    content {
      network_id = hcloud_network.private.id
      ip         = network.value
    }
  }

  depends_on = [hcloud_network_subnet.eu_central, hcloud_firewall.gateway]

  lifecycle {
    # Provisioned once; upgrades roll out in place (docs/DEPLOY.md, "Upgrading").
    ignore_changes = [user_data, ssh_keys, image]

    precondition {
      condition     = each.value.private || contains(keys(var.wireguard_gateway_keys), each.key)
      error_message = "Gateway ${each.key} is outside eu-central and needs a WireGuard key pair: add \"${each.key}\" to wireguard_gateway_keys."
    }

    precondition {
      condition     = (var.gateway_tls_cert_file == null) == (var.gateway_tls_key_file == null)
      error_message = "Set both gateway_tls_cert_file and gateway_tls_key_file, or neither."
    }

    precondition {
      condition     = length(local.gateway_user_data[each.key]) <= 32768
      error_message = "Gateway ${each.key}'s cloud-init user data exceeds Hetzner's 32 KiB limit."
    }
  }
}

# --- core replica and witness (core_replica.enabled; modules/core_replica) ----------------

resource "hcloud_volume" "core_replica_data" {
  count             = var.core_replica.enabled ? 1 : 0
  name              = "${var.name_prefix}-core-replica-data"
  size              = var.core_replica.volume_size_gb
  location          = var.core_replica.location
  format            = "ext4"
  delete_protection = var.delete_protection
  labels            = local.labels
}

# Labelled role=core so that the core's firewall (SSH from admin networks only) covers it.
resource "hcloud_server" "core_replica" {
  count              = var.core_replica.enabled ? 1 : 0
  name               = "${var.name_prefix}-core-replica"
  image              = var.server_image
  server_type        = var.core_replica.server_type
  location           = var.core_replica.location
  ssh_keys           = [for key in hcloud_ssh_key.admin : key.id]
  user_data          = module.core_replica.user_data["replica"]
  labels             = merge(local.labels, { role = "core", node = "replica" })
  delete_protection  = var.delete_protection
  rebuild_protection = var.delete_protection

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.private.id
    ip         = local.core_replica_ip
  }

  depends_on = [hcloud_network_subnet.eu_central, hcloud_firewall.core]

  lifecycle {
    # Provisioned once, like the core. (The user data's 32 KiB limit is a precondition of
    # module.core_replica's output.)
    ignore_changes = [user_data, ssh_keys, image]
  }
}

resource "hcloud_volume_attachment" "core_replica_data" {
  count     = var.core_replica.enabled ? 1 : 0
  volume_id = hcloud_volume.core_replica_data[0].id
  server_id = hcloud_server.core_replica[0].id
  automount = false # cloud-init mounts it at /mnt/data, where Docker keeps its state
}

resource "hcloud_server" "witness" {
  count       = var.core_replica.enabled ? 1 : 0
  name        = "${var.name_prefix}-witness"
  image       = var.server_image
  server_type = var.core_replica.witness_server_type
  location    = var.core_replica.witness_location
  ssh_keys    = [for key in hcloud_ssh_key.admin : key.id]
  user_data   = module.core_replica.user_data["witness"]
  labels      = merge(local.labels, { role = "core", node = "witness" })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = hcloud_network.private.id
    ip         = local.witness_ip
  }

  depends_on = [hcloud_network_subnet.eu_central, hcloud_firewall.core]

  lifecycle {
    ignore_changes = [user_data, ssh_keys, image]
  }
}
