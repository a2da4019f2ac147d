# Refuses, at plan time, gateways that would be unsafe on the internet: plaintext gRPC, or a
# stores file that accepts the demo fleet's tokens (derived from the secret this repository
# publishes), unless insecure_demo holds the consent phrase. The gateway binary applies the
# same rule at startup (gateway/src/preflight.rs); this stops the plan before any server
# exists. A module of its own, without providers, so that `terraform test` runs it offline
# (tests/exposure.tftest.hcl; scripts/test.sh runs it).

variable "stores_toml" {
  description = "Text of the stores file the gateways will load."
  type        = string
}

variable "tls_enabled" {
  description = "Whether the gateways serve TLS."
  type        = bool
}

variable "insecure_demo" {
  description = "GATEWAY_INSECURE_DEMO: empty, or the consent phrase for a demo."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "i-understand-this-gateway-is-unsafe"], var.insecure_demo)
    error_message = "gateway_insecure_demo is either unset or exactly \"i-understand-this-gateway-is-unsafe\" (a demo only)."
  }
}

locals {
  consent = var.insecure_demo == "i-understand-this-gateway-is-unsafe"

  # The simulator's rule (pipeline/src/demo.rs): token = "sim_" + hex(sha256("<secret>:<id>")),
  # stored as hex(sha256(token)), with the published secret "demo-not-a-secret".
  store_ids = [for match in regexall("(?m)^\\s*id\\s*=\\s*\"([^\"]*)\"", var.stores_toml) : match[0]]
  demo_store_ids = [
    for id in local.store_ids : id
    if strcontains(lower(var.stores_toml), sha256("sim_${sha256("demo-not-a-secret:${id}")}"))
  ]
}

output "demo_store_ids" {
  description = "Stores whose token hash is the published demo token's."
  value       = local.demo_store_ids
}

output "insecure_demo" {
  description = "The consent phrase to pass to the gateways as GATEWAY_INSECURE_DEMO, or \"\"; available only when the exposure is safe or accepted."
  value       = local.consent ? var.insecure_demo : ""

  precondition {
    condition     = var.tls_enabled || local.consent
    error_message = "The gateways would serve plaintext gRPC: stores' bearer tokens would cross the internet unencrypted. Set gateway_tls_cert_file and gateway_tls_key_file (or, for a demo only, gateway_insecure_demo = \"i-understand-this-gateway-is-unsafe\")."
  }

  precondition {
    condition     = length(local.demo_store_ids) == 0 || local.consent
    error_message = "The stores file accepts the published demo tokens of ${join(", ", local.demo_store_ids)} (deploy/stores.example.toml): anyone could send events as those stores. Use a stores file with random tokens (or, for a demo only, gateway_insecure_demo = \"i-understand-this-gateway-is-unsafe\")."
  }
}
