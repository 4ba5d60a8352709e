"""Reconnect delays: capped exponential backoff with full jitter (docs/protocol.md §13.1).

``delay(n) = uniform(0, min(max_s, initial_s * multiplier ** n))`` for the n-th consecutive failure
(n = 0 first). Full jitter spreads the reconnects of many connectors after an engine restart, and
the cap keeps a connector facing a dead engine from either hammering it or sleeping for minutes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Backoff:
    """Backoff parameters; the defaults are the ones the protocol recommends."""

    #: The ceiling of the first delay, in seconds.
    initial_s: float = 0.1
    #: Each consecutive failure multiplies the ceiling by this.
    multiplier: float = 2.0
    #: The ceiling never grows past this (the spec asks for 1 to 60 s).
    max_s: float = 5.0
    #: A session that stays up this long after its Welcome resets the failure count. Resetting on
    #: the Welcome alone would let an engine that welcomes and then drops every session (say with
    #: STREAM_BUSY) drive reconnects at the smallest delay.
    reset_after_s: float = 5.0
    #: A uniform draw in [0, 1); replaceable so tests can pin the jitter.
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s and self.reset_after_s > 0):
            raise ValueError(f"backoff needs 0 < initial_s <= max_s and reset_after_s > 0, got {self}")
        if self.multiplier < 1:
            raise ValueError(f"backoff.multiplier must be at least 1, got {self.multiplier}")

    def ceiling_s(self, failures: int) -> float:
        """The largest delay after ``failures`` consecutive failures (``failures >= 1``)."""
        exponent = max(0, failures - 1)
        # Compared in the exponent so a long outage never overflows the float.
        if exponent > 64:
            return self.max_s
        return min(self.max_s, self.initial_s * self.multiplier ** exponent)

    def delay_s(self, failures: int) -> float:
        """The delay before the next attempt after ``failures`` consecutive failures."""
        return self.random() * self.ceiling_s(failures)
