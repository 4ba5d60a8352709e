"""A real gRPC server speaking keyway.v1.ConnectorService whose sessions a test scripts by hand:
it receives what the SDK sends and decides what the engine answers, including errors, redirects
and abrupt ends. It checks the invariants a real engine enforces (credits, positions, Hello first)
and records violations instead of hiding them."""
from __future__ import annotations

import queue
import threading
from concurrent import futures
from typing import Any, List, Optional, Sequence

import grpc

from keyway_connector._proto import grpc_stub, pb

LIMITS = pb.Limits(max_batch_records=10_000, max_message_bytes=16 << 20, idempotency_window=100_000)
_END = object()


class EngineSession:
    """One call as the engine sees it. ``recv`` what the connector sent; ``send`` answers."""

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.inbox: "queue.Queue[Any]" = queue.Queue()
        self.outbox: "queue.Queue[Any]" = queue.Queue()
        self.hello: Optional[Any] = None
        self.credits_granted = 0  # source sessions: what the engine granted
        self.records_received = 0
        self.requests_seen = 0
        self.violations: List[str] = []
        self.last_position: dict = {}
        self.closed_by_connector = threading.Event()

    def recv(self, timeout: float = 10.0) -> Any:
        """The next request, or None once the connector half-closed or the call ended."""
        item = self.inbox.get(timeout=timeout)
        return None if item is _END else item

    def recv_kind(self, kind: str, timeout: float = 10.0) -> Any:
        """The next request, which must be of ``kind``; returns the oneof's value."""
        request = self.recv(timeout)
        assert request is not None, f"expected {kind}, the connector closed"
        got = request.WhichOneof("kind")
        assert got == kind, f"expected {kind}, got {got}: {request}"
        return getattr(request, kind)

    def send(self, **kind: Any) -> None:
        """Sends one response of the session's type, e.g. ``send(credits=pb.Credits(records=5))``."""
        response_type = {"Source": pb.SourceResponse, "Sink": pb.SinkResponse, "Partition": pb.PartitionResponse}
        if "credits" in kind and self.method == "Source":
            self.credits_granted += kind["credits"].records
        if "welcome" in kind and self.method == "Source":
            self.credits_granted += kind["welcome"].initial_credits
        self.outbox.put(response_type[self.method](**kind))

    def welcome(self, initial_credits: int = 0, limits: Any = LIMITS, major: int = 1,
                cluster_addresses: Sequence[str] = ()) -> Any:
        """Reads the Hello and answers with a Welcome; returns the Hello."""
        hello = self.recv_kind("hello")
        self.hello = hello
        self.send(welcome=pb.Welcome(session_id=f"s-{id(self)}", version=pb.ProtocolVersion(major=major, minor=0),
                                     initial_credits=initial_credits, limits=limits,
                                     cluster_addresses=list(cluster_addresses)))
        return hello

    def fail(self, code: int, status: grpc.StatusCode, message: str = "scripted") -> None:
        """Sends Error{code} and ends the call with ``status`` (R-SESSION-END)."""
        self.send(error=pb.Error(code=code, message=message))
        self.end(status, message)

    def redirect(self, address: str) -> None:
        self.send(redirect=pb.Redirect(address=address, reason="scripted"))
        self.end(grpc.StatusCode.UNAVAILABLE, "redirected")

    def end(self, status: grpc.StatusCode = grpc.StatusCode.OK, details: str = "") -> None:
        """Ends the call with ``status`` and no Error message (a transport-like failure)."""
        self.outbox.put((_END, status, details))

    # -- server side ----------------------------------------------------------------------------

    def _read(self, requests: Any) -> None:
        try:
            for request in requests:
                self._check(request)
                self.inbox.put(request)
            # The connector half-closed: a real engine then ends the call with OK (R-SESSION-END).
            self.closed_by_connector.set()
            self.end(grpc.StatusCode.OK)
        except Exception:  # noqa: BLE001 - the call was cancelled
            pass
        self.inbox.put(_END)

    def _check(self, request: Any) -> None:
        kind = request.WhichOneof("kind")
        self.requests_seen += 1
        if (self.requests_seen == 1) != (kind == "hello"):
            self.violations.append(f"request {self.requests_seen} is {kind} (R-SESSION-HELLO-FIRST, R-SESSION-ONE-HELLO)")
        if kind == "batch" and self.method == "Source":
            batch = request.batch
            self.records_received += len(batch.records)
            if self.records_received > self.credits_granted:
                self.violations.append(f"credits exceeded: {self.records_received} > {self.credits_granted}")
            last = self.last_position.get(batch.stream, 0)
            for r in batch.records:
                if r.position <= last or r.position < 1:
                    self.violations.append(f"position regressed on {batch.stream}: {r.position} after {last}")
                last = r.position
            self.last_position[batch.stream] = last

    def _responses(self) -> Any:
        while True:
            item = self.outbox.get()
            if isinstance(item, tuple) and item and item[0] is _END:
                _, status, details = item
                if status != grpc.StatusCode.OK:
                    self.context.set_code(status)
                    self.context.set_details(details)
                return
            yield item


class ScriptedEngine:
    """A gRPC server on 127.0.0.1 whose sessions arrive on ``next_session()``."""

    def __init__(self, port: int = 0, describe: Optional[Any] = None) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self.sessions: "queue.Queue[EngineSession]" = queue.Queue()
        self.all_sessions: List[EngineSession] = []
        self._describe = describe or pb.DescribeResponse(app="scripted", versions=[pb.ProtocolVersion(major=1)],
                                                         limits=LIMITS)
        handlers = {name: self._handler(name) for name in ("Source", "Sink", "Partition")}
        handlers["Describe"] = lambda request, context: self._describe
        self.server.add_generic_rpc_handlers((grpc_stub.connector_service_handler(handlers),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        assert self.port, f"could not listen on 127.0.0.1:{port}"
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def _handler(self, method: str) -> Any:
        def handle(requests: Any, context: grpc.ServicerContext) -> Any:
            session = EngineSession(method, context)
            self.all_sessions.append(session)
            threading.Thread(target=session._read, args=(requests,), daemon=True).start()
            self.sessions.put(session)
            return session._responses()

        return handle

    def next_session(self, timeout: float = 10.0) -> EngineSession:
        return self.sessions.get(timeout=timeout)

    def stop(self) -> None:
        for s in self.all_sessions:
            s.end(grpc.StatusCode.UNAVAILABLE, "engine stopped")
        self.server.stop(grace=None).wait()

    def __enter__(self) -> "ScriptedEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
