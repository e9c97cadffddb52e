#!/usr/bin/env bash
# Stops the node that start.sh started: exactly the pid in $CASSANDRA_BASE/cassandra.pid, and only
# while that pid is still a Cassandra JVM (a stale pid file never kills an unrelated process).
# SIGTERM runs Cassandra's drain hook; SIGKILL after CASSANDRA_STOP_TIMEOUT seconds (default 60).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BASE="${CASSANDRA_BASE:-$ROOT/.run/cassandra}"
TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"
PIDFILE="$BASE/cassandra.pid"

[ -f "$PIDFILE" ] || { echo "stop: no $PIDFILE (not started by start.sh, or already stopped)"; exit 0; }
PID="$(cat "$PIDFILE")"
if ! kill -0 "$PID" 2>/dev/null || ! tr '\0' ' ' < "/proc/$PID/cmdline" 2>/dev/null | grep -q 'org.apache.cassandra.service.CassandraDaemon'; then
  echo "stop: pid $PID is not running Cassandra any more; removing stale $PIDFILE"
  rm -f "$PIDFILE"
  exit 0
fi
kill -TERM "$PID"
for _ in $(seq 1 "$TIMEOUT"); do
  if ! kill -0 "$PID" 2>/dev/null; then rm -f "$PIDFILE"; echo "stop: cassandra pid $PID stopped"; exit 0; fi
  sleep 1
done
echo "stop: pid $PID still running after ${TIMEOUT}s; sending SIGKILL" >&2
kill -KILL "$PID" 2>/dev/null || true
rm -f "$PIDFILE"
