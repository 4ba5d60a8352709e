"""A partition function served to the engine: it receives ``PartitionBatch``es of record values
and answers each with one key per value, same ``request_id``, in order (docs/protocol.md §9).

Usage::

    def key(value: bytes) -> str:
        return json.loads(value)["user"]

    Partitioner(target="by-user", key=key).run()

Values arrive encoded as the app's sink would encode them: strings as UTF-8, bytes as they are,
anything else as JSON. A key is a ``str`` (routed by its UTF-8 bytes, like an in-app ``keyBy``
returning that string) or ``bytes``. The function MUST be deterministic (R-PART-DETERMINISTIC).
A function that raises stops the partitioner (``run``/``join`` raise): it cannot skip a value,
and retrying the same value would fail the same way.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Union

from ._proto import pb
from .options import ConnectOptions
from .session import LoopConnector, Session, SessionLoop

Key = Union[str, bytes]


class Partitioner(LoopConnector):
    """A partitioner connector.

    Args:
        target: the partitioner name used in the app (``partitioner("NAME")``).
        key: the partition function, one value at a time.
        keys: alternatively, a function from a list of values to their keys (faster in bulk).
        connector_name: what this connector is (for the engine's logs).
        credits_window: values granted at the start of each session and kept topped up; at least
            the engine's ``max_batch_records`` (the default) so a re-sent request always fits.
        **connect: the ``ConnectOptions`` fields (engine, token, instance_id, backoff, ...).
    """

    def __init__(
        self,
        *,
        target: str,
        key: Optional[Callable[[bytes], Key]] = None,
        keys: Optional[Callable[[Sequence[bytes]], Sequence[Key]]] = None,
        connector_name: str = "python-partitioner",
        credits_window: Optional[int] = None,
        **connect: Any,
    ) -> None:
        if (key is None) == (keys is None):
            raise ValueError("give exactly one of key= and keys=")
        if credits_window is not None and credits_window < 1:
            raise ValueError(f"credits_window must be at least 1, got {credits_window}")
        self._loop = SessionLoop(ConnectOptions(target=target, connector_name=connector_name, **connect), self)
        self.method = "Partition"
        self._key = key
        self._keys = keys
        self._credits_window = credits_window
        #: Counters, for logs and tests.
        self.requests_answered = 0
        self.values_keyed = 0

    # -- the role -------------------------------------------------------------------------------

    def hello(self, hello: Any) -> Any:
        return pb.PartitionRequest(hello=hello)

    def welcomed(self, session: Session, welcome: Any) -> None:
        window = self._credits_window or welcome.limits.max_batch_records or 10_000
        session.send(pb.PartitionRequest(credits=pb.Credits(records=window)))

    def message(self, session: Session, response: Any, kind: str) -> None:
        if kind != "batch":
            return
        batch = response.batch
        values = list(batch.values)
        computed: Sequence[Key]
        if self._keys is not None:
            computed = self._keys(values)
            if len(computed) != len(values):
                raise ValueError(f"keys() returned {len(computed)} keys for {len(values)} values (R-PART-ANSWER)")
        else:
            key = self._key
            assert key is not None
            computed = [key(v) for v in values]
        answer = pb.PartitionKeys(request_id=batch.request_id)
        out: List[Any] = []
        for k in computed:
            if isinstance(k, str):
                out.append(pb.PartitionKey(text=k))
            elif isinstance(k, (bytes, bytearray, memoryview)):
                out.append(pb.PartitionKey(raw=bytes(k)))
            else:
                raise TypeError(f"a partition key must be str or bytes, got {type(k).__name__}")
        answer.keys.extend(out)
        session.send(pb.PartitionRequest(keys=answer))
        if values:
            session.send(pb.PartitionRequest(credits=pb.Credits(records=len(values))))
        self.requests_answered += 1
        self.values_keyed += len(values)

    def ended(self, session: Session) -> None:
        pass

    def stopped(self, failure: Optional[BaseException]) -> None:
        pass
