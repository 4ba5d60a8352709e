"""A source connector: sends records to the engine under its credits, keeps every record until the
engine reports it committed, and resends uncommitted records with their original positions after a
reconnect (docs/protocol.md §7).

Usage::

    source = Source(target="payments", connector_name="rabbitmq-source",
                    on_committed=lambda stream, position, contexts: ack_upstream(contexts))
    source.start()
    source.send("orders", b'{"user": "u1"}', idempotency_id="m-1", context=delivery_tag)
    ...
    source.close()

Positions: pass ``position=`` on every ``send`` of a stream when the upstream can be re-read by
position (a file offset, a Kafka offset + 1; call ``wait_opened`` first and seek to
``resume_after``), or never, and the SDK numbers the stream's records itself from
``StreamOpened.resume_after + 1`` (a queue; give ``idempotency_id`` so redeliveries are dropped).

Threads: ``send``, ``end_stream``, ``flush`` and ``close`` may be called from any thread. The
callbacks run on the SDK's receiving thread, in order; they must be quick and must not call
``send`` with a full replay buffer (it would wait for a commit that only that thread delivers).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from ._proto import pb
from .errors import ConnectorStopped
from .options import ConnectOptions
from .session import Session, SessionLoop

#: Records per RecordBatch unless told otherwise: about 100 balances per-message cost against
#: latency and memory (docs/protocol.md §16.4).
RECORDS_PER_BATCH_DEFAULT = 100
#: How long a partial batch waits for more records before it is sent anyway.
LINGER_S_DEFAULT = 0.005
#: Records kept until committed. Must cover what the engine may hold uncommitted (with
#: --data-dir, about one checkpoint interval of records) or sends wait; and for queue sources it
#: must stay far below the engine's idempotency window (R-SRC-IDEMPOTENCY).
REPLAY_BUFFER_RECORDS_DEFAULT = 10_000
# Room left in a message for the request's envelope.
_MESSAGE_OVERHEAD_BYTES = 64

Value = Union[bytes, str]
#: on_committed(stream, position, contexts): the records of ``stream`` up to ``position`` are
#: committed; ``contexts`` holds the ``context`` given to ``send`` for each record newly covered,
#: in order (so a RabbitMQ source acks the last delivery tag with multiple=True).
CommittedCallback = Callable[[str, int, List[Any]], None]


@dataclass(frozen=True)
class StreamOpenedInfo:
    """Where the engine stands on a stream, from its ``StreamOpened``."""

    stream: str
    #: The last position the engine has applied: send records after it.
    resume_after: int
    #: The last durable position (never above ``resume_after``).
    committed: int


# A record not yet committed is a list [position, encoded, context, enqueued_at], sent once per
# session until committed: a list costs a sixth of an object with __slots__ to make, once per record.
# position is 0 until the SDK numbers it (at its first sending). encoded is the Record's fields other
# than position, serialised: protobuf fields may come in any order, so a batch is the stream name
# plus each record's position and these bytes, concatenated, about 4x cheaper than Record messages.
_POSITION, _ENCODED, _CONTEXT, _ENQUEUED_AT = 0, 1, 2, 3

_VARINT_1 = [bytes((i,)) for i in range(0x80)]
_INT64_MAX = (1 << 63) - 1


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _VARINT_1[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, ((value >> 14) & 0x7F) | 0x80, value >> 21))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_fields(value: bytes, key: Any, event_time_ms: Any, headers: Optional[Mapping[str, str]],
                   idempotency_id: Any) -> bytes:
    """A Record's fields other than position, serialised as protobuf does (fields in number order,
    defaults left out). Written by hand for the usual fields: a Record message per record cost more
    than the rest of ``send``. Headers, and values protobuf must check (types, ranges), take the
    generated code."""
    if (headers or type(value) is not bytes or type(idempotency_id) is not str or type(event_time_ms) is not int
            or not 0 <= event_time_ms <= _INT64_MAX or (key is not None and type(key) is not bytes)):
        record = pb.Record(value=value, event_time_ms=event_time_ms, idempotency_id=idempotency_id)
        if key is not None:
            record.key = key
        if headers:
            record.headers.update(headers)
        return record.SerializeToString()
    size = len(value)
    if key is None and not event_time_ms and not idempotency_id:
        return b"\x1a" + _VARINT_1[size] + value if size < 0x80 else b"".join((b"\x1a", _varint(size), value))
    parts: List[bytes] = []
    if key is not None:
        parts += (b"\x12", _varint(len(key)), key)
    if size:
        parts += (b"\x1a", _varint(size), value)
    if event_time_ms:
        parts += (b"\x20", _varint(event_time_ms))
    if idempotency_id:
        encoded_id = idempotency_id.encode("utf-8")
        parts += (b"\x32", _varint(len(encoded_id)), encoded_id)
    return b"".join(parts)


def _serialize(request: Any) -> bytes:
    """The request serialiser: pre-encoded batches pass through, messages are serialised."""
    return request if type(request) is bytes else request.SerializeToString()


class _Stream:
    """One stream's state; guarded by the Source's lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: True: the connector gives positions; False: the SDK numbers; None: nothing sent yet.
        self.explicit: Optional[bool] = None
        #: Records not yet committed, in stream order: ``sent`` (on this session, or applied by the
        #: engine already) and then ``unsent``. Two deques, because indexing into the middle of one
        #: walks it.
        self.sent: Deque[list] = collections.deque()
        self.unsent: Deque[list] = collections.deque()
        #: The highest position given or assigned so far (in this process).
        self.last_position = 0
        self.committed = 0
        # Per session:
        self.open_sent = False
        self.opened = False
        self.resume_after = 0
        self.end_sent = False
        # Across sessions:
        self.ending = False
        self.ended_position: Optional[int] = None
        self.ended = threading.Event()
        self.first_opened = threading.Event()
        self.opened_info: Optional[StreamOpenedInfo] = None

    def reset_session(self) -> None:
        self.open_sent = False
        self.opened = False
        self.end_sent = False
        if self.sent:
            self.unsent.extendleft(reversed(self.sent))
            self.sent.clear()


class Source:
    """A source connector. See the module docstring for how positions, commits and threads work.

    Args:
        target: the app's source name this connector serves.
        connector_name: what this connector is (for the engine's logs).
        streams: streams to open at once (others are opened by their first ``send``).
        records_per_batch: records per ``RecordBatch`` (capped by the engine's ``max_batch_records``).
        linger_s: how long a partial batch waits for more records.
        replay_buffer_records: most records held uncommitted; ``send`` waits when it is full.
        on_committed: called when records are committed (see ``CommittedCallback``).
        on_opened: called with each ``StreamOpened`` (every session), before records are resent.
        **connect: the ``ConnectOptions`` fields (engine, token, instance_id, backoff, ...).
    """

    def __init__(
        self,
        *,
        target: str,
        connector_name: str = "python-source",
        streams: Iterable[str] = (),
        records_per_batch: int = RECORDS_PER_BATCH_DEFAULT,
        linger_s: float = LINGER_S_DEFAULT,
        replay_buffer_records: int = REPLAY_BUFFER_RECORDS_DEFAULT,
        on_committed: Optional[CommittedCallback] = None,
        on_opened: Optional[Callable[[StreamOpenedInfo], None]] = None,
        **connect: Any,
    ) -> None:
        if records_per_batch < 1:
            raise ValueError(f"records_per_batch must be at least 1, got {records_per_batch}")
        if linger_s < 0:
            raise ValueError(f"linger_s must not be negative, got {linger_s}")
        if replay_buffer_records < 1:
            raise ValueError(f"replay_buffer_records must be at least 1, got {replay_buffer_records}")
        self._loop = SessionLoop(ConnectOptions(target=target, connector_name=connector_name, **connect), self)
        self.log = self._loop.log
        self.method = "Source"
        self._records_per_batch = records_per_batch
        self._linger_s = linger_s
        self._capacity = replay_buffer_records
        self._on_committed = on_committed
        self._on_opened = on_opened
        #: Taken directly in ``send``: a Condition's own __enter__ and __exit__ are Python calls.
        self._lock = lock = threading.RLock()
        self._cond = threading.Condition(lock)
        #: The request stream waits on its own condition, so a commit does not wake it, a grant
        #: of credits does not wake senders waiting for room, and neither costs a GIL hand-off.
        self._work = threading.Condition(lock)
        self._streams: Dict[str, _Stream] = {}
        self._order: List[str] = []  # round-robin order of streams
        self._next_stream = 0
        self._buffered = 0
        self._credits = 0
        self._session: Optional[Session] = None
        self._closing = False
        #: Records enqueued at or before this time are sent without waiting for their linger.
        self._flushed_at = float("-inf")
        self._stopped = False
        #: Request streams waiting for work; a send wakes them only then (notify costs ~1 us).
        self._senders_waiting = 0
        #: Records per batch on the current session (the engine may lower records_per_batch).
        self._batch_max = records_per_batch
        #: Counters, for logs and benchmarks.
        self.records_sent = 0
        self.records_committed = 0
        for name in streams:
            self.open_stream(name)

    # -- the connector's side -------------------------------------------------------------------

    def start(self) -> "Source":
        """Starts connecting (on a background thread) and returns self."""
        self._loop.start()
        return self

    def __enter__(self) -> "Source":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_stream(self, stream: str) -> None:
        """Opens ``stream`` on every session from now on (the first ``send`` does it too)."""
        if not stream:
            raise ValueError("a stream name must not be empty (R-SRC-OPEN)")
        with self._cond:
            self._stream(stream)

    def wait_opened(self, stream: str, timeout: Optional[float] = None) -> StreamOpenedInfo:
        """Opens ``stream`` if needed and waits for the engine's first answer in this process.

        A source that replays by position seeks its upstream to ``resume_after`` before sending.
        Raises ``TimeoutError``, or the error that stopped the connector.
        """
        with self._cond:
            s = self._stream(stream)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not s.first_opened.wait(0.05):
            self._raise_if_stopped()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f'stream "{stream}" was not opened within {timeout} s')
        assert s.opened_info is not None
        return s.opened_info

    def send(
        self,
        stream: str,
        value: Value,
        *,
        position: Optional[int] = None,
        key: Optional[Value] = None,
        event_time_ms: int = 0,
        headers: Optional[Mapping[str, str]] = None,
        idempotency_id: str = "",
        context: Any = None,
        timeout: Optional[float] = None,
    ) -> None:
        """Queues one record for ``stream``; it is sent as credits allow and kept until committed.

        Waits while the replay buffer is full (``TimeoutError`` after ``timeout`` seconds).
        ``context`` is handed back to ``on_committed`` once the record is committed.
        Raises the error that stopped the connector, or ``ConnectorStopped`` after ``close()``.
        """
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(key, str):
            key = key.encode("utf-8")
        if position is not None and position < 1:
            raise ValueError(f"a position must be at least 1, got {position} (R-SRC-POSITION)")
        if key is None and not event_time_ms and not headers and not idempotency_id and type(value) is bytes \
                and 0 < len(value) < 0x80:
            encoded = b"\x1a" + _VARINT_1[len(value)] + value  # the usual record, without a call
        else:
            encoded = _encode_fields(value, key, event_time_ms, headers, idempotency_id)
        with self._lock:
            s = self._streams.get(stream) or self._stream(stream)
            if s.ending:
                raise ValueError(f'stream "{stream}" has ended; no more records may be sent on it (R-SRC-END)')
            explicit = position is not None
            if s.explicit is None:
                s.explicit = explicit
            elif s.explicit != explicit:
                raise ValueError(f'stream "{stream}": give a position with every record or with none')
            if explicit:
                if position <= s.last_position:  # type: ignore[operator]
                    raise ValueError(f'stream "{stream}": position {position} is not above the previous '
                                     f"{s.last_position} (R-SRC-POSITION)")
                s.last_position = position  # type: ignore[assignment]
            if self._buffered >= self._capacity:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._buffered >= self._capacity:
                    self._raise_if_stopped_locked()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"the replay buffer stayed full ({self._capacity} records) for {timeout} s")
                    self._cond.wait(remaining)
            if self._stopped or self._closing or self._loop.failure is not None:
                self._raise_if_stopped_locked()
            s.unsent.append([position or 0, encoded, context, time.monotonic()])
            self._buffered += 1
            # Wake the request stream only when it has something new to do: start a linger on a
            # first record, or send a batch that just became full.
            if self._senders_waiting:
                unsent = len(s.unsent)
                if unsent == 1 or unsent == min(self._batch_max, self._credits):
                    self._work.notify_all()

    def flush(self) -> None:
        """Sends partial batches now instead of after their linger time."""
        with self._cond:
            self._flushed_at = time.monotonic()
            self._notify_all()

    def end_stream(self, stream: str) -> None:
        """No more records on ``stream``: the SDK sends ``EndStream`` once all of them are sent."""
        with self._cond:
            self._stream(stream).ending = True
            self._notify_all()

    def wait_ended(self, stream: str, timeout: Optional[float] = None) -> int:
        """Waits for ``StreamEnded`` (every record of the ended stream committed); its position."""
        with self._cond:
            s = self._stream(stream)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not s.ended.wait(0.05):
            self._raise_if_stopped()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f'stream "{stream}" did not end within {timeout} s')
        assert s.ended_position is not None
        return s.ended_position

    def wait_committed(self, timeout: Optional[float] = None) -> bool:
        """Waits until every record sent so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushed_at = time.monotonic()
            self._notify_all()
            while self._buffered > 0:
                self._raise_if_stopped_locked()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.1)
        return True

    @property
    def buffered_records(self) -> int:
        """Records sent or waiting to be sent, not yet committed."""
        return self._buffered

    @property
    def failure(self) -> Optional[BaseException]:
        """What stopped the connector, if it failed."""
        return self._loop.failure

    def close(self, timeout: float = 5.0) -> None:
        """Stops gracefully: sends what is queued, waits up to ``timeout`` seconds for it to be
        committed, then half-closes the session. Uncommitted records are left to the upstream to
        replay (their ``on_committed`` never comes). Raises what made the connector fail."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._flushed_at = time.monotonic()
            self._notify_all()
            while self._buffered > 0 and not self._stopped and self._loop.session is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        self._loop.stop(graceful=True)
        with self._cond:
            self._notify_all()  # the request stream ends once it sees the session closing
        if not self._loop.join(max(0.5, deadline - time.monotonic())):
            self._loop.stop(graceful=False)
            self._loop.join(5.0)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the connector to stop; raises what made it fail."""
        return self._loop.join(timeout)

    # -- the role, called by the session loop ---------------------------------------------------

    #: Serialises what ``requests`` yields (messages, or batches encoded already).
    serialize = staticmethod(_serialize)

    def hello(self, hello: Any) -> Any:
        return pb.SourceRequest(hello=hello)

    def welcomed(self, session: Session, welcome: Any) -> None:
        with self._cond:
            self._session = session
            self._credits = welcome.initial_credits
            for s in self._streams.values():
                s.reset_session()
            self._notify_all()

    def message(self, session: Session, response: Any, kind: str) -> None:
        if kind == "credits":
            with self._cond:
                self._credits += response.credits.records
                self._work.notify_all()
        elif kind == "committed":
            self._commit(response.committed.stream, response.committed.position)
        elif kind == "opened":
            self._opened(response.opened)
        elif kind == "ended":
            ended = response.ended
            self._commit(ended.stream, ended.position)
            with self._cond:
                s = self._streams.get(ended.stream)
                if s is not None:
                    s.ended_position = ended.position
                    s.ended.set()
                self._notify_all()

    def ended(self, session: Session) -> None:
        with self._cond:
            if self._session is session:
                self._session = None
            self._credits = 0
            for s in self._streams.values():
                s.reset_session()
            self._notify_all()

    def stopped(self, failure: Optional[BaseException]) -> None:
        with self._cond:
            self._stopped = True
            self._notify_all()

    # -- internals ------------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        s = self._streams.get(name)
        if s is None:
            if not name:
                raise ValueError("a stream name must not be empty (R-SRC-OPEN)")
            s = _Stream(name)
            self._streams[name] = s
            self._order.append(name)
            self._notify_all()
        return s

    def _notify_all(self) -> None:
        self._cond.notify_all()
        self._work.notify_all()

    def _raise_if_stopped(self) -> None:
        with self._cond:
            self._raise_if_stopped_locked()

    def _raise_if_stopped_locked(self) -> None:
        failure = self._loop.failure
        if failure is not None:
            raise failure
        if self._stopped or self._closing:
            raise ConnectorStopped("the source is closed")

    def _opened(self, opened: Any) -> None:
        info = StreamOpenedInfo(opened.stream, opened.resume_after, opened.committed)
        if self._on_opened is not None:
            self._on_opened(info)
        self._commit(opened.stream, opened.committed)
        with self._cond:
            s = self._streams.get(opened.stream)
            if s is None:
                return
            s.opened = True
            s.resume_after = opened.resume_after
            # Records at or below resume_after are applied already: they wait for their commit
            # and are not resent (R-SRC-RESUME). The rest go again with their original positions
            # (R-SRC-REPLAY); new ones are numbered after both.
            unsent = s.unsent
            while unsent and 0 < unsent[0][_POSITION] <= opened.resume_after:
                s.sent.append(unsent.popleft())
            if not s.explicit:
                s.last_position = max(s.last_position, opened.resume_after)
            if s.opened_info is None:
                s.opened_info = info
                s.first_opened.set()
            self._notify_all()

    def _commit(self, stream: str, position: int) -> None:
        contexts: List[Any] = []
        with self._cond:
            s = self._streams.get(stream)
            if s is None or position <= s.committed:
                return
            s.committed = position
            popped = 0
            want = self._on_committed is not None
            # Between sessions every record waits in ``unsent``, and StreamOpened may commit some.
            for buffer in (s.sent, s.unsent):
                while buffer and 0 < buffer[0][_POSITION] <= position:
                    p = buffer.popleft()
                    popped += 1
                    if want:
                        contexts.append(p[_CONTEXT])
                if buffer:
                    break
            if popped:
                self._buffered -= popped
                self.records_committed += popped
                self._cond.notify_all()
        if self._on_committed is not None and contexts:
            self._on_committed(stream, position, contexts)

    def requests(self, session: Session, hello: Any) -> Iterator[Any]:
        """The session's requests: Hello, then (after the Welcome) OpenStream for each stream,
        batches as credits allow, and EndStream for ending streams. gRPC's sending thread drains
        it; it ends (half-closing the call) when the session ends or the source closes."""
        yield hello
        cond = self._cond
        with cond:
            while self._session is not session:
                if not session.live:
                    return
                self._work.wait(0.1)
            limits = session.limits
            batch_max = self._batch_max = min(self._records_per_batch, limits.max_batch_records or self._records_per_batch)
        bytes_max = max(1, (limits.max_message_bytes or 16 << 20) - _MESSAGE_OVERHEAD_BYTES)
        while True:
            request = None
            with cond:
                while request is None:
                    if not session.live or self._session is not session:
                        return
                    try:
                        request, wait_s = self._next_request(batch_max, bytes_max)
                    except Exception as err:  # noqa: BLE001 - a broken invariant or an unsendable record
                        self._loop.fail(err)
                        return
                    if request is None:
                        self._senders_waiting += 1
                        self._work.wait(wait_s)
                        self._senders_waiting -= 1
            yield request

    def _next_request(self, batch_max: int, bytes_max: int) -> "tuple[Optional[Any], Optional[float]]":
        """The next request to send, or None and how long to wait. Called with the lock held."""
        for name in self._order:
            s = self._streams[name]
            if not s.open_sent and not (s.ended.is_set()):
                s.open_sent = True
                return pb.SourceRequest(open=pb.OpenStream(stream=name)), None
        wait_s: Optional[float] = None
        now = time.monotonic()
        count = len(self._order)
        for i in range(count):
            s = self._streams[self._order[(self._next_stream + i) % count]]
            if not s.opened or s.end_sent:
                continue
            unsent = len(s.unsent)
            if unsent == 0:
                if s.ending:
                    s.end_sent = True
                    return pb.SourceRequest(end=pb.EndStream(stream=s.name)), None
                continue
            if self._credits <= 0:
                continue
            want = min(batch_max, self._credits)
            if unsent < want and not (self._closing or s.ending):
                oldest = s.unsent[0][_ENQUEUED_AT]
                age_s = now - oldest
                if age_s < self._linger_s and oldest > self._flushed_at:
                    left_s = self._linger_s - age_s
                    wait_s = left_s if wait_s is None else min(wait_s, left_s)
                    continue
            self._next_stream = (self._next_stream + i + 1) % count
            return self._take_batch(s, want, bytes_max), None
        return None, wait_s

    def _take_batch(self, s: _Stream, want: int, bytes_max: int) -> bytes:
        parts: List[bytes] = []
        stream = s.name.encode("utf-8")
        size = len(stream) + 16
        unsent = s.unsent
        sent = s.sent
        last_position = s.last_position
        taken = 0
        varint = _varint
        while unsent and taken < want:
            p = unsent[0]
            position = p[_POSITION] or last_position + 1
            pos = varint(position)
            encoded = p[_ENCODED]
            length = 1 + len(pos) + len(encoded)
            framing = varint(length)
            framed = 1 + len(framing) + length
            if size + framed > bytes_max:
                if not taken:
                    raise ValueError(f'stream "{s.name}": a record of {framed} bytes exceeds the engine\'s '
                                     f"max_message_bytes; dead-letter it upstream (R-LIMITS)")
                break
            if not p[_POSITION]:
                last_position = p[_POSITION] = position
            sent.append(unsent.popleft())
            taken += 1
            size += framed
            parts += (b"\x12", framing, b"\x08", pos, encoded)
        s.last_position = last_position
        self._credits -= taken
        self.records_sent += taken
        assert self._credits >= 0, "sent more records than credits (R-SRC-CREDITS)"
        batch = b"".join((b"\x0a", varint(len(stream)), stream, *parts))
        return b"".join((b"\x1a", varint(len(batch)), batch))
