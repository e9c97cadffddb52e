#!/usr/bin/env bash
# Starts a single-node Apache Cassandra 5.0 from the Maven Central jars that fetch.sh copied into
# cassandra/lib (no tarball, no Docker), in the background, and waits until it answers CQL.
#
#   ./cassandra/start.sh [--fresh]      --fresh (or CASSANDRA_FRESH=1) wipes the data first
#   ./cassandra/start.sh --print-java   prints the JDK 17 `java` it would run (its keytool is beside it)
#
#   CASSANDRA_BASE   data, logs, generated conf, pid file   (default: <repo>/.run/cassandra, git-ignored)
#   CASSANDRA_LIB    jars                                   (default: <this dir>/lib; run fetch.sh first)
#   CASSANDRA_HEAP   -Xms/-Xmx                              (default: 1G; the node needs ~1.5 GiB resident)
#   CASSANDRA_MEMTABLE_MIB  memtable_heap_space and memtable_offheap_space, MiB (default: 128,
#                    small for tests; Cassandra's own default is a quarter of the heap, and a
#                    production node's memtables hold the owner log until its rows are deleted:
#                    BENCHMARKS.md "Owner log" measures both)
#   CQL_PORT / STORAGE_PORT                                 (default: 9042 / 7000; loopback only)
#   Durability is as in production: every acknowledged write is fsynced (cassandra.yaml:
#   commitlog_sync group) and schema changes are flushed (docs/storage.md, Durability).
#   CASSANDRA_JMX_PORT  set (e.g. 7199) for loopback JMX/nodetool; unset = JMX off
#   CASSANDRA_START_TIMEOUT  seconds to wait for CQL        (default: 180)
#   CASSANDRA_CLIENT_KEYSTORE  a PKCS12 keystore (server key + certificate): CQL over TLS only on
#                    this node (client_encryption_options, optional: false); unset = plaintext CQL
#   CASSANDRA_CLIENT_KEYSTORE_PASSWORD  its password
#   CASSANDRA_CLIENT_TRUSTSTORE  with CASSANDRA_CLIENT_KEYSTORE: a PKCS12 truststore of the CA(s)
#                    whose client certificates are accepted (keytool -importcert -storetype PKCS12);
#                    set = every CQL client must present one (require_client_auth: true)
#   CASSANDRA_CLIENT_TRUSTSTORE_PASSWORD  its password
#   CASSANDRA_PROBE_CERT / CASSANDRA_PROBE_KEY  PEM client certificate and key the readiness probe
#                    presents to such a node; unset = the probe waits for the log line and a TCP
#                    accept instead of a CQL answer
#   JAVA17           a JDK 17 `java` (default: auto-detect). Cassandra 5.0 runs on 11 and 17 only:
#                    on 21+ it fails (System.setSecurityManager throws on 24+).
#
# On success prints the pid and address and exits 0; the pid is in $CASSANDRA_BASE/cassandra.pid
# for stop.sh. If the node dies or does not answer in time, prints the log tail and exits 1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB="${CASSANDRA_LIB:-$HERE/lib}"
BASE="${CASSANDRA_BASE:-$ROOT/.run/cassandra}"
HEAP="${CASSANDRA_HEAP:-1G}"
MEMTABLE_MIB="${CASSANDRA_MEMTABLE_MIB:-128}"
[[ "$MEMTABLE_MIB" =~ ^[1-9][0-9]*$ ]] || { echo "start: CASSANDRA_MEMTABLE_MIB must be a positive number of MiB, got '$MEMTABLE_MIB'" >&2; exit 2; }
CQL_PORT="${CQL_PORT:-9042}"
STORAGE_PORT="${STORAGE_PORT:-7000}"
TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
FRESH="${CASSANDRA_FRESH:-0}"
[ "${1:-}" = "--fresh" ] && FRESH=1
PIDFILE="$BASE/cassandra.pid"

# ---------- a JDK 17, explicitly ----------
JAVA="${JAVA17:-}"
if [ -z "$JAVA" ]; then
  for c in /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java \
           /usr/lib/jvm/java-17-openjdk/bin/java /usr/lib/jvm/temurin-17-jdk-amd64/bin/java "$(command -v java || true)"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -version 2>&1 | head -1 | grep -q '"17\.'; then JAVA="$c"; break; fi
  done
fi
[ -n "$JAVA" ] || { echo "start: no JDK 17 found (apt-get install openjdk-17-jdk-headless, or set JAVA17)" >&2; exit 1; }

[ "${1:-}" = "--print-java" ] && { echo "$JAVA"; exit 0; }

is_cassandra() { kill -0 "$1" 2>/dev/null && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q 'org.apache.cassandra.service.CassandraDaemon'; }

if [ -f "$PIDFILE" ] && is_cassandra "$(cat "$PIDFILE")"; then
  echo "start: already running, pid $(cat "$PIDFILE"), cql 127.0.0.1:$CQL_PORT"
  exit 0
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$CQL_PORT") 2>/dev/null; then
  echo "start: something else already listens on 127.0.0.1:$CQL_PORT; set CQL_PORT or stop it" >&2
  exit 1
fi

ls "$LIB"/cassandra-all-*.jar >/dev/null 2>&1 || { echo "start: $LIB has no cassandra-all-*.jar (run cassandra/fetch.sh first)" >&2; exit 1; }
JAMM_JAR="$(ls "$LIB"/jamm-*.jar | head -1)"

# ---------- working tree: data kept across restarts unless --fresh; conf regenerated each time ----------
[ "$FRESH" = "1" ] && rm -rf "$BASE"
mkdir -p "$BASE"/{conf/triggers,data,commitlog,saved_caches,hints,cdc_raw,logs,tmp}
sed -e "s#__CASSANDRA_BASE__#$BASE#g" -e "s#^memtable_heap_space: .*#memtable_heap_space: ${MEMTABLE_MIB}MiB#" \
  -e "s#^memtable_offheap_space: .*#memtable_offheap_space: ${MEMTABLE_MIB}MiB#" "$HERE/cassandra.yaml" > "$BASE/conf/cassandra.yaml"
if [ -n "${CASSANDRA_CLIENT_KEYSTORE:-}" ]; then
  [ -r "$CASSANDRA_CLIENT_KEYSTORE" ] || { echo "start: cannot read CASSANDRA_CLIENT_KEYSTORE $CASSANDRA_CLIENT_KEYSTORE" >&2; exit 1; }
  cat >> "$BASE/conf/cassandra.yaml" <<YAML
client_encryption_options:
  enabled: true
  optional: false
  keystore: $CASSANDRA_CLIENT_KEYSTORE
  keystore_password: "${CASSANDRA_CLIENT_KEYSTORE_PASSWORD:-}"
  store_type: PKCS12
YAML
  if [ -n "${CASSANDRA_CLIENT_TRUSTSTORE:-}" ]; then
    [ -r "$CASSANDRA_CLIENT_TRUSTSTORE" ] || { echo "start: cannot read CASSANDRA_CLIENT_TRUSTSTORE $CASSANDRA_CLIENT_TRUSTSTORE" >&2; exit 1; }
    cat >> "$BASE/conf/cassandra.yaml" <<YAML
  require_client_auth: true
  truststore: $CASSANDRA_CLIENT_TRUSTSTORE
  truststore_password: "${CASSANDRA_CLIENT_TRUSTSTORE_PASSWORD:-}"
YAML
  else
    echo "  require_client_auth: false" >> "$BASE/conf/cassandra.yaml"
  fi
elif [ -n "${CASSANDRA_CLIENT_TRUSTSTORE:-}" ]; then
  echo "start: CASSANDRA_CLIENT_TRUSTSTORE needs CASSANDRA_CLIENT_KEYSTORE (client certificates are checked over TLS only)" >&2; exit 1
fi
cp "$HERE/logback.xml" "$BASE/conf/logback.xml"
: > "$BASE/logs/stdout.log"

JVM_OPTS=(
  # --- conf/jvm-server.options (5.0) ---
  -ea -da:net.openhft...
  -XX:+UseThreadPriorities
  -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$BASE/logs"
  -Xss256k
  -XX:+AlwaysPreTouch
  -XX:+UseTLAB -XX:+ResizeTLAB -XX:+UseNUMA
  -XX:+PerfDisableSharedMem
  -Djava.net.preferIPv4Stack=true
  -Dchronicle.analytics.disable=true
  # --- heap (cassandra-env.sh would pick max(min(RAM/2,1G), min(RAM/4,8G)) = 6G on 24 GiB; 1G is plenty for tests) ---
  "-Xms$HEAP" "-Xmx$HEAP"
  # --- conf/jvm17-server.options (5.0): G1 ---
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
  -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
  # --- conf/jvm17-server.options (5.0): JPMS ---
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  # --- bin/cassandra.in.sh adds these when a full JDK (javac) is present on Java 17 ---
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  # --- extra, NOT in 5.0's file; harmless insurance (seen needed by other launchers/forks, jamm measureDeep) ---
  --add-opens java.base/java.net=ALL-UNNAMED
  --add-opens java.base/java.nio.charset=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  # --- conf/jvm17-server.options (5.0): netty ---
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  # --- conf/cassandra-env.sh (dynamic part) ---
  "-javaagent:$JAMM_JAR"            # optional in 5.0 (ObjectSizes falls back to Unsafe) but this is what production runs
  -XX:+ExitOnOutOfMemoryError       # env.sh uses -XX:OnOutOfMemoryError="kill -9 %p"; StartupChecks accepts either
  -Dcassandra.libjemalloc=-         # jemalloc not preloaded (explicitly disabled -> INFO instead of WARN)
  # --- bin/cassandra launch_service() parameters ---
  "-Dlogback.configurationFile=$BASE/conf/logback.xml"
  "-Dcassandra.logdir=$BASE/logs"
  "-Dcassandra.storagedir=$BASE"
  -Dcassandra-foreground=yes        # otherwise CassandraDaemon closes System.out/err after setup
  # --- this kit ---
  "-Dcassandra.config=file://$BASE/conf/cassandra.yaml"
  "-Dcassandra.triggers_dir=$BASE/conf/triggers"
  "-Djava.io.tmpdir=$BASE/tmp"      # JNA / netty-epoll / snappy / lz4 extract .so files here (must not be noexec)
  "-Djna.tmpdir=$BASE/tmp"
  "-Dcassandra.native_transport_port=$CQL_PORT"
  "-Dcassandra.storage_port=$STORAGE_PORT"
)
# Start-up delays a fresh single-node cluster does not need (read in 5.0 source; none changes CQL
# semantics or durability). Deliberately absent: -Dcassandra.skip_sync (fsync becomes a no-op) and
# -Dcassandra.unsafesystem / -Dcassandra.test.flush_local_schema_changes=false (schema changes not
# flushed: after kill -9 the commit-log replay skips every write to a table created since the
# last flush as "unknown CF", and the next start recreates the keyspace empty).
JVM_OPTS+=(
  -Dcassandra.skip_wait_for_gossip_to_settle=0     # Gossiper.waitToSettle() returns at once
  -Dcassandra.ring_delay_ms=1000                   # defensive: fresh single seed never sleeps RING_DELAY anyway
  -Dcassandra.superuser_setup_delay_ms=0           # default-role setup runs immediately instead of after 10 s
)
# CQL over TLS through the JDK's TLS engine, not netty-tcnative's BoringSSL (also in lib/): with
# require_client_auth and TLS 1.3, a Node client given a CA (the driver's sslOptions.ca, i.e.
# IM_CASSANDRA_TLS_CA) sees its requests garbled on the BoringSSL engine: the node logs "Invalid or
# unsupported protocol version", the driver "wrong streamId", and requests time out. TLS 1.2, no
# CA option, or the JDK engine all work; the JDK engine keeps TLS 1.3 and the CA check.
if [ -n "${CASSANDRA_CLIENT_KEYSTORE:-}" ]; then
  JVM_OPTS+=(-Dcassandra.disable_tcactive_openssl=true)
fi
if [ -n "${CASSANDRA_JMX_PORT:-}" ]; then
  JVM_OPTS+=("-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT" -Dcom.sun.management.jmxremote.authenticate=false)
fi

export MALLOC_ARENA_MAX=4   # as cassandra-env.sh
T0=$(date +%s%N)
cd "$BASE"
# setsid: its own session and process group, so a terminal's Ctrl-C or a CI step ending does not
# signal it; stdin closed as bin/cassandra does.
setsid "$JAVA" "${JVM_OPTS[@]}" -cp "$BASE/conf:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
  > "$BASE/logs/stdout.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PIDFILE"
echo "start: pid $PID ($("$JAVA" -version 2>&1 | head -1)), logs $BASE/logs"

fail() {
  echo "start: $1; last log lines:" >&2
  tail -n 60 "$BASE/logs/stdout.log" >&2 || true
  if is_cassandra "$PID"; then kill -TERM "$PID" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
  exit 1
}

# ---------- wait until CQL answers ----------
# A node that requires client certificates answers the probe only if it presents one.
PROBE_CQL=1
[ -n "${CASSANDRA_CLIENT_TRUSTSTORE:-}" ] && { [ -z "${CASSANDRA_PROBE_CERT:-}" ] || [ -z "${CASSANDRA_PROBE_KEY:-}" ]; } && PROBE_CQL=0
if [ "$PROBE_CQL" = 1 ] && command -v node >/dev/null && [ -d "$ROOT/node_modules/cassandra-driver" ]; then
  set +e
  VERSION="$(cd "$ROOT" && CQL_TLS="${CASSANDRA_CLIENT_KEYSTORE:+1}" CQL_TLS_CERT="${CASSANDRA_PROBE_CERT:-}" CQL_TLS_KEY="${CASSANDRA_PROBE_KEY:-}" node "$HERE/wait-cql.js" 127.0.0.1 "$CQL_PORT" "$TIMEOUT" "$PID" 2>"$BASE/logs/wait.err")"
  rc=$?
  set -e
  [ $rc -eq 2 ] && fail "the process exited during startup"
  [ $rc -ne 0 ] && fail "no CQL answer after ${TIMEOUT}s ($(cat "$BASE/logs/wait.err"))"
else
  # No driver installed yet, or no certificate for a node that requires one: fall back to the
  # log line plus a TCP accept on the CQL port.
  deadline=$(( $(date +%s) + TIMEOUT ))
  until grep -q "Startup complete" "$BASE/logs/stdout.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$CQL_PORT") 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || fail "the process exited during startup"
    [ "$(date +%s)" -ge "$deadline" ] && fail "not ready after ${TIMEOUT}s"
    sleep 0.5
  done
  VERSION="$(ls "$LIB"/cassandra-all-*.jar | sed 's#.*cassandra-all-\(.*\)\.jar#\1#')"
fi
MS=$(( ($(date +%s%N) - T0) / 1000000 ))
echo "start: cassandra $VERSION ready at 127.0.0.1:$CQL_PORT (pid $PID) after $((MS / 1000)).$(printf %03d $((MS % 1000)))s"
