# Sourced by scripts/rabbitmq-start.sh and scripts/rabbitmq-stop.sh: one node, on loopback only.
# RABBITMQ_NODE_PORT (AMQP, default 5672) may be set by the caller.
export RABBITMQ_NODENAME="${RABBITMQ_NODENAME:-rabbit@localhost}"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="${RABBITMQ_NODE_PORT:-5672}"
# The Erlang port mapper and the node's distribution port listen on loopback too.
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
