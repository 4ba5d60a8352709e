"""The engine addresses a connector knows (docs/protocol.md §13.4): the configured ones, then the
``cluster_addresses`` of the latest Welcome. Every worker of a cluster serves the protocol, so when
the worker a connector is attached to becomes unreachable, the connector moves on to the next
address of this list, round-robin, trying every known worker before any one of them twice
(R-FAILOVER). Internal."""
from __future__ import annotations

import re
from typing import Iterable, Sequence, Tuple

_ADDRESS = re.compile(r"^.+:\d+$")


def parse_engines(engine: str) -> Tuple[str, ...]:
    """The configured engine: one ``HOST:PORT``, or several separated by commas (workers of one
    cluster)."""
    addresses = tuple(a.strip() for a in engine.split(",") if a.strip())
    if not addresses or not all(_ADDRESS.match(a) for a in addresses):
        raise ValueError(f'engine must be HOST:PORT, or several separated by commas, got "{engine}"')
    return addresses


def learn_addresses(before: Tuple[str, ...], cluster_addresses: Iterable[str]) -> Tuple[str, ...]:
    """What a Welcome's ``cluster_addresses`` leave known of the cluster. An empty list (from an
    engine that does not fill it) teaches nothing, so the addresses learned before are kept; an
    entry that is not ``HOST:PORT`` could not be dialled and is dropped."""
    dialable = tuple(a for a in cluster_addresses if _ADDRESS.match(a))
    return dialable or before


def known_addresses(configured: Sequence[str], learned: Sequence[str]) -> Tuple[str, ...]:
    """The configured addresses, then the learned ones that are not among them."""
    return tuple(dict.fromkeys([*configured, *learned]))


def next_address(known: Sequence[str], current: str) -> str:
    """The address after ``current``, round-robin; the first one when ``current`` is not known (a
    redirect's)."""
    index = known.index(current) if current in known else -1
    return known[(index + 1) % len(known)]
