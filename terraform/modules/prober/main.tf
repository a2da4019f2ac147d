# A prober on every gateway node, placed by region: the node's region is its vantage region.
# Each prober probes the targets file and publishes its ProbeResults to the gateway on its
# own node (the compose service `gateway`, over TLS when the gateways serve it), as the
# stores file's `role = "prober"` principal of that region. This module renders what each
# node gets (settings for its .env, and files) and stops the plan when a prober could not
# work: a region without a token, a token the stores file does not hold as a prober of that
# region, TLS without the certificate's name. No providers, so `terraform test` runs it
# offline (tests/prober.tftest.hcl; scripts/test.sh runs it).

variable "gateways" {
  description = "Every gateway node by name, with its region (europe, america, asia)."
  type        = map(object({ region = string }))
}

variable "targets_toml" {
  description = "Text of the prober targets file (prober/src/targets.rs), the same on every node; null: no probers."
  type        = string
  default     = null
}

variable "tokens" {
  description = "The prober token of each region with gateways: the bearer token of that region's `role = \"prober\"` entry in the stores file."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "stores_toml" {
  description = "Text of the stores file the gateways load."
  type        = string
}

variable "tls_enabled" {
  description = "Whether the gateways serve TLS: then the probers publish over TLS."
  type        = bool
}

variable "tls_domain" {
  description = "A name the gateways' certificate carries (e.g. eu.ingest.example.com): the prober reaches its gateway as https://gateway:50051 and checks the certificate against this name."
  type        = string
  default     = null
}

variable "gateway_ca_pem" {
  description = "PEM of the CA the gateways' certificate chains to, when it is a private one; null: the image's system roots."
  type        = string
  default     = null
}

locals {
  enabled = var.targets_toml != null
  regions = toset([for gateway in values(var.gateways) : gateway.region])

  # The stores file's entries, one text block each (`[[store]]` tables).
  entries = [for block in split("[[store]]", var.stores_toml) : block if can(regex("(?m)^\\s*id\\s*=", block))]
  # Per region: whether its token's hash is in an entry with role = "prober" of that region.
  token_is_a_prober_of_its_region = {
    for region in local.regions : region => anytrue([
      for entry in local.entries :
      strcontains(lower(entry), sha256(lookup(var.tokens, region, ""))) &&
      can(regex("(?m)^\\s*role\\s*=\\s*\"prober\"", entry)) &&
      can(regex("(?m)^\\s*region\\s*=\\s*\"${region}\"", entry))
    ])
  }
  # region names, not secrets (nonsensitive: they derive from the tokens)
  missing_tokens = sort([for region in local.regions : region if nonsensitive(lookup(var.tokens, region, "") == "")])
  unknown_tokens = sort([for region in local.regions : region if !nonsensitive(local.token_is_a_prober_of_its_region[region])])

  # Inside the prober's container (deploy/compose.edge.yaml mounts ./prober there).
  dir     = "/etc/marketplace/prober"
  ca_file = var.gateway_ca_pem == null ? "/etc/ssl/certs/ca-certificates.crt" : "${local.dir}/gateway-ca.pem"
}

output "enabled" {
  description = "Whether the gateway nodes run probers."
  value       = local.enabled
}

output "env" {
  description = "Per gateway node: the settings its .env gets (COMPOSE_PROFILES starts deploy/compose.edge.yaml's prober service); empty without probers."
  sensitive   = true
  value = {
    for name, gateway in var.gateways : name => !local.enabled ? {} : merge(
      {
        COMPOSE_PROFILES = "probe"
        PROBER_REGION    = gateway.region
        PROBER_TOKEN     = lookup(var.tokens, gateway.region, "")
        PROBER_GATEWAY   = var.tls_enabled ? "https://gateway:50051" : "http://gateway:50051"
      },
      var.tls_enabled ? {
        PROBER_GATEWAY_CA_FILE    = local.ca_file
        PROBER_GATEWAY_TLS_DOMAIN = var.tls_domain
      } : {},
    )
  }

  precondition {
    condition     = !local.enabled || length(local.missing_tokens) == 0
    error_message = "Probers run on every gateway node, so every region with gateways needs a prober token: add ${join(", ", local.missing_tokens)} to prober_tokens (e.g. gateway stores add --role prober --region <region> prints one)."
  }

  precondition {
    condition     = !local.enabled || length(local.missing_tokens) > 0 || length(local.unknown_tokens) == 0
    error_message = "The stores file has no `role = \"prober\"` entry of region ${join(", ", local.unknown_tokens)} whose token_sha256 is the hash of that region's prober_tokens value: the gateways would refuse those probers. Add one with `gateway stores add --id prober-<region> --region <region> --role prober --stores-file <stores_file>`."
  }

  precondition {
    condition     = !local.enabled || !var.tls_enabled || try(length(var.tls_domain) > 0, false)
    error_message = "With TLS, set prober_gateway_tls_domain to a name the gateways' certificate carries: each prober reaches its gateway as https://gateway:50051 and checks the certificate against that name."
  }

  precondition {
    condition     = !local.enabled || can(regex("(?m)^\\s*\\[\\[target\\]\\]", coalesce(var.targets_toml, "-")))
    error_message = "The prober targets file lists no [[target]] (format: deploy/prober/targets.example.toml)."
  }
}

output "files" {
  description = "Per gateway node: the files cloud-init writes for its prober (path => {mode, content}); empty without probers."
  value = {
    for name, gateway in var.gateways : name => !local.enabled ? {} : merge(
      { "/opt/marketplace/prober/targets.toml" = { mode = "0644", content = var.targets_toml } },
      var.gateway_ca_pem == null ? {} : {
        "/opt/marketplace/prober/gateway-ca.pem" = { mode = "0644", content = var.gateway_ca_pem }
      },
    )
  }
}
