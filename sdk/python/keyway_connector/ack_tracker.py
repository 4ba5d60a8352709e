"""Which ``Ack`` a sink may send, per R-SINK-ACK (docs/protocol.md §8.3): ``Ack{s}`` settles every
batch of the session with a sequence up to ``s``, so it may be sent only once every batch received
on the session with a sequence up to ``s`` is written. Resent batches may arrive after newer ones
(6, 7, then 3), hence a tracker rather than "ack what you just wrote"."""
from __future__ import annotations

from typing import Dict, Optional


class AckTracker:
    """Tracks one session's received and written batches. Not thread-safe: one per session."""

    def __init__(self) -> None:
        #: sequence -> written, for batches received and not yet covered by an ack we sent.
        self._open: Dict[int, bool] = {}

    def received(self, sequence: int) -> None:
        """A batch arrived."""
        assert sequence not in self._open, f"batch {sequence} received twice on one session"
        self._open[sequence] = False

    def written(self, sequence: int) -> Optional[int]:
        """Batch ``sequence`` is written (or deliberately discarded as a duplicate). Returns the
        sequence to ack now, or None when an older received batch is still unwritten."""
        assert sequence in self._open, f"batch {sequence} was not received on this session"
        self._open[sequence] = True
        ack: Optional[int] = None
        for seq in sorted(self._open):
            if not self._open[seq]:
                break
            ack = seq
        if ack is None:
            return None
        for seq in [s for s in self._open if s <= ack]:
            del self._open[seq]
        return ack

    @property
    def unacked(self) -> int:
        """Batches received and not yet covered by an ack."""
        return len(self._open)
