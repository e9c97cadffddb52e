#!/usr/bin/env bash
# Stops the nats-server that scripts/nats-start.sh started: exactly the pid in .run/nats/nats.pid,
# and only if that pid is still a nats-server. SIGTERM first, SIGKILL if it has not exited in time.
# Removes dev.url (the test suites' URL with credentials) with it; the role seeds stay.
#   scripts/nats-stop.sh [--dir DIR]      (NATS_DIR: the same; default .run/nats)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${NATS_DIR:-$root/.run/nats}"
case "${1:-}" in
  --dir) dir="${2:?--dir needs a value}" ;;
  "") ;;
  *) echo "usage: scripts/nats-stop.sh [--dir DIR]" >&2; exit 2 ;;
esac
pidfile="$dir/nats.pid"
timeout_s="${NATS_STOP_TIMEOUT_S:-10}"

if [[ ! -f "$pidfile" ]]; then
  echo "nats-server not running (no $pidfile)"
  rm -f "$dir/dev.url"
  exit 0
fi
pid="$(cat "$pidfile")"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null \
  || [[ "$(ps -p "$pid" -o comm= 2>/dev/null)" != nats-server* ]]; then
  echo "nats-server not running (stale pid file: $pid); removing it"
  rm -f "$pidfile" "$dir/nats.port" "$dir/dev.url"
  exit 0
fi

# A zombie (exited, not yet reaped by a parent that never waits) counts as stopped.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -p "$1" -o stat= 2>/dev/null)" != Z* ]]; }

kill -TERM "$pid"
deadline=$((SECONDS + timeout_s))
while alive "$pid"; do
  if ((SECONDS >= deadline)); then
    echo "nats-server (pid $pid) still running after ${timeout_s}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    break
  fi
  sleep 0.1
done
rm -f "$pidfile" "$dir/nats.port" "$dir/dev.url"
echo "nats-server stopped (pid $pid)"
