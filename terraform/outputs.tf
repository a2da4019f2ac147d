# Where things are. `terraform output` after apply; docs/DEPLOY.md uses these.

output "grpc_endpoints" {
  description = "Where stores send events, by gateway: host:port of each gateway's gRPC (TLS when gateway_tls_cert_file is set). Point each store's DNS name at the gateway of its region."
  value = {
    for name, server in hcloud_server.gateway : name => {
      region = local.gateways[name].region
      ipv4   = "${server.ipv4_address}:50051"
      ipv6   = "[${server.ipv6_address}]:50051"
    }
  }
}

output "grafana_url" {
  description = "Grafana on the core (reachable from grafana_cidrs, or admin_cidrs, only). User admin, password grafana_admin_password."
  value       = "http://${hcloud_server.core.ipv4_address}:3000"
}

output "core" {
  description = "The core server: public address (SSH, Grafana, WireGuard endpoint), and the addresses gateways reach Redis and Tempo at."
  value = {
    ssh                = "ssh root@${hcloud_server.core.ipv4_address}"
    public_ipv4        = hcloud_server.core.ipv4_address
    public_ipv6        = hcloud_server.core.ipv6_address
    private_ip         = local.core_private_ip
    wireguard_ip       = local.core_wireguard_ip
    wireguard_endpoint = "${hcloud_server.core.ipv4_address}:${var.wireguard_port}"
    data_volume_id     = hcloud_volume.core_data.id
  }
}

output "gateways" {
  description = "Every gateway: SSH command, public addresses, and the internal address (private network or WireGuard) the core scrapes its metrics at."
  value = {
    for name, server in hcloud_server.gateway : name => {
      ssh              = "ssh root@${server.ipv4_address}"
      location         = local.gateways[name].location
      region           = local.gateways[name].region
      public_ipv4      = server.ipv4_address
      public_ipv6      = server.ipv6_address
      internal_address = local.gateways[name].address
      via              = local.gateways[name].private ? "private network" : "wireguard"
    }
  }
}

output "core_replica" {
  description = "With core_replica.enabled: the second core node and the witness (SSH, public and private addresses); null otherwise."
  value = !var.core_replica.enabled ? null : {
    replica = {
      ssh            = "ssh root@${hcloud_server.core_replica[0].ipv4_address}"
      public_ipv4    = hcloud_server.core_replica[0].ipv4_address
      private_ip     = local.core_replica_ip
      data_volume_id = hcloud_volume.core_replica_data[0].id
    }
    witness = {
      ssh         = "ssh root@${hcloud_server.witness[0].ipv4_address}"
      public_ipv4 = hcloud_server.witness[0].ipv4_address
      private_ip  = local.witness_ip
    }
  }
}
