"""A sink connector: grants the engine credits, hands each ``SinkBatch`` to the connector's
``write`` function, then acks it (R-SINK-ACK) and grants its credits back (docs/protocol.md §8).

Usage::

    def write(batch):                       # batch.sequence, batch.records[i].id / .value / ...
        for r in batch.records:             # only records not written before
            print(r.value.decode())

    Sink(target="totals", connector_name="stdout-sink", write=write, dedup=IdWindow(200_000)).run()

Delivery is at least once: a batch not acked when its session ends is resent, with the same
record ids, and an engine restarting from its last checkpoint sends up to the Welcome's
``limits.max_replay_records`` acked outputs again. With ``dedup`` the SDK drops the records whose
id the window holds before calling ``write``, and remembers the ids once ``write`` returns, so each
output is written once; it grows the window at each Welcome to cover the credits it grants plus
``max_replay_records``. Without it, remember ids yourself (or use a primary key downstream).
``write`` runs on the SDK's receiving thread, one batch at a time in the order received; when it
returns the batch counts as durably written. When it raises, the session is abandoned (the batch
is not acked, so the engine resends it) and the SDK reconnects with backoff.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ._proto import pb
from .ack_tracker import AckTracker
from .id_window import IdWindow
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
        dedup: drops the records whose id it holds before ``write`` (a batch left empty is acked
            without calling ``write``) and remembers the ids written. Grown at each Welcome, when
            smaller, to the credits window plus ``limits.max_replay_records``
            (R-SINK-REPLAY-WINDOW). Without it delivery is at least once.
        **connect: the ``ConnectOptions`` fields (engine, token, instance_id, backoff, ...).
    """

    def __init__(
        self,
        *,
        target: str,
        write: WriteFn,
        connector_name: str = "python-sink",
        credits_window: Optional[int] = None,
        dedup: Optional[IdWindow] = None,
        **connect: Any,
    ) -> None:
        if credits_window is not None and credits_window < 1:
            raise ValueError(f"credits_window must be at least 1, got {credits_window}")
        self._loop = SessionLoop(ConnectOptions(target=target, connector_name=connector_name, **connect), self)
        self.log = self._loop.log
        self.method = "Sink"
        self._write = write
        self._credits_window = credits_window
        self._dedup = dedup
        self._tracker = AckTracker()
        #: Counters, for logs and tests.
        self.batches_written = 0
        self.records_written = 0
        self.write_failures = 0
        #: The last Welcome's ``limits.max_replay_records``: acked outputs a restart of the engine
        #: may send again (0 before the first Welcome, or when none are).
        self.max_replay_records = 0

    # -- the role -------------------------------------------------------------------------------

    def hello(self, hello: Any) -> Any:
        return pb.SinkRequest(hello=hello)

    def welcomed(self, session: Session, welcome: Any) -> None:
        self._tracker = AckTracker()
        window = self._credits_window or welcome.limits.max_batch_records or 10_000
        self.max_replay_records = welcome.limits.max_replay_records
        self._cover_replay(window + self.max_replay_records, window)
        session.send(pb.SinkRequest(credits=pb.Credits(records=window)))

    def _cover_replay(self, ids: int, window: int) -> None:
        """A dedup window must hold every id the engine may send again: the unacked credits and a
        restart's replay."""
        dedup = self._dedup
        if dedup is None or dedup.capacity >= ids:
            return
        self.log.info("dedup window grown to cover what the engine may send again: from %d to %d ids "
                      "(max_replay_records %d, credits window %d)",
                      dedup.capacity, ids, self.max_replay_records, window)
        dedup.grow(ids)

    def _unseen(self, batch: Any) -> Optional[Any]:
        """``batch`` without the records whose id the dedup window holds; None when that is all of
        them, so ``write`` never sees a batch emptied by dedup."""
        assert self._dedup is not None
        records = [r for r in batch.records if r.id not in self._dedup]
        if len(records) == len(batch.records):
            return batch
        return pb.SinkBatch(sequence=batch.sequence, records=records) if records else None

    def message(self, session: Session, response: Any, kind: str) -> None:
        if kind != "batch":
            return
        batch = response.batch
        self._tracker.received(batch.sequence)
        fresh = batch if self._dedup is None else self._unseen(batch)
        try:
            if fresh is not None:
                self._write(fresh)
        except Exception as err:  # noqa: BLE001 - a failing downstream: retry, never ack unwritten
            self.write_failures += 1
            self.log.error("sink write of batch %d failed: %s: %s", batch.sequence, type(err).__name__, err)
            session.cancel(f"write failed: {type(err).__name__}: {err}")
            return
        if fresh is not None:
            if self._dedup is not None:
                for r in fresh.records:
                    self._dedup.add(r.id)
            self.batches_written += 1
            self.records_written += len(fresh.records)
        ack = self._tracker.written(batch.sequence)
        if ack is not None:
            session.send(pb.SinkRequest(ack=pb.Ack(sequence=ack)))
        if batch.records:
            session.send(pb.SinkRequest(credits=pb.Credits(records=len(batch.records))))

    def ended(self, session: Session) -> None:
        self._tracker = AckTracker()

    def stopped(self, failure: Optional[BaseException]) -> None:
        pass
