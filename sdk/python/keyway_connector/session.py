"""What every role shares: one gRPC call per session, the Hello/Welcome handshake, and the loop that
keeps a session open, reconnecting with backoff after it ends, following Redirect, failing over to
the cluster's other workers when its worker is unreachable, and stopping for good on a
configuration error (docs/protocol.md §5, §11, §13). Internal: roles build on it.

Threads: the loop runs on one thread and reads the session's responses there, calling the role's
handlers in order. Requests go through a queue that gRPC's own thread drains (the sync API takes
a request iterator), so any thread may send. Each session dials a fresh channel: a reused one
would apply gRPC's own reconnect backoff (up to two minutes) underneath ours, and a Redirect needs
a new address anyway.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional, Protocol, Tuple, TypeVar

import grpc

from ._proto import pb
from .addresses import known_addresses, learn_addresses, next_address, parse_engines
from .errors import ConfigurationError, ConnectorError, ErrorCode, code_name
from .tls import diagnose, may_be_tls_failure, open_channel
from .options import ConnectOptions

#: The protocol version this SDK speaks (R-VERSION-MAJOR).
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0

#: After this many sessions at a redirected address that its worker ended with an Error before a
#: Welcome, go back to the configured one (§13.2). An unreachable redirected address is left at
#: once, as any unreachable worker is (R-FAILOVER).
REDIRECT_FAILURES_MAX = 3

_CLOSE = object()


class Session:
    """One gRPC call: one session with the engine. Safe to use from any thread."""

    def __init__(self, number: int, address: str) -> None:
        self.number = number
        self.address = address
        #: The engine's Welcome, once received.
        self.welcome: Optional[Any] = None
        self._outbound: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._live = True
        self._call: Optional[Any] = None
        self._lock = threading.Lock()
        #: Why we cancelled the call, when we did; reported instead of gRPC's "Cancelled".
        self.cancel_reason: Optional[str] = None

    @property
    def live(self) -> bool:
        """False once the session has ended, or is ending because we closed or cancelled it."""
        return self._live

    @property
    def limits(self) -> Any:
        """``Welcome.limits``: what the engine enforces on this session."""
        assert self.welcome is not None, "limits are known once the session is welcomed"
        return self.welcome.limits

    def send(self, request: Any) -> None:
        """Queues a request. Callers bound what they send by credits, so the queue stays bounded."""
        if self._live:
            self._outbound.put(request)

    def half_close(self) -> None:
        """Ends our side of the stream; the engine then ends the call with status OK."""
        with self._lock:
            if not self._live:
                return
            self._live = False
        self._outbound.put(_CLOSE)

    def cancel(self, reason: str) -> None:
        """Abandons the call at once."""
        with self._lock:
            if self.cancel_reason is None:
                self.cancel_reason = reason
            self._live = False
            call = self._call
        self._outbound.put(_CLOSE)
        if call is not None:
            call.cancel()

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self._outbound.get()
            if item is _CLOSE:
                return
            yield item

    def _attach(self, call: Any) -> None:
        with self._lock:
            self._call = call
            cancelled = self.cancel_reason is not None
        if cancelled:
            call.cancel()

    def _ended(self) -> None:
        with self._lock:
            self._live = False
        # Releases gRPC's request thread if it still waits on the queue.
        self._outbound.put(_CLOSE)


class RoleHandler(Protocol):
    """What a role (source, sink, partitioner) plugs into the loop. Called on the loop's thread."""

    #: The method name: "Source", "Sink" or "Partition".
    method: str

    def hello(self, hello: Any) -> Any:
        """The role's request carrying ``hello``."""

    def welcomed(self, session: Session, welcome: Any) -> None:
        """The handshake succeeded; the session is live."""

    def message(self, session: Session, response: Any, kind: str) -> None:
        """A message after the Welcome other than Error and Redirect; ``kind`` is its oneof case."""

    def ended(self, session: Session) -> None:
        """The welcomed session is over; anything tied to it is void."""

    def stopped(self, failure: Optional[BaseException]) -> None:
        """The loop will start no more sessions (``failure`` is why, when it failed)."""


class _Outcome:
    __slots__ = ("error", "redirect", "healthy", "welcomed", "worker_lost")

    def __init__(self, error: Optional[ConnectorError], redirect: Optional[Any], healthy: bool, welcomed: bool,
                 worker_lost: bool = False) -> None:
        self.error = error
        self.redirect = redirect
        self.healthy = healthy
        self.welcomed = welcomed
        #: The worker is gone or going, so the next attempt should try another (R-FAILOVER).
        self.worker_lost = worker_lost


class SessionLoop:
    """Keeps one session of a role open until ``stop()``, a configuration error, or too many
    consecutive failures. ``start()`` runs it on a daemon thread; ``join()`` waits for it and
    raises what made it fail."""

    def __init__(self, options: ConnectOptions, role: RoleHandler) -> None:
        self.options = options.resolved()
        self.role = role
        self.log: logging.Logger = self.options.logger  # type: ignore[assignment]
        self._configured = parse_engines(self.options.engine)  # type: ignore[arg-type]
        self._address = self._configured[0]
        #: The ``cluster_addresses`` of the latest Welcome.
        self._learned: Tuple[str, ...] = ()
        #: At an address a Redirect named, until a failover moves on from it.
        self._redirected = False
        self._failures = 0
        self._redirect_failures = 0
        self._sessions = 0
        self._stopped = threading.Event()
        self._graceful = False
        self._wake = threading.Event()
        self._failure: Optional[BaseException] = None
        self._current: Optional[Session] = None
        self._thread: Optional[threading.Thread] = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    # -- control --------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts dialling on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the connector is already started")
        self._thread = threading.Thread(target=self._run, name=f"keyway-{self.role.method.lower()}", daemon=True)
        self._thread.start()

    @property
    def session(self) -> Optional[Session]:
        """The live session, if any."""
        current = self._current
        return current if current is not None and current.live else None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def failure(self) -> Optional[BaseException]:
        return self._failure

    def stop(self, graceful: bool = True) -> None:
        """Stops reconnecting. Graceful: half-closes the live session (the engine ends it with OK
        once it has read what we sent); otherwise cancels it."""
        with self._lock:
            self._stopped.set()
            current = self._current
        self._wake.set()
        if current is not None:
            if graceful:
                current.half_close()
            else:
                current.cancel("the connector stopped")

    def fail(self, err: BaseException) -> None:
        """Stops at once; ``join()`` raises ``err``. The first failure wins."""
        with self._lock:
            if self._failure is None:
                self._failure = err
        self.stop(graceful=False)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the loop to end; True when it has. Raises what made it fail, if anything."""
        if self._thread is None:
            return True
        finished = self._done.wait(timeout)
        if finished and self._failure is not None:
            raise self._failure
        return finished

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                outcome = self._run_session()
                if self._stopped.is_set():
                    break
                self._after(outcome)
        except BaseException as err:  # noqa: BLE001 - a bug here must surface in join(), not vanish
            with self._lock:
                if self._failure is None:
                    self._failure = err
            self._stopped.set()
        finally:
            try:
                self.role.stopped(self._failure)
            finally:
                self._done.set()

    def _after(self, outcome: _Outcome) -> None:
        """Decides what follows a session's end: a redirect, a retry after a delay, or the end."""
        options = self.options
        if outcome.healthy:
            self._failures = 0
        if outcome.redirect is not None:
            frm = self._address
            self._address = outcome.redirect.address
            self._redirected = True
            self._redirect_failures = 0
            # The first redirect is followed at once; a chain of them backs off like failures.
            delay_s = 0.0 if self._failures == 0 else options.backoff.delay_s(self._failures)
            self._failures += 1
            self.log.info("%s session: engine %s redirected us to %s (%s)", self.role.method.lower(), frm,
                          self._address, outcome.redirect.reason)
            self._sleep(delay_s)
            return
        error = outcome.error
        assert error is not None
        if error.is_configuration_error:
            self.log.error("%s; not reconnecting: this is a configuration error", error)
            self.fail(ConfigurationError(error.code, error.grpc_status, error.detail, str(error), configuration=True))
            return
        self._failures += 1
        if outcome.worker_lost:
            self._fail_over()
        elif self._redirected and not outcome.welcomed:
            self._redirect_failures += 1
            if self._redirect_failures >= REDIRECT_FAILURES_MAX:
                self.log.warning("giving up on redirected address %s; back to %s", self._address, self._configured[0])
                self._address = self._configured[0]
                self._redirected = False
        limit = options.max_consecutive_failures
        if limit is not None and self._failures >= limit:
            self.log.error("%s; giving up after %d consecutive failures", error, self._failures)
            self.fail(error)
            return
        # The first failure after a healthy session waits at most initial_s, so a failover is
        # near-immediate; a cluster whose every worker is down is retried with growing delays.
        delay_s = options.backoff.delay_s(self._failures)
        self.log.warning("%s; reconnecting to %s in %.3f s (attempt %d)", error, self._address, delay_s, self._failures)
        self._sleep(delay_s)

    def _fail_over(self) -> None:
        """The next attempt goes to the next known address: the configured ones, then the cluster's."""
        following = next_address(known_addresses(self._configured, self._learned), self._address)
        self._redirected = False
        if following != self._address:
            self.log.info("engine %s unreachable; failing over to %s", self._address, following)
            self._address = following

    def _sleep(self, delay_s: float) -> None:
        if delay_s > 0:
            self._wake.wait(delay_s)
        self._wake.clear()

    def _run_session(self) -> _Outcome:
        options = self.options
        role = self.role
        address = self._address
        self._sessions += 1
        session = Session(self._sessions, address)
        with self._lock:
            if self._stopped.is_set():
                return _Outcome(None, None, False, False)
            self._current = session
        channel = open_channel(address, options.tls_material, [
            ("grpc.max_receive_message_length", options.max_receive_message_bytes),
            # Keepalive pings: an engine that stops answering ends the session within the timeout.
            ("grpc.keepalive_time_ms", max(1, int(options.keepalive_timeout_s * 500))),
            ("grpc.keepalive_timeout_ms", max(1, int(options.keepalive_timeout_s * 500))),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_send_message_length", -1),
            # Recovery is a new session and a replay at the protocol level (§3), never gRPC retries.
            ("grpc.enable_retries", 0),
        ])
        engine_error: Optional[Any] = None
        redirect: Optional[Any] = None
        welcomed_at: Optional[float] = None
        status: Optional[grpc.StatusCode] = None
        details = ""
        timer = threading.Timer(options.handshake_timeout_s,
                                lambda: session.cancel(f"no Welcome within {options.handshake_timeout_s} s"))
        timer.daemon = True
        try:
            hello = pb.Hello(
                version=pb.ProtocolVersion(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR),
                connector_name=options.connector_name,
                instance_id=options.instance_id,
                target=options.target,
                token=options.token,
                capabilities=list(options.capabilities),
            )
            # A role may produce its requests itself (the source does, so a batch is built on the
            # thread gRPC sends from, sparing a thread hop per message); others go through a queue.
            produce = getattr(role, "requests", None)
            if produce is not None:
                requests = produce(session, role.hello(hello))
            else:
                session.send(role.hello(hello))
                requests = session._requests()
            method = channel.stream_stream(
                f"/keyway.v1.ConnectorService/{role.method}",
                request_serializer=getattr(role, "serialize", None) or _serializer(role.method),
                response_deserializer=_deserializer(role.method),
            )
            call = method(requests)
            session._attach(call)
            timer.start()
            for response in call:
                kind = response.WhichOneof("kind")
                if kind == "error":
                    engine_error = response.error
                elif kind == "redirect":
                    redirect = response.redirect
                elif kind == "welcome":
                    if welcomed_at is not None:
                        session.cancel("the engine sent a second Welcome")
                        continue
                    timer.cancel()
                    welcome = response.welcome
                    if welcome.version.major != PROTOCOL_MAJOR:
                        engine_error = pb.Error(
                            code=pb.ERROR_CODE_UNSUPPORTED_VERSION,
                            message=f"the engine answered with protocol version {welcome.version.major}."
                                    f"{welcome.version.minor}; this SDK speaks {PROTOCOL_MAJOR}.x")
                        session.cancel(engine_error.message)
                        continue
                    welcomed_at = time.monotonic()
                    session.welcome = welcome
                    self._learned = learn_addresses(self._learned, welcome.cluster_addresses)
                    self.log.debug("%s session %s welcomed by %s (credits %d)", role.method.lower(),
                                   welcome.session_id, address, welcome.initial_credits)
                    if session.live:
                        role.welcomed(session, welcome)
                elif kind is None:
                    # A message kind from a newer minor version (R-VERSION-UNKNOWN-FIELDS).
                    continue
                elif welcomed_at is None:
                    session.cancel(f'the engine sent "{kind}" before its Welcome')
                elif session.live:
                    role.message(session, response, kind)
            status = grpc.StatusCode.OK
        except grpc.RpcError as err:
            status = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
            details = err.details() if callable(getattr(err, "details", None)) else str(err)
        except Exception as err:  # noqa: BLE001 - a throwing user callback or a broken invariant
            self.fail(err)
            session.cancel(f"{type(err).__name__}: {err}")
        finally:
            timer.cancel()
            session._ended()
            with self._lock:
                if self._current is session:
                    self._current = None
            channel.close()
            if welcomed_at is not None:
                try:
                    role.ended(session)
                except Exception as err:  # noqa: BLE001
                    self.fail(err)
        healthy = welcomed_at is not None and time.monotonic() - welcomed_at >= options.backoff.reset_after_s
        if redirect is not None and redirect.address:
            return _Outcome(None, redirect, healthy, welcomed_at is not None)
        if engine_error is not None:
            code = engine_error.code
            why = f"{code_name(code)}: {engine_error.message}"
            detail = engine_error.message
        else:
            code = ErrorCode.UNSPECIFIED
            detail = session.cancel_reason or details
            why = session.cancel_reason or f"{status.name if status else 'no status'}: {details}"
        error = ConnectorError(code, status, detail,
                               f'{role.method.lower()} session with engine {address} (target "{options.target}") '
                               f"ended: {why}")
        dial_failed = (engine_error is None and welcomed_at is None and session.cancel_reason is None
                       and status == grpc.StatusCode.UNAVAILABLE)
        if dial_failed and may_be_tls_failure(details):
            # gRPC says "failed to connect" for a TLS misconfiguration as for a closed port: a probe
            # tells them apart, and a TLS misconfiguration is a configuration error.
            why_tls = diagnose(address, options.tls_material)
            if why_tls is not None:
                error = ConnectorError(ErrorCode.UNSPECIFIED, status, why_tls,
                                       f'{role.method.lower()} session with engine {address} (target "{options.target}") '
                                       f"failed: {why_tls}", configuration=True)
        # No Error at all (a failed dial, a broken connection, no Welcome in time) or SHUTTING_DOWN:
        # the worker is gone or going. Any other Error came from a live worker, which keeps serving.
        worker_lost = engine_error is None or engine_error.code == pb.ERROR_CODE_SHUTTING_DOWN
        return _Outcome(error, None, healthy, welcomed_at is not None, worker_lost)


_REQUESTS = {"Source": pb.SourceRequest, "Sink": pb.SinkRequest, "Partition": pb.PartitionRequest}
_RESPONSES = {"Source": pb.SourceResponse, "Sink": pb.SinkResponse, "Partition": pb.PartitionResponse}


def _serializer(method: str) -> Callable[[Any], bytes]:
    return _REQUESTS[method].SerializeToString


def _deserializer(method: str) -> Callable[[bytes], Any]:
    return _RESPONSES[method].FromString


class LoopConnector:
    """The lifecycle a sink and a partitioner share: a SessionLoop on a background thread that
    reconnects until stopped. Subclasses set ``self._loop``."""

    _loop: SessionLoop

    def start(self: "_C") -> "_C":
        """Starts connecting (on a background thread) and returns self."""
        self._loop.start()
        return self

    def run(self) -> None:
        """Starts and blocks until the connector stops; raises what made it fail."""
        self.start()
        self._loop.join()

    def __enter__(self: "_C") -> "_C":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Asks the connector to stop gracefully and returns at once (safe in a signal handler);
        ``run()`` or ``join()`` return once it has."""
        self._loop.stop(graceful=True)

    def close(self, timeout: float = 5.0) -> None:
        """Stops gracefully: half-closes once the work in hand is done (a sink's batch written and
        acked); what was not acknowledged goes to another session or the next one. Raises what
        made the connector fail."""
        self._loop.stop(graceful=True)
        if not self._loop.join(timeout):
            self._loop.stop(graceful=False)
            self._loop.join(5.0)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the connector to stop; raises what made it fail."""
        return self._loop.join(timeout)

    @property
    def failure(self) -> Optional[BaseException]:
        return self._loop.failure


_C = TypeVar("_C", bound=LoopConnector)
