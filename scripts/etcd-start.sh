#!/usr/bin/env bash
# Starts a single-node etcd for a local demo of the etcd control plane: clients on 127.0.0.1:2379,
# peers on 127.0.0.1:2380, everything under DIR ($1, default out/etcd): the data in DIR/data, the
# log in DIR/etcd.log, the pid in DIR/etcd.pid. It runs in the background; this waits until it
# reports healthy, then prints the --coordinator URI on stdout. Installs Debian's etcd-server and
# etcd-client first when they are missing. Does nothing when the etcd of DIR already runs. Stop it
# with scripts/etcd-stop.sh (same DIR). The tests start private etcds of their own instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../out/etcd}"
client=127.0.0.1:2379
peer=127.0.0.1:2380
timeout_s=30

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  bash "$here/install-test-deps.sh"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pidfile="$dir/etcd.pid"
log="$dir/etcd.log"

# The port test first: etcdctl takes its whole --command-timeout to give up on a closed port.
healthy() {
  (exec 3<>"/dev/tcp/${client%:*}/${client#*:}") 2>/dev/null &&
    ETCDCTL_API=3 etcdctl --endpoints="$client" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}
# The pid in the file is ours while it names a live etcd: pids are reused, and an etcd that has
# exited can stay a zombie for a second or two before init reaps it.
ours() {
  local stat
  stat="$(cat "/proc/$(cat "$pidfile" 2>/dev/null)/stat" 2>/dev/null)" && [[ "$stat" == *"(etcd) "[!Z]* ]]
}

if ours; then
  echo "etcd: already running (pid $(cat "$pidfile"), $dir)" >&2
else
  rm -f "$pidfile"
  if healthy; then
    echo "etcd: another etcd already answers on $client (not one this script started in $dir); stop it first" >&2
    exit 1
  fi
  # ETCD_* variables configure etcd too (and clash with flags): keep the caller's out of it.
  for v in $(compgen -e | grep '^ETCD_' || true); do unset "$v"; done
  # The first start writes the member (its name and peer URL) into DIR/data; a later start on the
  # same DIR resumes from there and ignores the --initial-* flags.
  nohup etcd \
    --name=keyway-demo \
    --data-dir="$dir/data" \
    --listen-client-urls="http://$client" \
    --advertise-client-urls="http://$client" \
    --listen-peer-urls="http://$peer" \
    --initial-advertise-peer-urls="http://$peer" \
    --initial-cluster="keyway-demo=http://$peer" \
    --initial-cluster-state=new \
    </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
fi

deadline=$(( $(date +%s) + timeout_s ))
until healthy; do
  if ! ours; then
    echo "etcd: exited before it was healthy; the end of $log:" >&2
    tail -n 20 "$log" >&2 || true
    rm -f "$pidfile"
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "etcd: not healthy on $client within ${timeout_s}s (left running, pid $(cat "$pidfile")); the end of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "etcd: running (pid $(cat "$pidfile"), client $client, data in $dir/data, log $log)" >&2
echo "etcd://$client"
