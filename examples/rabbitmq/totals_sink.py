#!/usr/bin/python3
"""A Keyway sink for the RabbitMQ example's output: per-user totals go to a JSON file, dead letters
(messages the app could not decode) go to a RabbitMQ dead-letter queue with the reason.

- Totals: ``--totals FILE`` holds ``{"u17": {"count": 5, "sum": 12}, ...}``, the latest total per
  user, rewritten atomically (write beside, fsync, rename) after each batch, before the batch is
  acked: an acked output is on disk.
- Dead letters: each ``{"deadLetter": {"reason", "body"}}`` output is published to
  ``--dead-letter-queue`` (durable) with the original body, the reason in the header
  ``x-keyway-reason``, and the output's record id as ``message_id``, with publisher confirms: the
  batch is acked to the engine only after RabbitMQ confirmed the dead letters.
- Each output is written once: record ids are stable across resends and engine replays, and the
  SDK drops the copies with a window of recent ids (``Sink(dedup=IdWindow(...))``), grown to cover
  what the engine says a restart may send again.
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

try:
    import keyway_connector  # noqa: F401
except ImportError:  # running from a checkout: use the SDK beside the example
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

from keyway_connector import Backoff, ConnectorError, IdWindow, Sink  # noqa: E402

log = logging.getLogger("totals-sink")


class TotalsSink:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.totals: Dict[str, Dict[str, int]] = {}
        if os.path.exists(args.totals):
            with open(args.totals, encoding="utf-8") as f:
                self.totals = json.load(f)
        self.connection: Optional[pika.BlockingConnection] = None
        self.channel: Any = None
        self.dead_letters = 0
        self.sink = Sink(target=args.target, connector_name="totals-sink", engine=args.engine, write=self.write,
                         dedup=IdWindow(args.id_window))

    def amqp(self) -> Any:
        """The confirm-mode channel for dead letters, (re)connected on demand with backoff."""
        if self.channel is not None and self.channel.is_open:
            return self.channel
        backoff = Backoff()
        attempt = 0
        while True:
            try:
                self.connection = pika.BlockingConnection(pika.URLParameters(self.args.amqp_url))
                channel = self.connection.channel()
                channel.queue_declare(queue=self.args.dead_letter_queue, durable=True)
                channel.confirm_delivery()
                self.channel = channel
                return channel
            except pika.exceptions.AMQPConnectionError as err:
                attempt += 1
                delay_s = backoff.delay_s(attempt)
                log.warning("RabbitMQ unreachable for dead letters (%s); retrying in %.2f s (attempt %d)",
                            type(err).__name__, delay_s, attempt)
                time.sleep(delay_s)

    def write(self, batch: Any) -> None:
        """Writes one batch durably; returns only when it is (then the SDK acks it). The SDK's dedup
        window already dropped the records written before."""
        changed = False
        dead: List[Any] = []
        for record in batch.records:
            out = json.loads(record.value)
            if "deadLetter" in out:
                dead.append((record.id, out["deadLetter"]))
            else:
                current = self.totals.get(out["user"])
                # Outputs of one user arrive in order; keeping the highest count also survives a
                # replay that regenerates older totals after the newest.
                if current is None or out["count"] >= current["count"]:
                    self.totals[out["user"]] = {"count": out["count"], "sum": out["sum"]}
                    changed = True
        for record_id, letter in dead:
            props = pika.BasicProperties(delivery_mode=2, message_id=record_id,  # 2: persistent
                                         headers={"x-keyway-reason": letter["reason"],
                                                  "x-keyway-record-id": record_id})
            # Raises when RabbitMQ does not confirm: the batch is then not acked, and resent.
            self.amqp().basic_publish(exchange="", routing_key=self.args.dead_letter_queue,
                                      body=base64.b64decode(letter["body"]), properties=props, mandatory=True)
            self.dead_letters += 1
            log.warning("dead-lettered record %s: %s", record_id, letter["reason"])
        if changed:
            tmp = self.args.totals + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.totals, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.args.totals)

    def run(self) -> int:
        try:
            self.sink.run()
        except ConnectorError as err:
            log.error("exiting: %s", err)
            return 1
        finally:
            if self.connection is not None and self.connection.is_open:
                self.connection.close()
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--engine", default=os.environ.get("KEYWAY_ENGINE", "127.0.0.1:7700"))
    parser.add_argument("--target", default="totals", help="the app's sink name")
    parser.add_argument("--totals", default="totals.json", help="where the per-user totals go")
    parser.add_argument("--dead-letter-queue", default="payments.dead-letter")
    parser.add_argument("--id-window", type=int, default=200_000, help="output ids remembered at least (grown to the credits plus the engine's max_replay_records)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    sink = TotalsSink(args)
    signal.signal(signal.SIGTERM, lambda *_: sink.sink.stop())
    signal.signal(signal.SIGINT, lambda *_: sink.sink.stop())
    return sink.run()


if __name__ == "__main__":
    sys.exit(main())
