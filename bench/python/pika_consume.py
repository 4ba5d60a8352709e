#!/usr/bin/python3
"""The baseline for bench/rabbitmq.ts: pika's own consume-and-ack rate from a queue, no engine.

A plain consumer (BlockingConnection, manual acks, one basic_ack per message, or with
``--ack-every N`` one ``multiple=True`` ack per N messages, the same prefetch as the Keyway source) reads until ``--count`` messages are acked, and prints JSON with the time from
the first delivery to the last ack.
"""
import argparse
import json
import sys
import time

import pika


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=10_000)
    parser.add_argument("--ack-every", type=int, default=1)
    args = parser.parse_args()
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True)
    channel.basic_qos(prefetch_count=args.prefetch)
    state = {"n": 0, "first": None, "last": 0.0}

    def on_message(ch, method, properties, body):  # noqa: ANN001
        if state["first"] is None:
            state["first"] = time.monotonic()
        state["n"] += 1
        if state["n"] % args.ack_every == 0 or state["n"] >= args.count:
            ch.basic_ack(delivery_tag=method.delivery_tag, multiple=args.ack_every > 1)
        if state["n"] >= args.count:
            state["last"] = time.monotonic()
            ch.stop_consuming()

    channel.basic_consume(queue=args.queue, on_message_callback=on_message, auto_ack=False)
    channel.start_consuming()
    connection.close()
    seconds = state["last"] - state["first"]
    print(json.dumps({"messages": state["n"], "first_delivery_to_last_ack_s": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
