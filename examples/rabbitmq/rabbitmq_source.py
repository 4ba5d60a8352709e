#!/usr/bin/python3
"""A Keyway source that consumes a RabbitMQ queue and acknowledges each message to RabbitMQ only
once the engine reports its record committed, so a crash anywhere loses nothing and counts
nothing twice (docs/protocol.md §7.9, "queue-style").

- pika consumes with manual acks and a prefetch limit: at most ``--prefetch`` messages are
  unacknowledged at a time, which bounds the SDK's replay buffer and stays far below the engine's
  idempotency window (R-SRC-IDEMPOTENCY).
- Each message becomes one record on the stream ``--stream`` (default: the queue's name), with
  idempotency id = the AMQP ``message_id``, or when a message has none, a SHA-256 digest of its
  body and headers. After this process restarts, RabbitMQ redelivers what was unacknowledged; the
  engine drops the copies it already applied by their ids.
- pika is not thread-safe: the SDK's commit callback runs on the SDK's thread, so it hands the ack
  to pika's thread with ``connection.add_callback_threadsafe``. Everything else pika does runs on
  the main thread.
- RabbitMQ unreachable (at start or later): retried with capped exponential backoff and full
  jitter, each attempt logged. The engine unreachable: the SDK retries the same way while pika
  keeps the prefetched messages; deliveries stop at the prefetch limit until commits resume.

Run ``rabbitmq_source.py --help`` for the options. Needs Debian's python3-pika, python3-grpcio and
python3-protobuf, and the SDK (sdk/python in the Keyway repository, found automatically from a
checkout).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any, List, Optional, Tuple

try:
    import keyway_connector  # noqa: F401
except ImportError:  # running from a checkout: use the SDK beside the example
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

from keyway_connector import Backoff, ConnectorError, Source, describe  # noqa: E402

log = logging.getLogger("rabbitmq-source")


def idempotency_id(properties: pika.BasicProperties, body: bytes) -> str:
    """The message's id: its AMQP ``message_id``, else a digest of its body and headers (so two
    byte-identical messages without ids count as one: give messages ids when that matters)."""
    if properties.message_id:
        return str(properties.message_id)
    digest = hashlib.sha256()
    digest.update(len(body).to_bytes(8, "big"))
    digest.update(body)
    for name, value in sorted((properties.headers or {}).items()):
        digest.update(f"\0{name}\0{value!r}".encode("utf-8", "surrogatepass"))
    return "sha256:" + digest.hexdigest()


class RabbitSource:
    """Consumes one queue into one Keyway stream. Call ``run()``; ``stop()`` from a signal."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stream = args.stream or args.queue
        self.backoff = Backoff()
        self.connection: Optional[pika.BlockingConnection] = None
        self.channel: Any = None
        self.consumer_tag = ""
        #: Bumped per AMQP channel: delivery tags are per channel, so an ack must never reach a
        #: newer channel with a tag from an older one (whose messages RabbitMQ redelivers anyway).
        self.generation = 0
        self.stopping = False
        self.messages = 0
        self.redelivered = 0
        self.acked = 0
        self.first_delivery_s: Optional[float] = None
        self.last_delivery_s = 0.0
        self.last_ack_s = 0.0
        self.source = Source(
            target=args.target,
            connector_name="rabbitmq-source",
            engine=args.engine,
            instance_id=args.instance_id,
            streams=[self.stream],
            records_per_batch=args.batch,
            linger_s=args.linger_ms / 1000,
            # Every prefetched message fits: send() never waits on pika's thread.
            replay_buffer_records=max(args.prefetch, 1) + args.batch,
            on_committed=self.on_committed,
        )

    # -- the SDK's thread -----------------------------------------------------------------------

    def on_committed(self, stream: str, position: int, contexts: List[Tuple[int, int]]) -> None:
        """Records up to ``position`` are committed: ack their messages, on pika's thread."""
        generation = self.generation
        tags = [tag for gen, tag in contexts if gen == generation]
        connection = self.connection
        if not tags or connection is None:
            return
        last = max(tags)
        try:
            connection.add_callback_threadsafe(lambda: self.ack(generation, last, len(tags)))
        except Exception as err:  # noqa: BLE001 - the connection is closing; RabbitMQ redelivers
            log.debug("could not schedule an ack: %s", err)

    # -- pika's thread --------------------------------------------------------------------------

    def ack(self, generation: int, delivery_tag: int, count: int) -> None:
        if generation != self.generation or self.channel is None or not self.channel.is_open:
            return
        self.channel.basic_ack(delivery_tag=delivery_tag, multiple=True)
        self.acked += count
        self.last_ack_s = time.monotonic()

    def on_message(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        now = time.monotonic()
        if self.first_delivery_s is None:
            self.first_delivery_s = now
        self.last_delivery_s = now
        if method.redelivered:
            self.redelivered += 1
        event_time_ms = int(properties.timestamp) * 1000 if properties.timestamp else 0
        # No record headers: the app needs none, and a protobuf map costs ~5 us a record here.
        self.source.send(self.stream, body, idempotency_id=idempotency_id(properties, body),
                         event_time_ms=event_time_ms, context=(self.generation, method.delivery_tag))
        self.messages += 1

    def watch(self) -> None:
        """Runs on pika's thread twice a second: stops when the SDK failed for good."""
        if self.source.failure is not None and not self.stopping:
            log.error("the Keyway connector stopped: %s", self.source.failure)
            self.stopping = True
        idle_s = self.args.exit_when_idle_s
        if (idle_s and self.first_delivery_s is not None and self.source.buffered_records == 0
                and time.monotonic() - max(self.last_delivery_s, self.last_ack_s) >= idle_s):
            log.info("idle for %.1f s with everything acknowledged: stopping", idle_s)
            self.stopping = True
        if self.stopping:
            self.channel.stop_consuming()
            return
        assert self.connection is not None
        self.connection.call_later(0.5, self.watch)

    def connect(self) -> None:
        """Connects to RabbitMQ, retrying with backoff until it answers (or we are stopped)."""
        params = pika.URLParameters(self.args.amqp_url)
        params.heartbeat = 30
        params.blocked_connection_timeout = 60
        attempt = 0
        while not self.stopping:
            try:
                self.connection = pika.BlockingConnection(params)
                break
            except pika.exceptions.AMQPConnectionError as err:
                attempt += 1
                delay_s = self.backoff.delay_s(attempt)
                log.warning("RabbitMQ at %s is unreachable (%s); retrying in %.2f s (attempt %d)",
                            params.host + ":" + str(params.port), type(err).__name__, delay_s, attempt)
                time.sleep(delay_s)
        if self.stopping:
            return
        self.generation += 1
        channel = self.connection.channel()
        channel.queue_declare(queue=self.args.queue, durable=True)
        channel.basic_qos(prefetch_count=self.args.prefetch)
        self.consumer_tag = channel.basic_consume(queue=self.args.queue, on_message_callback=self.on_message,
                                                  auto_ack=False)
        self.channel = channel
        log.info("consuming queue %s (prefetch %d) into stream %s", self.args.queue, self.args.prefetch, self.stream)

    def run(self) -> int:
        self.check_engine()
        self.source.start()
        # Take no message before the engine answers: it would only wait in the buffer, unacked.
        while not self.stopping:
            try:
                self.source.wait_opened(self.stream, timeout=0.5)
                break
            except TimeoutError:
                continue
            except ConnectorError:
                break  # reported by shutdown()
        while not self.stopping and self.source.failure is None:
            self.connect()
            if self.stopping:
                break
            assert self.connection is not None
            try:
                self.connection.call_later(0.5, self.watch)
                self.channel.start_consuming()
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as err:
                # Unacked messages go back to the queue; their records still in the SDK's buffer
                # are resent under their ids, and the redelivered copies are dropped by the engine.
                log.warning("lost RabbitMQ (%s: %s); reconnecting", type(err).__name__, err)
                self.connection = None
                self.channel = None
                continue
        return self.shutdown()

    def stop(self) -> None:
        """Asks the consumer to stop (safe from a signal handler: only sets a flag)."""
        self.stopping = True

    def shutdown(self) -> int:
        """Stops taking messages, waits (bounded) for what was sent to commit, acks it, closes."""
        failure = self.source.failure
        connection = self.connection
        if connection is not None and connection.is_open and failure is None:
            try:
                # No new deliveries; what was received is still sent and, once committed, acked.
                if self.consumer_tag in self.channel.consumer_tags:
                    self.channel.basic_cancel(self.consumer_tag)
                deadline = time.monotonic() + self.args.drain_s
                while self.source.buffered_records > 0 and time.monotonic() < deadline:
                    connection.process_data_events(time_limit=0.1)  # runs the acks
                connection.process_data_events(time_limit=0)
            except pika.exceptions.AMQPError as err:
                log.warning("RabbitMQ went away while draining: %s", err)
        try:
            self.source.close(timeout=1.0)
        except ConnectorError as err:
            failure = err
        if connection is not None and connection.is_open:
            try:
                connection.close()  # what is still unacked goes back to the queue
            except pika.exceptions.AMQPError:
                pass
        log.info("stopped: %d messages received (%d redelivered), %d acknowledged", self.messages,
                 self.redelivered, self.acked)
        if self.args.stats_json:
            busy_s = (self.last_ack_s - self.first_delivery_s) if self.first_delivery_s is not None else 0.0
            with open(self.args.stats_json, "w", encoding="utf-8") as f:
                json.dump({"messages": self.messages, "acked": self.acked, "redelivered": self.redelivered,
                           "first_delivery_to_last_ack_s": busy_s,
                           "records_sent": self.source.records_sent}, f)
        if failure is not None:
            log.error("exiting with an error: %s", failure)
            return 1
        return 0

    def check_engine(self) -> None:
        """Warns when the prefetch would let duplicates slip past the engine's idempotency window."""
        try:
            info = describe(self.args.engine, timeout_s=2)
        except Exception:  # noqa: BLE001 - the engine may start later; the SDK keeps retrying
            return
        window = info.limits.idempotency_window
        if window and self.args.prefetch * 10 > window:
            log.warning("prefetch %d is not far below the engine's idempotency window %d: after a restart, "
                        "redelivered duplicates may not be recognised", self.args.prefetch, window)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--queue", default="payments", help="the queue to consume (declared durable)")
    parser.add_argument("--engine", default=os.environ.get("KEYWAY_ENGINE", "127.0.0.1:7700"), help="HOST:PORT")
    parser.add_argument("--target", default="payments", help="the app's source name")
    parser.add_argument("--stream", default=None, help="the stream name (default: the queue name); "
                        "give each instance consuming one queue its own")
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--prefetch", type=int, default=10_000,
                        help="most unacknowledged messages. Acks wait for commits, so throughput is at most "
                             "prefetch / commit delay (with the engine's --data-dir, its checkpoint interval); "
                             "keep it far below the engine's idempotency window (default 100000)")
    parser.add_argument("--batch", type=int, default=100, help="records per message to the engine")
    parser.add_argument("--linger-ms", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=5.0, help="on SIGTERM, how long to wait for commits")
    parser.add_argument("--exit-when-idle-s", type=float, default=0,
                        help="stop once no message arrived for this long and all are acknowledged (batch runs)")
    parser.add_argument("--stats-json", default=None, help="write counts and timings here at exit")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)

    consumer = RabbitSource(args)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    return consumer.run()


if __name__ == "__main__":
    sys.exit(main())
