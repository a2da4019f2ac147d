# `terraform init && terraform test` in terraform/modules/prober: no provider, so it runs
# offline. Each refusal is expected as a failed precondition of output.env.

variables {
  gateways = {
    fsn1-1 = { region = "europe" }
    nbg1-1 = { region = "europe" }
    sin-1  = { region = "asia" }
  }
  targets_toml = file("../../../deploy/prober/targets.example.toml")
  tokens = {
    europe = "prober-token-europe"
    asia   = "prober-token-asia"
  }
  # what `gateway stores add --role prober` writes, beside a store
  stores_toml = <<-EOT
    [[store]]
    id = "eu-1"
    region = "europe"
    token_sha256 = "${sha256("a-store-token")}"

    [[store]]
    id = "prober-europe"
    region = "europe"
    token_sha256 = "${sha256("prober-token-europe")}"
    role = "prober"

    [[store]]
    id = "prober-asia"
    region = "asia"
    token_sha256 = ["${sha256("an-old-token")}", "${sha256("prober-token-asia")}"]
    role = "prober"
  EOT
  tls_enabled = true
  tls_domain  = "eu.ingest.test"
}

run "every_gateway_node_runs_a_prober_of_its_region_over_tls" {
  command = plan
  assert {
    condition     = output.enabled && keys(output.env) == ["fsn1-1", "nbg1-1", "sin-1"]
    error_message = "one prober per gateway node"
  }
  assert {
    condition = jsonencode(nonsensitive(output.env["sin-1"])) == jsonencode({
      COMPOSE_PROFILES          = "probe"
      PROBER_REGION             = "asia"
      PROBER_TOKEN              = "prober-token-asia"
      PROBER_GATEWAY            = "https://gateway:50051"
      PROBER_GATEWAY_CA_FILE    = "/etc/ssl/certs/ca-certificates.crt"
      PROBER_GATEWAY_TLS_DOMAIN = "eu.ingest.test"
    })
    error_message = "sin-1: ${jsonencode(nonsensitive(output.env["sin-1"]))}"
  }
  assert {
    condition     = nonsensitive(output.env["nbg1-1"].PROBER_REGION) == "europe" && nonsensitive(output.env["nbg1-1"].PROBER_TOKEN) == "prober-token-europe"
    error_message = "a European node probes from europe with europe's token"
  }
  assert {
    condition     = output.files["fsn1-1"]["/opt/marketplace/prober/targets.toml"].content == file("../../../deploy/prober/targets.example.toml")
    error_message = "the targets file is written as given"
  }
  assert {
    condition     = !contains(keys(output.files["fsn1-1"]), "/opt/marketplace/prober/gateway-ca.pem")
    error_message = "without a private CA the system roots are used"
  }
}

run "a_private_ca_is_shipped_to_every_node" {
  command = plan
  variables {
    gateway_ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  }
  assert {
    condition     = nonsensitive(output.env["fsn1-1"].PROBER_GATEWAY_CA_FILE) == "/etc/marketplace/prober/gateway-ca.pem" && output.files["sin-1"]["/opt/marketplace/prober/gateway-ca.pem"].content == var.gateway_ca_pem
    error_message = "the CA file is written and named"
  }
}

run "a_plaintext_demo_publishes_over_plaintext" {
  command = plan
  variables {
    tls_enabled = false
    tls_domain  = null
  }
  assert {
    condition     = nonsensitive(output.env["fsn1-1"].PROBER_GATEWAY) == "http://gateway:50051" && !contains(keys(nonsensitive(output.env["fsn1-1"])), "PROBER_GATEWAY_TLS_DOMAIN")
    error_message = "no TLS settings without TLS"
  }
}

run "without_targets_no_node_runs_a_prober" {
  command = plan
  variables {
    targets_toml = null
    tokens       = {}
  }
  assert {
    condition     = !output.enabled && alltrue([for env in values(nonsensitive(output.env)) : length(env) == 0]) && alltrue([for files in values(output.files) : length(files) == 0])
    error_message = "nothing is written without targets"
  }
}

run "a_region_without_a_token_is_refused" {
  command = plan
  variables {
    tokens = { europe = "prober-token-europe" }
  }
  expect_failures = [output.env]
}

run "a_token_the_stores_file_does_not_hold_is_refused" {
  command = plan
  variables {
    tokens = { europe = "prober-token-europe", asia = "a-token-nobody-added" }
  }
  expect_failures = [output.env]
}

run "a_store_token_is_not_a_prober_token" {
  command = plan
  variables {
    tokens = { europe = "a-store-token", asia = "prober-token-asia" }
  }
  expect_failures = [output.env]
}

run "a_prober_of_another_region_is_refused" {
  command = plan
  variables {
    tokens = { europe = "prober-token-asia", asia = "prober-token-asia" }
  }
  expect_failures = [output.env]
}

run "tls_without_the_certificate_s_name_is_refused" {
  command = plan
  variables {
    tls_domain = null
  }
  expect_failures = [output.env]
}

run "a_targets_file_without_targets_is_refused" {
  command = plan
  variables {
    targets_toml = "# nothing yet\n"
  }
  expect_failures = [output.env]
}
