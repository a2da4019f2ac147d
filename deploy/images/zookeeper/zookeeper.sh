#!/bin/sh
# One standalone ZooKeeper server in the foreground, configured from the environment:
#   ZOOKEEPER_CLIENT_PORT  the client port (default 2181; ClickHouse Keeper's is 9181)
#   ZOOKEEPER_DATA_DIR     snapshots and transaction log (default /var/lib/zookeeper)
#   ZOOKEEPER_TICK_MS      the time unit: sessions last 2 to 20 ticks (default 2000, so a
#                          ClickHouse's 30 s session is granted as asked)
#   ZOOKEEPER_HEAP         the JVM's maximum heap (default 128m: the keeper's container has 256m)
# No admin HTTP server (it would take port 8080); the four-letter words `srvr` (which says
# "Mode: standalone" once clients are served; `ruok` answers earlier), `ruok` and `mntr`.
set -eu

port="${ZOOKEEPER_CLIENT_PORT:-2181}"
data="${ZOOKEEPER_DATA_DIR:-/var/lib/zookeeper}"
config=/tmp/zoo.cfg

umask 077
mkdir -p "$data"
cat >"$config" <<CFG
tickTime=${ZOOKEEPER_TICK_MS:-2000}
dataDir=$data
clientPort=$port
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,mntr
standaloneEnabled=true
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG

exec java -Xms32m "-Xmx${ZOOKEEPER_HEAP:-128m}" -XX:+UseSerialGC \
    -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain "$config"
