#!/usr/bin/env bash
# Stops the etcd scripts/etcd-start.sh started in DIR ($1, default out/etcd): SIGTERM, then SIGKILL
# if it has not exited after 10 s. Keeps its data: the next etcd-start.sh on DIR resumes from it.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../out/etcd}"
pidfile="$dir/etcd.pid"
if [ ! -f "$pidfile" ]; then
  echo "etcd: not running (no $pidfile)" >&2
  exit 0
fi
pid="$(cat "$pidfile")"
# A live etcd: a stale file may name a pid since given to another process, and an etcd that has
# exited can stay a zombie (kill -0 still succeeds) for a second or two before init reaps it.
running() {
  local stat
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" && [[ "$stat" == *"(etcd) "[!Z]* ]]
}
if running; then
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do
    running || break
    sleep 0.1
  done
  if running; then kill -KILL "$pid" 2>/dev/null; fi
  echo "etcd: stopped (pid $pid)" >&2
else
  echo "etcd: not running (stale $pidfile)" >&2
fi
rm -f "$pidfile"
exit 0
