"""A sink connector: grants the engine credits, hands each ``SinkBatch`` to the connector's
``write`` function, then acks it (R-SINK-ACK) and grants its credits back (docs/protocol.md §8).

Usage::

    seen = IdWindow(200_000)

    def write(batch):                       # batch.sequence, batch.records[i].id / .value / ...
        for r in batch.records:
            if seen.add(r.id):              # False: a resent or replayed output, already written
                print(r.value.decode())

    Sink(target="totals", connector_name="stdout-sink", write=write).run()

Delivery is at least once: a batch not acked when its session ends is resent, with the same
record ids, so a sink that remembers ids (``IdWindow``, or a primary key downstream) writes each
output once. ``write`` runs on the SDK's receiving thread, one batch at a time in the order
received; when it returns the batch counts as durably written. When it raises, the session is
abandoned (the batch is not acked, so the engine resends it) and the SDK reconnects with backoff.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ._proto import pb
from .ack_tracker import AckTracker
from .options import ConnectOptions
from .session import LoopConnector, Session, SessionLoop

#: A written batch: ``batch.sequence`` and ``batch.records`` (each with ``id``, ``value``,
#: ``key`` (check ``HasField("key")``), ``event_time_ms``, ``headers``).
WriteFn = Callable[[Any], None]


class Sink(LoopConnector):
    """A sink connector.

    Args:
        target: the app's sink name this connector serves.
        write: writes one batch durably (see the module docstring).
        connector_name: what this connector is (for the engine's logs).
        credits_window: records granted at the start of each session and kept topped up; at
            least the engine's ``max_batch_records`` (the default) so a resent batch always fits
            (R-SINK-CREDITS-WINDOW).
        **connect: the ``ConnectOptions`` fields (engine, token, instance_id, backoff, ...).
    """

    def __init__(
        self,
        *,
        target: str,
        write: WriteFn,
        connector_name: str = "python-sink",
        credits_window: Optional[int] = None,
        **connect: Any,
    ) -> None:
        if credits_window is not None and credits_window < 1:
            raise ValueError(f"credits_window must be at least 1, got {credits_window}")
        self._loop = SessionLoop(ConnectOptions(target=target, connector_name=connector_name, **connect), self)
        self.log = self._loop.log
        self.method = "Sink"
        self._write = write
        self._credits_window = credits_window
        self._tracker = AckTracker()
        #: Counters, for logs and tests.
        self.batches_written = 0
        self.records_written = 0
        self.write_failures = 0

    # -- the role -------------------------------------------------------------------------------

    def hello(self, hello: Any) -> Any:
        return pb.SinkRequest(hello=hello)

    def welcomed(self, session: Session, welcome: Any) -> None:
        self._tracker = AckTracker()
        window = self._credits_window or welcome.limits.max_batch_records or 10_000
        session.send(pb.SinkRequest(credits=pb.Credits(records=window)))

    def message(self, session: Session, response: Any, kind: str) -> None:
        if kind != "batch":
            return
        batch = response.batch
        self._tracker.received(batch.sequence)
        try:
            self._write(batch)
        except Exception as err:  # noqa: BLE001 - a failing downstream: retry, never ack unwritten
            self.write_failures += 1
            self.log.error("sink write of batch %d failed: %s: %s", batch.sequence, type(err).__name__, err)
            session.cancel(f"write failed: {type(err).__name__}: {err}")
            return
        self.batches_written += 1
        self.records_written += len(batch.records)
        ack = self._tracker.written(batch.sequence)
        if ack is not None:
            session.send(pb.SinkRequest(ack=pb.Ack(sequence=ack)))
        if batch.records:
            session.send(pb.SinkRequest(credits=pb.Credits(records=len(batch.records))))

    def ended(self, session: Session) -> None:
        self._tracker = AckTracker()

    def stopped(self, failure: Optional[BaseException]) -> None:
        pass
