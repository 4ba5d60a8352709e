#!/usr/bin/env bash
# Stops the RabbitMQ node scripts/rabbitmq-start.sh started, and the Erlang port mapper it leaves.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=rabbitmq-env.sh
. "$here/rabbitmq-env.sh"
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl -q stop >/dev/null 2>&1 || true
fi
if command -v epmd >/dev/null 2>&1; then
  epmd -kill >/dev/null 2>&1 || true
fi
exit 0
