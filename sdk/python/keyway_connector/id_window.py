"""A bounded window of recently seen ids: the simplest way for a sink to write each output once
(docs/protocol.md §8.5). Record ids are stable across resends and replays, so an id seen again
is a duplicate. Bounded: the oldest ids are forgotten first, so it must cover every output the
engine may send again: the unacked batches (the credits you grant) plus what a restart from the
engine's last checkpoint sends again (the Welcome's ``limits.max_replay_records``). Given to
``Sink(dedup=...)``, the window is grown to that at each Welcome."""
from __future__ import annotations

import collections
from typing import Deque, Set


class IdWindow:
    """Remembers the last ``capacity`` ids added."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ids: Set[str] = set()
        self._order: Deque[str] = collections.deque()

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, record_id: str) -> bool:
        """Adds ``record_id``; True when it was new, False when it is a duplicate in the window."""
        if record_id in self._ids:
            return False
        self._ids.add(record_id)
        self._order.append(record_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return True

    def grow(self, capacity: int) -> None:
        """Raises the capacity to ``capacity``, keeping the remembered ids and their order; a
        capacity not above the current one changes nothing."""
        if capacity > self.capacity:
            self.capacity = capacity
