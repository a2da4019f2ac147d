terraform {
  # 1.5+: strcontains(); 1.4+: terraform_data. (`terraform test` of modules/gateway_exposure: 1.6+.)
  required_version = ">= 1.5.0"

  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
      # Minor updates only; `terraform init` records the exact version and its checksums in
      # .terraform.lock.hcl. That file is not committed yet (it needs the provider download,
      # impossible where this was written): commit it after the first init.
      version = "~> 1.52"
    }
  }
}

provider "hcloud" {
  # null: the provider reads HCLOUD_TOKEN from the environment (preferred: keeps the token
  # out of tfvars files).
  token = var.hcloud_token
}
