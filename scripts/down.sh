#!/usr/bin/env bash
# `make down`: stops what scripts/up.sh started, and nothing else.
#   1. the services in .run/procs/*.pid (gateways first so clients are drained while logic is still
#      up, then logic, then the router): SIGTERM, SIGKILL after DOWN_TIMEOUT_S (default 30), and
#      only while the pid is still that service (a stale pid file never kills an unrelated process);
#   2. Cassandra and NATS via their own stop scripts, only if up.sh recorded that it started them.
#
#   scripts/down.sh [--services-only | --infra-only]     (`make infra-down` is --infra-only)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
procs="$root/.run/procs"
timeout_s="${DOWN_TIMEOUT_S:-30}"
services=1
infra=1
case "${1:-}" in
  --services-only) infra=0 ;;
  --infra-only) services=0 ;;
  "") ;;
  *) echo "usage: scripts/down.sh [--services-only | --infra-only]" >&2; exit 2 ;;
esac

alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -p "$1" -o stat= 2>/dev/null)" != Z* ]]; }
svc_script() { case "$1" in router) echo router ;; logic-*) echo logic ;; gw-*) echo gateway ;; *) echo "?" ;; esac; }
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "dist/$2/main.js"; }

# stop_group <name...>: SIGTERM to all of them at once, then wait (bounded) for each.
stop_group() {
  local name pid pidfile
  local -a names=() pids=()
  for name in "$@"; do
    pidfile="$procs/$name.pid"
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" "$(svc_script "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name"); pids+=("$pid")
    else
      echo "down: $name not running (stale pid file: $pid); removing it"
      rm -f "$pidfile"
    fi
  done
  local deadline=$((SECONDS + timeout_s)) i
  for i in "${!pids[@]}"; do
    while alive "${pids[$i]}"; do
      if ((SECONDS >= deadline)); then
        echo "down: ${names[$i]} (pid ${pids[$i]}) still running after ${timeout_s}s; sending SIGKILL" >&2
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    rm -f "$procs/${names[$i]}.pid"
    echo "down: ${names[$i]} stopped (pid ${pids[$i]})"
  done
}

if ((services)) && [[ -d "$procs" ]]; then
  gws=() logics=() others=()
  for f in "$procs"/*.pid; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .pid)"
    case "$name" in
      gw-*) gws+=("$name") ;;
      logic-*) logics+=("$name") ;;
      *) others+=("$name") ;;
    esac
  done
  ((${#gws[@]})) && stop_group "${gws[@]}"
  ((${#logics[@]})) && stop_group "${logics[@]}"
  ((${#others[@]})) && stop_group "${others[@]}"
fi

if ((infra)); then
  if [[ -f "$procs/started-cassandra" ]]; then
    cassandra/stop.sh
    rm -f "$procs/started-cassandra"
  else
    echo "down: Cassandra was not started by up.sh; leaving it"
  fi
  if [[ -f "$procs/started-nats" ]]; then
    nats_dir="$(cat "$procs/started-nats")"
    scripts/nats-stop.sh ${nats_dir:+--dir "$nats_dir"}
    rm -f "$procs/started-nats"
  else
    echo "down: NATS was not started by up.sh; leaving it"
  fi
fi
exit 0
