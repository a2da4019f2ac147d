# `terraform init && terraform test` in terraform/modules/core_replica: no provider, so it
# runs offline. The size refusal is expected as a failed precondition of output.user_data.

variables {
  enabled                 = true
  addresses               = { core = "10.0.1.10", replica = "10.0.1.11", witness = "10.0.1.12" }
  redis_gateway_password  = "gw-pass"
  redis_consumer_password = "consumer-pass"
  base_env                = { PIPELINE_IMAGE = "registry.test/pipeline:1", COMPOSE_FILE = "compose.yaml:deploy/compose.core.yaml" }
  replica_files           = { "/etc/sysctl.d/90-marketplace.conf" = { mode = "0644", content = "net.ipv4.ip_nonlocal_bind = 1\n" } }
  cloud_config_template   = "../../cloud-init/cloud-config.yaml.tftpl"
}

run "disabled_renders_nothing" {
  command = plan
  variables {
    enabled = false
  }
  assert {
    condition     = !output.enabled && length(nonsensitive(output.core_env)) == 0 && length(output.core_files) == 0
    error_message = "a disabled replica changes nothing on the core"
  }
  assert {
    condition     = length(nonsensitive(output.gateway_env)) == 0 && length(nonsensitive(output.user_data)) == 0
    error_message = "a disabled replica changes nothing on the gateways and creates no user data"
  }
}

run "the_core_and_the_gateways_use_the_sentinels_and_both_clickhouse_replicas" {
  command = plan
  assert {
    condition     = nonsensitive(output.core_env.CONSUMER_REDIS_URL) == "redis-sentinel://consumer:consumer-pass@10.0.1.10:26379?sentinelServiceName=pipeline&node=10.0.1.11:26379&node=10.0.1.12:26379"
    error_message = "consumer: ${nonsensitive(output.core_env.CONSUMER_REDIS_URL)}"
  }
  assert {
    condition = jsonencode(nonsensitive(output.gateway_env)) == jsonencode({
      GATEWAY_ACK_REPLICAS = "1"
      REDIS_URL            = "redis-sentinel://gateway:gw-pass@10.0.1.10:26379?sentinelServiceName=pipeline&node=10.0.1.11:26379&node=10.0.1.12:26379"
    })
    error_message = "gateway: ${jsonencode(nonsensitive(output.gateway_env))}"
  }
  assert {
    condition = (
      nonsensitive(output.core_env.CLICKHOUSE_URL) == "http://clickhouse:8123,http://10.0.1.11:8123" &&
      nonsensitive(output.core_env.CLICKHOUSE_REPLICATED) == "true" &&
      nonsensitive(output.core_env.CLICKHOUSE_REPLICA_NAME) == "r1" &&
      nonsensitive(output.core_env.REDIS_REPLICAOF) == "" &&
      nonsensitive(output.core_env.COMPOSE_PROFILES) == "core,data" &&
      nonsensitive(output.core_env.COMPOSE_FILE) == "compose.yaml:deploy/compose.core.yaml:deploy/compose.ha-hosts.yaml"
    )
    error_message = "core: ${jsonencode(nonsensitive(output.core_env))}"
  }
  assert {
    condition     = strcontains(output.core_files["/opt/marketplace/deploy/clickhouse/hosts/replication.xml"].content, "<node><host>10.0.1.12</host><port>9181</port></node>")
    error_message = "the core's ClickHouse knows all three keepers"
  }
  assert {
    condition = (
      strcontains(output.core_files["/opt/marketplace/deploy/clickhouse/hosts/keeper.xml"].content, "<server_id>1</server_id>") &&
      length(regexall("<server><id>", output.core_files["/opt/marketplace/deploy/clickhouse/hosts/keeper.xml"].content)) == 3
    )
    error_message = "the core's keeper is server 1 of three"
  }
}

run "the_replica_follows_the_core_and_the_witness_runs_no_data" {
  command = plan
  assert {
    condition     = strcontains(nonsensitive(output.user_data.replica), "Core replica marketplace-core-replica")
    error_message = "the replica's user data comes from the shared cloud-config template"
  }
  assert {
    condition = (
      strcontains(nonsensitive(output.user_data.replica), "path: /opt/marketplace/.env") &&
      strcontains(nonsensitive(output.user_data.replica), "path: /opt/marketplace/deploy/clickhouse/hosts/replication.xml") &&
      strcontains(nonsensitive(output.user_data.replica), "path: /etc/sysctl.d/90-marketplace.conf")
    )
    error_message = "the replica gets its .env, its coordination files and the shared host files"
  }
  assert {
    condition     = !strcontains(nonsensitive(output.user_data.witness), "replication.xml") && strcontains(nonsensitive(output.user_data.witness), "hosts/keeper.xml")
    error_message = "the witness runs a keeper, no ClickHouse"
  }
}

run "user_data_over_32_kib_is_refused" {
  command = plan
  variables {
    # ~130 KB of hex: gzip halves it at best, base64 adds a third, far over 32 KiB
    replica_files = { "/opt/marketplace/big" = { mode = "0644", content = join("", [for i in range(1000) : sha512(tostring(i))]) } }
  }
  expect_failures = [output.user_data]
}

run "remote_gateways_wait_for_the_replica_and_the_witness_holds_few_secrets" {
  command = plan
  variables {
    base_env = { COMPOSE_PROJECT_NAME = "marketplace", REDIS_PASSWORD = "admin-pass", CLICKHOUSE_PASSWORD = "ch-pass", AWS_SECRET_ACCESS_KEY = "s3-secret" }
  }
  assert {
    condition     = jsonencode(output.remote_gateway_env) == jsonencode({ GATEWAY_ACK_REPLICAS = "1" })
    error_message = "a gateway outside eu-central keeps its REDIS_URL and waits for the replica"
  }
  assert {
    condition = (
      nonsensitive(output.env.replica.REDIS_REPLICAOF) == "10.0.1.10" &&
      nonsensitive(output.env.replica.CLICKHOUSE_URL) == "http://clickhouse:8123,http://10.0.1.10:8123" &&
      nonsensitive(output.env.replica.CLICKHOUSE_REPLICA_NAME) == "r2" &&
      nonsensitive(output.env.replica.CORE_PRIVATE_IP) == "10.0.1.11" &&
      nonsensitive(output.env.replica.COMPOSE_PROFILES) == "data" &&
      nonsensitive(output.env.replica.CLICKHOUSE_PASSWORD) == "ch-pass"
    )
    error_message = "replica: ${jsonencode(nonsensitive(output.env.replica))}"
  }
  assert {
    condition     = sort(keys(nonsensitive(output.env.witness))) == sort(["COMPOSE_PROJECT_NAME", "REDIS_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROFILES", "HOST_PRIVATE_IP", "REDIS_PRIMARY_IP", "SENTINEL_IPS", "SENTINEL_QUORUM", "CORE_PRIVATE_IP", "CORE_WIREGUARD_IP", "OTEL_EXPORTER_OTLP_ENDPOINT"])
    error_message = "witness: ${jsonencode(keys(nonsensitive(output.env.witness)))}"
  }
  assert {
    condition     = nonsensitive(output.env.witness.COMPOSE_PROFILES) == "" && nonsensitive(output.env.witness.SENTINEL_IPS) == "10.0.1.10 10.0.1.11 10.0.1.12"
    error_message = "the witness runs only its sentinel and keeper"
  }
}
