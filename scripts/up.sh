#!/usr/bin/env bash
# `make up`: the distributed mode on one machine. Starts NATS and Cassandra (unless something
# already serves their ports), builds dist/ if needed, then runs each service as its own process:
#
#   router    gRPC 127.0.0.1:7181, route API http://127.0.0.1:7180
#   logic-1   127.0.0.1:7190          logic-2   127.0.0.1:7191
#   gw-1      127.0.0.1:7100          gw-2      127.0.0.1:7101   (both talk to both logic)
#
# Each also serves /healthz, /readyz and /metrics on its admin port (IM_ADMIN_ADDR): router 7280,
# logic 7290/7291, gateways 7200/7201.
#
# Logs and pid files go to .run/procs/; only what this script started is recorded there, and
# scripts/down.sh (`make down`) stops exactly that. `scripts/up.sh --infra-only` (`make infra-up`)
# starts NATS and Cassandra alone.
#
#   IM_STORE=sqlite         run one logic on SQLite (.run/data) instead of two on Cassandra; skips Cassandra
#   UP_START_TIMEOUT_S      how long each service may take to print its listening line (default 60)
#   NATS_PORT / CQL_PORT    as for scripts/nats-start.sh / cassandra/start.sh (default 4222 / 9042)
#   NATS_DIR                as for scripts/nats-start.sh (default .run/nats): each service gets its
#                           role's credential from there (logic.nk, gateway-gw-N.nk) when present
#   OTEL_TRACES_EXPORTER    default none here (no collector runs locally); set otlp and
#                           OTEL_EXPORTER_OTLP_ENDPOINT to trace
#   Other IM_* and OTEL_* settings in the environment (IM_LOG_LEVEL, ...) reach every service.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
procs="$root/.run/procs"
infra_only=0
case "${1:-}" in
  --infra-only) infra_only=1 ;;
  "") ;;
  *) echo "usage: scripts/up.sh [--infra-only]" >&2; exit 2 ;;
esac

store="${IM_STORE:-cassandra}"
case "$store" in cassandra|sqlite) ;; *) echo "up: IM_STORE must be cassandra or sqlite, got '$store'" >&2; exit 2 ;; esac
nats_port="${NATS_PORT:-4222}"
cql_port="${CQL_PORT:-9042}"
timeout_s="${UP_START_TIMEOUT_S:-60}"
nats_url="nats://127.0.0.1:$nats_port"
nats_dir="${NATS_DIR:-$root/.run/nats}"
router_grpc=127.0.0.1:7181
router_http=127.0.0.1:7180
logic_addrs=(127.0.0.1:7190 127.0.0.1:7191)
gw_addrs=(127.0.0.1:7100 127.0.0.1:7101)
export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-none}"
router_admin=127.0.0.1:7280
logic_admins=(127.0.0.1:7290 127.0.0.1:7291)
gw_admins=(127.0.0.1:7200 127.0.0.1:7201)

mkdir -p "$procs"
accepts() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -p "$1" -o stat= 2>/dev/null)" != Z* ]]; }
# The pid in a pid file is still the service it names (not a recycled pid).
svc_script() { case "$1" in router) echo router ;; logic-*) echo logic ;; gw-*) echo gateway ;; esac; }
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "dist/$2/main.js"; }

# What this run started, so a failure stops exactly that (and not infra an earlier run left up).
started_infra=()
fail() {
  echo "up: $*" >&2
  echo "up: stopping what this run started" >&2
  "$root/scripts/down.sh" --services-only >&2 || true
  for what in "${started_infra[@]}"; do
    case "$what" in
      cassandra) "$root/cassandra/stop.sh" >&2 || true ;;
      nats) "$root/scripts/nats-stop.sh" --dir "$nats_dir" >&2 || true ;;
    esac
    rm -f "$procs/started-$what"
  done
  exit 1
}

# A second `make up` over a running one would fight it for the ports: refuse before touching anything.
if ((!infra_only)); then
  for f in "$procs"/*.pid; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .pid)"
    pid="$(cat "$f")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" "$(svc_script "$name")"; then
      echo "up: $name is already running (pid $pid); run 'make down' first" >&2
      exit 1
    fi
    rm -f "$f"
  done
fi

# ---------------------------------------------------------------- infrastructure
reuse_note() {
  if [[ -f "$procs/started-$1" ]]; then echo "already running, started by an earlier up.sh: make down stops it"
  else echo "already running, not started by up.sh: make down leaves it"; fi
}
nats_note=""
if accepts "127.0.0.1:$nats_port"; then
  nats_note="$(reuse_note nats)"
  echo "up: NATS already accepts on 127.0.0.1:$nats_port; using it ($nats_note)"
else
  NATS_GATEWAYS=gw-1,gw-2 scripts/nats-start.sh --port "$nats_port" --dir "$nats_dir" || fail "NATS would not start"
  # The marker holds the server's directory, for down.sh.
  echo "$nats_dir" >"$procs/started-nats"
  started_infra+=(nats)
  nats_note="started by up.sh"
fi

cassandra_note="not used (IM_STORE=sqlite)"
if [[ "$store" == cassandra ]]; then
  cass_pid="$(cat .run/cassandra/cassandra.pid 2>/dev/null || true)"
  if accepts "127.0.0.1:$cql_port"; then
    cassandra_note="$(reuse_note cassandra)"
    echo "up: Cassandra already accepts on 127.0.0.1:$cql_port; using it ($cassandra_note)"
  elif [[ "$cass_pid" =~ ^[0-9]+$ ]] && alive "$cass_pid"; then
    # Started by someone else and still booting: wait for CQL rather than start a second node.
    echo "up: Cassandra (pid $cass_pid) is starting; waiting for CQL on 127.0.0.1:$cql_port"
    node cassandra/wait-cql.js 127.0.0.1 "$cql_port" "${CASSANDRA_START_TIMEOUT:-180}" "$cass_pid" >/dev/null \
      || fail "Cassandra (pid $cass_pid) did not answer CQL"
    cassandra_note="$(reuse_note cassandra)"
  else
    cassandra/fetch.sh || fail "cassandra/fetch.sh failed"
    CQL_PORT="$cql_port" cassandra/start.sh || fail "Cassandra would not start"
    touch "$procs/started-cassandra"
    started_infra+=(cassandra)
    cassandra_note="started by up.sh"
  fi
fi

if ((infra_only)); then
  echo "up: infrastructure ready: NATS $nats_url ($nats_note); Cassandra 127.0.0.1:$cql_port ($cassandra_note)"
  exit 0
fi

# ---------------------------------------------------------------- services
if [[ ! -f dist/router/main.js || ! -f dist/logic/main.js || ! -f dist/gateway/main.js || ! -f dist/cli/main.js ]]; then
  echo "up: dist/ is incomplete; building (npm run build)"
  npm run build || fail "the build failed"
fi

# The operator secret: created once, shared by both gateways and the `im` CLI.
secret_file="$root/.run/auth.secret"
if [[ ! -s "$secret_file" ]]; then
  (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("hex") + "\n")' >"$secret_file.tmp")
  mv "$secret_file.tmp" "$secret_file"
fi
chmod 600 "$secret_file"
secret="$(tr -d '\n' <"$secret_file")"
# The CLI reads $IM_AUTH_SECRET, else $IM_DATA_DIR/auth.secret (default ./data/auth.secret).
cli_note=""
cli_secret="$root/data/auth.secret"
if [[ ! -e "$cli_secret" ]]; then
  mkdir -p "$root/data"
  (umask 077 && cp "$secret_file" "$cli_secret")
  cli_note="wrote the secret to data/auth.secret, so 'im' finds it with no setting"
elif [[ "$(tr -d '\n' <"$cli_secret")" == "$secret" ]]; then
  cli_note="data/auth.secret already holds this secret, so 'im' finds it with no setting"
else
  cli_note="data/auth.secret holds another secret (embedded mode's); for 'im' run: export IM_DATA_DIR=.run"
fi

common_env=(IM_BUS=nats "IM_NATS_URL=$nats_url" "IM_ROUTER_GRPC_ADDR=$router_grpc")
if [[ "$store" == cassandra ]]; then
  # One node: ONE is the only level it can satisfy for a keyspace created with replication 1.
  store_env=(IM_STORE=cassandra "IM_CASSANDRA_CONTACT_POINTS=127.0.0.1:$cql_port"
    "IM_CASSANDRA_CONSISTENCY=${IM_CASSANDRA_CONSISTENCY:-ONE}" "IM_CASSANDRA_KEYSPACE=${IM_CASSANDRA_KEYSPACE:-im}")
else
  store_env=(IM_STORE=sqlite "IM_DATA_DIR=$root/.run/data")
  # The SQLite store takes one writing process (it keeps seqs in memory): one logic process.
  logic_addrs=("${logic_addrs[0]}")
  logic_admins=("${logic_admins[0]}")
fi

# nats_cred <file>: sets cred to the setting that hands a role its NATS credential (made by
# scripts/nats-start.sh), or to nothing for a server it did not configure (one without credentials).
nats_cred() { cred=(); [[ -f "$nats_dir/$1" ]] && cred=("IM_NATS_NKEY_SEED_FILE=$nats_dir/$1"); return 0; }

# start_service <name> <addr> <env...>: runs node dist/<svc>/main.js in its own session, logs and
# pid under .run/procs, and waits for its listening line and its port.
start_service() {
  local name="$1" addr="$2"; shift 2
  local svc; svc="$(svc_script "$name")"
  local log="$procs/$name.log" pidfile="$procs/$name.pid"
  accepts "$addr" && fail "$name: $addr already accepts connections (another process?)"
  [[ -f "$log" ]] && mv -f "$log" "$log.1"
  echo "--- $(date -u +%FT%TZ) up.sh starting $name on $addr ---" >"$log"
  # setsid: the service outlives this shell and is not hit by a terminal's Ctrl-C.
  # Logic and gateways run with the young generation the Helm chart gives them (maxSemiSpaceMiB).
  local flags=()
  [[ "$svc" == logic ]] && flags=(--max-semi-space-size=128)
  [[ "$svc" == gateway ]] && flags=(--max-semi-space-size=32)
  env "$@" setsid node "${flags[@]}" "dist/$svc/main.js" >>"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  local deadline=$((SECONDS + timeout_s))
  until grep -q "\"msg\":\"$svc listening\"" "$log" && accepts "$addr"; do
    if ! alive "$pid"; then
      echo "--- last lines of $log ---" >&2; tail -n 30 "$log" >&2
      fail "$name (pid $pid) exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      echo "--- last lines of $log ---" >&2; tail -n 30 "$log" >&2
      fail "$name (pid $pid) did not print its listening line within ${timeout_s}s"
    fi
    sleep 0.2
  done
  echo "up: $name listening on $addr (pid $pid)"
}

start_service router "$router_grpc" "IM_ROUTER_GRPC_ADDR=$router_grpc" "IM_ROUTER_HTTP_ADDR=$router_http" "IM_ADMIN_ADDR=$router_admin"
accepts "$router_http" || fail "router: route API $router_http does not accept connections"
# One after the other: the first logic creates the Cassandra schema, the second finds it there.
for i in "${!logic_addrs[@]}"; do
  nats_cred logic.nk
  start_service "logic-$((i + 1))" "${logic_addrs[$i]}" "${common_env[@]}" "${store_env[@]}" "IM_LOGIC_ADDR=${logic_addrs[$i]}" \
    "IM_ADMIN_ADDR=${logic_admins[$i]}" "${cred[@]}"
done
logic_list="$(IFS=,; echo "${logic_addrs[*]}")"
for i in "${!gw_addrs[@]}"; do
  nats_cred "gateway-gw-$((i + 1)).nk"
  start_service "gw-$((i + 1))" "${gw_addrs[$i]}" "${common_env[@]}" "IM_NODE_ID=gw-$((i + 1))" \
    "IM_GATEWAY_ADDR=${gw_addrs[$i]}" "IM_LOGIC_ADDRS=$logic_list" "IM_AUTH_SECRET=$secret" "IM_ADMIN_ADDR=${gw_admins[$i]}" \
    "${cred[@]}"
done

cat <<EOF

up: all services running (logs and pids in .run/procs/; stop with 'make down')
  route API    http://$router_http/v1/route
  router gRPC  $router_grpc
  logic        ${logic_addrs[*]}   (store: $store)
  gateways     gw-1 ${gw_addrs[0]}, gw-2 ${gw_addrs[1]}
  admin        /healthz /readyz /metrics on router $router_admin, logic ${logic_admins[*]}, gateways ${gw_admins[*]}
  NATS         $nats_url   ($nats_note; credentials in $nats_dir: logic.nk, gateway-gw-N.nk, dev.url)
  Cassandra    127.0.0.1:$cql_port   ($cassandra_note)
  auth secret  .run/auth.secret; $cli_note
  try          node dist/cli/main.js listen bob --count 1 --timeout 30 --router http://$router_http &
               node dist/cli/main.js send alice bob hello --router http://$router_http
               (listen starts at seq 0: with data from earlier runs, add --from-seq <bob's last seq>)
EOF
