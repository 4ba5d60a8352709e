#!/usr/bin/python3
"""Small queue chores for the example and its tests, over AMQP (no rabbitmqctl needed).

    queues.py reset QUEUE...        delete the queues (and their messages)
    queues.py depth QUEUE           print "<ready> <consumers>"
    queues.py drain QUEUE           print each message as a JSON line (body as text, headers),
                                    acking it, until the queue is empty
"""
from __future__ import annotations

import json
import os
import sys

import pika


def main(argv: list) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, queues = argv[0], argv[1:]
    connection = pika.BlockingConnection(pika.URLParameters(
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")))
    channel = connection.channel()
    if command == "reset":
        for q in queues:
            channel.queue_delete(queue=q)
    elif command == "depth":
        ok = channel.queue_declare(queue=queues[0], durable=True, passive=False).method
        print(ok.message_count, ok.consumer_count)
    elif command == "drain":
        channel.queue_declare(queue=queues[0], durable=True)
        while True:
            method, props, body = channel.basic_get(queue=queues[0], auto_ack=False)
            if method is None:
                break
            print(json.dumps({"body": body.decode("utf-8", "backslashreplace"), "message_id": props.message_id,
                              "headers": {k: (v.decode() if isinstance(v, bytes) else v)
                                          for k, v in (props.headers or {}).items()}}))
            channel.basic_ack(method.delivery_tag)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
