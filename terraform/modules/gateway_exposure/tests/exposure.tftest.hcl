# `terraform init && terraform test` in terraform/modules/gateway_exposure: no provider, so
# it runs offline. Each refusal is expected as a failed precondition of output.insecure_demo.

variables {
  own_stores = <<-EOT
    [[store]]
    id = "eu-1"
    region = "europe"
    token_sha256 = "${sha256("a-random-token-of-our-own")}"
  EOT
}

run "the_example_stores_file_is_recognised" {
  command = plan
  variables {
    stores_toml   = file("../../../deploy/stores.example.toml")
    tls_enabled   = true
    insecure_demo = "i-understand-this-gateway-is-unsafe"
  }
  assert {
    condition     = output.demo_store_ids == ["eu-1", "eu-2", "us-1", "us-2", "asia-1", "asia-2"]
    error_message = "demo stores found: ${jsonencode(output.demo_store_ids)}"
  }
}

run "demo_tokens_are_refused_even_with_tls" {
  command = plan
  variables {
    stores_toml = file("../../../deploy/stores.example.toml")
    tls_enabled = true
  }
  expect_failures = [output.insecure_demo]
}

run "plaintext_is_refused_even_with_own_tokens" {
  command = plan
  variables {
    stores_toml = var.own_stores
    tls_enabled = false
  }
  expect_failures = [output.insecure_demo]
}

run "own_tokens_with_tls_pass" {
  command = plan
  variables {
    stores_toml = var.own_stores
    tls_enabled = true
  }
  assert {
    condition     = output.insecure_demo == "" && length(output.demo_store_ids) == 0
    error_message = "a safe setup was flagged"
  }
}

run "the_consent_phrase_allows_a_demo" {
  command = plan
  variables {
    stores_toml   = file("../../../deploy/stores.example.toml")
    tls_enabled   = false
    insecure_demo = "i-understand-this-gateway-is-unsafe"
  }
  assert {
    condition     = output.insecure_demo == "i-understand-this-gateway-is-unsafe"
    error_message = "the consent is passed on to the gateways"
  }
}

run "any_other_consent_value_is_refused" {
  command = plan
  variables {
    stores_toml   = var.own_stores
    tls_enabled   = true
    insecure_demo = "yes"
  }
  expect_failures = [var.insecure_demo]
}
