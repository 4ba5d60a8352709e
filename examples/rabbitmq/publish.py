#!/usr/bin/python3
"""Publishes test payments to a RabbitMQ queue and writes the per-user totals they add up to
(added to those already in ``--expect``, so several runs accumulate).

Message i is ``{"user": "u<i % users>", "amount": <(i * 7) % 10 + 1>, "seq": i}`` with AMQP
message_id ``<run>-<i>`` (except every ``--without-id-every``-th, which has none, so the source
falls back to a digest of the body). ``--bad N`` adds N bodies the app cannot decode. The expected
totals go to ``--expect`` as JSON ``{"u0": {"count": .., "sum": ..}, ...}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import pika

BAD_BODIES = [b"\xff\xfe not utf-8", b"{not json", b'{"user": 17, "amount": 1}', b'{"user": "u1"}']


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--queue", default="payments")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0, help="the first message's number")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--bad", type=int, default=0, help="undecodable messages to add")
    parser.add_argument("--without-id-every", type=int, default=0, help="every Nth message has no message_id")
    parser.add_argument("--run", default=None, help="message id prefix (default: random)")
    parser.add_argument("--expect", default=None, help="write the expected totals here")
    args = parser.parse_args()

    run = args.run or uuid.uuid4().hex[:8]
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True)
    totals: dict = {}
    if args.expect and os.path.exists(args.expect):
        with open(args.expect, encoding="utf-8") as f:
            totals = json.load(f)  # several runs add up
    persistent = 2  # AMQP delivery mode 2: the broker writes the message to disk
    started = time.monotonic()
    for i in range(args.start, args.start + args.count):
        user = f"u{i % args.users}"
        amount = (i * 7) % 10 + 1
        body = json.dumps({"user": user, "amount": amount, "seq": i}).encode()
        no_id = args.without_id_every > 0 and i % args.without_id_every == 0
        props = pika.BasicProperties(delivery_mode=persistent, content_type="application/json",
                                     message_id=None if no_id else f"{run}-{i}")
        channel.basic_publish(exchange="", routing_key=args.queue, body=body, properties=props)
        t = totals.setdefault(user, {"count": 0, "sum": 0})
        t["count"] += 1
        t["sum"] += amount
    for k in range(args.bad):
        body = BAD_BODIES[k % len(BAD_BODIES)]
        props = pika.BasicProperties(delivery_mode=persistent, message_id=f"{run}-bad-{k}")
        channel.basic_publish(exchange="", routing_key=args.queue, body=body, properties=props)
    # Closing the channel is synchronous: the broker answers once it has handled every publish on it.
    channel.close()
    connection.close()
    elapsed_s = time.monotonic() - started
    print(f"published {args.count + args.bad} messages to {args.queue} in {elapsed_s:.2f} s", file=sys.stderr)
    if args.expect:
        with open(args.expect, "w", encoding="utf-8") as f:
            json.dump(totals, f, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
