# The opt-in second core node (issue 18; docs/DEPLOY.md, "High availability"): a replica
# server that holds the second copy of Redis and of ClickHouse, and a small witness server
# that holds the third member of each quorum. Three machines in eu-central's private network:
#
#   core     Redis primary, sentinel 1, keeper 1, ClickHouse r1, consumers, and the rest
#   replica  Redis replica,  sentinel 2, keeper 2, ClickHouse r2, a consumer
#   witness                  sentinel 3, keeper 3
#
# Two machines cannot hold a quorum of three: with only core and replica, losing either would
# leave one sentinel of three (no failover) and one keeper of three (no inserts). With the
# witness, any one machine can go and two of three remain.
#
# Every host runs compose.yaml + deploy/compose.core.yaml + deploy/compose.ha-hosts.yaml; its
# .env (COMPOSE_PROFILES) picks its part. This module renders those settings, each host's
# keeper and ClickHouse coordination files, and the user data of the two new servers (with a
# precondition on Hetzner's 32 KiB). No providers, so `terraform test` runs it offline
# (tests/core_replica.tftest.hcl; scripts/test.sh runs it).

variable "enabled" {
  description = "Whether the replica and witness servers exist; false: every output is empty."
  type        = bool
  default     = false
}

variable "addresses" {
  description = "Private-network address of each host: core, replica, witness."
  type        = object({ core = string, replica = string, witness = string })
}

variable "redis_gateway_password" {
  type      = string
  sensitive = true
}

variable "redis_consumer_password" {
  type      = string
  sensitive = true
}

variable "base_env" {
  description = "The core's settings (.env) the replica and witness share, as a map."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "replica_files" {
  description = "Files cloud-init writes on the replica besides .env and the coordination files (path => {mode, content})."
  type        = map(object({ mode = string, content = string }))
  default     = {}
}

variable "witness_files" {
  description = "Files cloud-init writes on the witness besides .env and the coordination files."
  type        = map(object({ mode = string, content = string }))
  default     = {}
}

variable "cloud_config_template" {
  description = "Path of terraform/cloud-init/cloud-config.yaml.tftpl."
  type        = string
}

variable "name_prefix" {
  type    = string
  default = "marketplace"
}

locals {
  hosts = ["core", "replica", "witness"]
  ids   = { core = 1, replica = 2, witness = 3 }

  sentinels = [for host in local.hosts : "${var.addresses[host]}:26379"]
  sentinel_query = join("&", concat(
    ["sentinelServiceName=pipeline"],
    [for node in slice(local.sentinels, 1, 3) : "node=${node}"],
  ))
  # fred's Sentinel form: it asks the sentinels for the primary, and again after a disconnect.
  consumer_redis_url = "redis-sentinel://consumer:${var.redis_consumer_password}@${local.sentinels[0]}?${local.sentinel_query}"
  gateway_redis_url  = "redis-sentinel://gateway:${var.redis_gateway_password}@${local.sentinels[0]}?${local.sentinel_query}"

  # Each consumer loads through its own host's ClickHouse first, the other's when that fails.
  clickhouse_urls = {
    core    = "http://clickhouse:8123,http://${var.addresses.replica}:8123"
    replica = "http://clickhouse:8123,http://${var.addresses.core}:8123"
  }

  # Per host: what deploy/compose.ha-hosts.yaml reads. HOST_PRIVATE_IP is where the host
  # publishes Redis, ClickHouse, its sentinel and keeper. COMPOSE_PROFILES: `core` = what only
  # the core runs (S3, reporter, archiver, Grafana, Tempo, Prometheus), `data` = Redis,
  # ClickHouse and consumers; no profile = sentinel and keeper only.
  host_env = {
    for host in local.hosts : host => merge(
      {
        COMPOSE_FILE     = "compose.yaml:deploy/compose.core.yaml:deploy/compose.ha-hosts.yaml"
        COMPOSE_PROFILES = { core = "core,data", replica = "data", witness = "" }[host]
        HOST_PRIVATE_IP  = var.addresses[host]
        REDIS_PRIMARY_IP = var.addresses.core
        SENTINEL_IPS     = join(" ", [for host in local.hosts : var.addresses[host]])
        SENTINEL_QUORUM  = "2"
      },
      host == "witness" ? {} : {
        REDIS_REPLICAOF         = host == "core" ? "" : var.addresses.core
        CONSUMER_REDIS_URL      = local.consumer_redis_url
        CLICKHOUSE_URL          = local.clickhouse_urls[host]
        CLICKHOUSE_REPLICATED   = "true"
        CLICKHOUSE_REPLICA_NAME = "r${local.ids[host]}"
      },
      # compose.core.yaml publishes Redis on CORE_PRIVATE_IP and CORE_WIREGUARD_IP: on the
      # replica that is its own address, and loopback for the WireGuard it does not have.
      host == "core" ? {} : {
        CORE_PRIVATE_IP   = var.addresses[host]
        CORE_WIREGUARD_IP = "127.0.0.1"
        # telemetry goes to the core's Tempo
        OTEL_EXPORTER_OTLP_ENDPOINT = "http://${var.addresses.core}:4317"
      },
    )
  }

  keeper_xml = {
    for host in local.hosts : host => <<-EOT
      <?xml version="1.0"?>
      <!-- Rendered by terraform/modules/core_replica: keeper ${local.ids[host]} of three (core, replica,
           witness); two of three keep the replicated tables writable. -->
      <clickhouse>
          <listen_host>${var.addresses[host]}</listen_host>
          <logger><level>warning</level><console>1</console></logger>
          <keeper_server>
              <tcp_port>9181</tcp_port>
              <server_id>${local.ids[host]}</server_id>
              <log_storage_path>/var/lib/clickhouse-keeper/log</log_storage_path>
              <snapshot_storage_path>/var/lib/clickhouse-keeper/snapshots</snapshot_storage_path>
              <coordination_settings>
                  <operation_timeout_ms>10000</operation_timeout_ms>
                  <session_timeout_ms>30000</session_timeout_ms>
              </coordination_settings>
              <raft_configuration>
      %{for peer in local.hosts~}
                  <server><id>${local.ids[peer]}</id><hostname>${var.addresses[peer]}</hostname><port>9234</port></server>
      %{endfor~}
              </raft_configuration>
          </keeper_server>
      </clickhouse>
    EOT
  }

  # ClickHouse's side: the three keepers, its replica name and where the other fetches parts.
  replication_xml = {
    for host in ["core", "replica"] : host => <<-EOT
      <?xml version="1.0"?>
      <!-- Rendered by terraform/modules/core_replica: replica r${local.ids[host]} of shard 01. -->
      <clickhouse>
          <zookeeper>
      %{for peer in local.hosts~}
              <node><host>${var.addresses[peer]}</host><port>9181</port></node>
      %{endfor~}
          </zookeeper>
          <macros>
              <shard>01</shard>
              <replica>r${local.ids[host]}</replica>
          </macros>
          <interserver_http_host>${var.addresses[host]}</interserver_http_host>
      </clickhouse>
    EOT
  }

  host_files = {
    for host in local.hosts : host => merge(
      { "/opt/marketplace/deploy/clickhouse/hosts/keeper.xml" = { mode = "0644", content = local.keeper_xml[host] } },
      host == "witness" ? {} : {
        "/opt/marketplace/deploy/clickhouse/hosts/replication.xml" = { mode = "0644", content = local.replication_xml[host] }
      },
    )
  }

  # The replica runs what the core runs and gets all its settings; the witness needs nothing
  # but the image tags' project name and the password its sentinel logs in to Redis with.
  base_env = {
    replica = var.base_env
    witness = { for key, value in var.base_env : key => value if contains(["COMPOSE_PROJECT_NAME", "REDIS_PASSWORD"], key) }
  }

  env_file = {
    for host in ["replica", "witness"] : host => {
      "/opt/marketplace/.env" = {
        mode    = "0600"
        content = join("", [for key, value in merge(local.base_env[host], local.host_env[host]) : "${key}=${value}\n"])
      }
    }
  }

  user_data = {
    for host in ["replica", "witness"] : host => templatefile(var.cloud_config_template, {
      description = {
        replica = "Core replica ${var.name_prefix}-core-replica: Redis replica, ClickHouse r2, sentinel, keeper, a consumer."
        witness = "Witness ${var.name_prefix}-witness: the third sentinel and keeper."
      }[host]
      files = merge(host == "replica" ? var.replica_files : var.witness_files, local.host_files[host], local.env_file[host])
    })
  }
}

output "enabled" {
  value = var.enabled
}

output "core_env" {
  description = "Settings the core's .env gains (they replace its COMPOSE_FILE); empty when disabled."
  value       = var.enabled ? local.host_env.core : {}
  sensitive   = true
}

output "core_files" {
  description = "Coordination files cloud-init writes on the core; empty when disabled."
  value       = var.enabled ? local.host_files.core : {}
}

output "gateway_env" {
  description = "Settings a gateway in eu-central gains: Redis through the sentinels, and OK only once the replica has the entry; empty when disabled."
  value = var.enabled ? {
    REDIS_URL            = local.gateway_redis_url
    GATEWAY_ACK_REPLICAS = "1"
  } : {}
  sensitive = true
}

# A gateway outside eu-central reaches Redis through its WireGuard tunnel to the core, and
# the sentinels and the replica only have private-network addresses: it keeps its plain
# REDIS_URL to the core, and only its OKs gain the replica's confirmation.
output "remote_gateway_env" {
  description = "Settings a gateway outside eu-central gains; empty when disabled."
  value       = var.enabled ? { GATEWAY_ACK_REPLICAS = "1" } : {}
}

output "env" {
  description = "Every host's settings as its .env holds them (the core: only what it gains); empty when disabled."
  value       = var.enabled ? { core = local.host_env.core, replica = merge(local.base_env.replica, local.host_env.replica), witness = merge(local.base_env.witness, local.host_env.witness) } : {}
  sensitive   = true
}

output "user_data" {
  description = "cloud-init user data of the replica and the witness; empty when disabled."
  value       = var.enabled ? local.user_data : {}
  sensitive   = true

  precondition {
    condition     = !var.enabled || alltrue([for host, text in local.user_data : nonsensitive(length(text)) <= 32768])
    error_message = "The core replica's or witness's cloud-init user data exceeds Hetzner's 32 KiB limit (${join(", ", [for host, text in local.user_data : "${host}: ${nonsensitive(length(text))} bytes"])}): push the largest files over SSH, as terraform_data.core_dashboards_sync does."
  }
}
