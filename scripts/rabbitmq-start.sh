#!/usr/bin/env bash
# Starts a RabbitMQ node on 127.0.0.1 (AMQP port $RABBITMQ_NODE_PORT, default 5672; guest/guest)
# and waits until it answers. Installs Debian's rabbitmq-server first when it is missing.
# Does nothing when the node already answers. Stop it with scripts/rabbitmq-stop.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=rabbitmq-env.sh
. "$here/rabbitmq-env.sh"
timeout_s="${RABBITMQ_START_TIMEOUT_S:-90}"

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  bash "$here/install-test-deps.sh"
fi
if rabbitmqctl -q status >/dev/null 2>&1; then
  echo "rabbitmq: already running ($RABBITMQ_NODENAME, 127.0.0.1:$RABBITMQ_NODE_PORT)" >&2
  exit 0
fi

rabbitmq-server -detached
deadline=$(( $(date +%s) + timeout_s ))
until rabbitmqctl -q status >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "rabbitmq: $RABBITMQ_NODENAME did not answer 'rabbitmqctl status' within ${timeout_s}s; its logs:" >&2
    tail -n 40 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
# The node answers rabbitmqctl before its AMQP listener is necessarily up; wait for the app too.
rabbitmqctl -q await_startup >/dev/null 2>&1 || true
echo "rabbitmq: running ($RABBITMQ_NODENAME, amqp://guest:guest@127.0.0.1:$RABBITMQ_NODE_PORT)" >&2
