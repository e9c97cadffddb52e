#!/usr/bin/env bash
# Starts a local nats-server for development and tests on 127.0.0.1:${NATS_PORT:-4222}, in the
# background, with its pid file, log, config and credentials under .run/nats/ (git-ignored).
# Idempotent: if the server from that pid file is already running, it says so and exits 0. Fails
# loudly, with the log tail, when the server will not start or not accept connections in time.
# Stop it with nats-stop.sh.
#
# The server requires credentials, each role's with only its permissions (scripts/nats-config.js,
# docs/security.md): logic.nk for logic, gateway-<node>.nk per gateway node of NATS_GATEWAYS,
# and dev.url (a full-permission user) that the test suites and tools on this machine read.
#
#   scripts/nats-start.sh [--port N] [--dir DIR]
#   NATS_PORT / NATS_DIR       the same as --port / --dir (default 4222 / .run/nats)
#   NATS_GATEWAYS              gateway node ids to make credentials for (default gw-1,gw-2: make up's)
#   NATS_TLS_CERT, NATS_TLS_KEY  PEM certificate and key: the server then speaks TLS only
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${NATS_DIR:-$root/.run/nats}"
port="${NATS_PORT:-4222}"
while (($#)); do
  case "$1" in
    --port) port="${2:?--port needs a value}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
    *) echo "usage: scripts/nats-start.sh [--port N] [--dir DIR]" >&2; exit 2 ;;
  esac
done
gateways="${NATS_GATEWAYS:-gw-1,gw-2}"
bin="${NATS_SERVER_BIN:-nats-server}"
timeout_s="${NATS_START_TIMEOUT_S:-10}"
pidfile="$dir/nats.pid"
portfile="$dir/nats.port"
log="$dir/nats.log"

fail() { echo "nats-start: $*" >&2; exit 1; }
# For failures after launch: what the server said is the useful part.
fail_with_log() {
  echo "nats-start: $*" >&2
  echo "--- last lines of $log ---" >&2
  tail -n 20 "$log" >&2
  exit 1
}

# Whether the process in the pid file is alive and is a nats-server (not a recycled pid).
ours_running() {
  [[ -f "$pidfile" ]] || return 1
  local pid; pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && [[ "$(ps -p "$pid" -o comm= 2>/dev/null)" == nats-server* ]]
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$dir"

if ours_running; then
  running_port="$(cat "$portfile" 2>/dev/null || echo '?')"
  [[ "$running_port" == "$port" ]] \
    || fail "already running (pid $(cat "$pidfile")) on port $running_port, not $port; run scripts/nats-stop.sh first"
  echo "nats-server already running: pid $(cat "$pidfile"), nats://127.0.0.1:$port"
  exit 0
fi
rm -f "$pidfile" "$portfile"

command -v "$bin" >/dev/null 2>&1 || fail "'$bin' not found; install it with: apt-get install -y nats-server"
accepts "$port" && fail "port $port already accepts connections (another server?); set NATS_PORT to use another"

tls_args=()
if [[ -n "${NATS_TLS_CERT:-}" || -n "${NATS_TLS_KEY:-}" ]]; then
  tls_args=(--tls-cert "${NATS_TLS_CERT:?NATS_TLS_KEY needs NATS_TLS_CERT}" --tls-key "${NATS_TLS_KEY:?NATS_TLS_CERT needs NATS_TLS_KEY}")
fi
node "$root/scripts/nats-config.js" --dir "$dir" --port "$port" --gateways "$gateways" "${tls_args[@]}" \
  || fail "could not write the config and credentials in $dir"

echo "--- $(date -u +%FT%TZ) starting $bin on 127.0.0.1:$port ($dir/nats.conf) ---" >>"$log"
# setsid: the server must outlive this shell and its process group.
setsid "$bin" -c "$dir/nats.conf" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
echo "$port" >"$portfile"

deadline=$((SECONDS + timeout_s))
until accepts "$port"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidfile" "$portfile"
    fail_with_log "nats-server (pid $pid) exited during startup"
  fi
  if ((SECONDS >= deadline)); then
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile" "$portfile"
    fail_with_log "nats-server (pid $pid) did not accept connections on port $port within ${timeout_s}s"
  fi
  sleep 0.1
done
echo "nats-server started: pid $pid, nats://127.0.0.1:$port (log: $log; credentials: $dir)"
