"""Connection options every role shares: where the engine is, what this connector serves, how it
identifies itself, and how it reconnects."""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from .addresses import parse_engines
from .backoff import Backoff
from .tls import TlsMaterial, resolve_tls

#: The engine's default connector address (``keyway run --listen``).
DEFAULT_ENGINE = "127.0.0.1:7700"
#: Receive limit for messages from the engine. It sends at most its ``max_message_bytes`` (16 MiB
#: by default); gRPC's own default of 4 MiB would fail a large batch (R-TRANSPORT-RECV-LIMIT).
MAX_RECEIVE_MESSAGE_BYTES_DEFAULT = 64 * 1024 * 1024


@dataclass(frozen=True)
class ConnectOptions:
    """How a connector reaches the engine. Every role takes these as keyword arguments."""

    #: The name in the app this connector serves: a source, sink or partitioner name.
    target: str
    #: What this connector is, e.g. ``"rabbitmq-source"``; the engine logs it.
    connector_name: str
    #: The engine's connector address, ``HOST:PORT``; or several, separated by commas, of the
    #: workers of one cluster: the connector dials the first, and when its worker is unreachable
    #: moves on to the next of these and of the addresses the engine lists in its Welcome.
    #: Default: ``$KEYWAY_ENGINE`` or 127.0.0.1:7700.
    engine: Optional[str] = None
    #: The engine's shared secret. Default: ``$KEYWAY_TOKEN``. Never logged (R-AUTH-CONFIG).
    token: Optional[str] = field(default=None, repr=False)
    #: TLS: the CA the engine's certificate must chain to, as a PEM file's path or its bytes.
    #: Giving any of tls_ca, tls_cert, tls_key (or ``tls=True``) dials over TLS; none dials plaintext.
    tls_ca: Optional[Union[str, bytes]] = None
    #: Mutual TLS: this connector's certificate (a PEM path or bytes), with ``tls_key``.
    tls_cert: Optional[Union[str, bytes]] = field(default=None, repr=False)
    #: Mutual TLS: the private key of ``tls_cert`` (a PEM path or bytes).
    tls_key: Optional[Union[str, bytes]] = field(default=None, repr=False)
    #: Dial over TLS even without ``tls_ca``, trusting the system's CAs.
    tls: bool = False
    #: Distinguishes instances of one connector; stable across reconnects. Default: host and pid.
    instance_id: Optional[str] = None
    #: Optional protocol features this connector supports (none in protocol 1.0).
    capabilities: Sequence[str] = ()
    backoff: Backoff = field(default_factory=Backoff)
    #: A session with no Welcome this long after dialling is abandoned and retried.
    handshake_timeout_s: float = 10.0
    #: The largest message accepted from the engine.
    max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES_DEFAULT
    #: An engine that does not answer an HTTP/2 ping for this long ends the session, which then
    #: reconnects: pings go every half of it and time out after the other half (R-TRANSPORT-KEEPALIVE).
    keepalive_timeout_s: float = 20.0
    #: Give up (the connector fails with the last error) after this many consecutive failed
    #: sessions; ``None`` retries for ever. Each failure is logged either way (R-ERROR-RETRY).
    max_consecutive_failures: Optional[int] = None
    logger: Optional[logging.Logger] = field(default=None, compare=False)
    #: Set by ``resolved()``: the TLS material read from the files, or None for plaintext.
    tls_material: Optional[TlsMaterial] = field(default=None, repr=False, compare=False)

    def resolved(self) -> "ConnectOptions":
        """A copy with every default filled in and checked."""
        engine = ",".join(parse_engines(self.engine or os.environ.get("KEYWAY_ENGINE") or DEFAULT_ENGINE))
        if not self.target:
            raise ValueError("target must name a source, sink or partitioner of the app")
        if self.handshake_timeout_s <= 0:
            raise ValueError(f"handshake_timeout_s must be positive, got {self.handshake_timeout_s}")
        if self.max_receive_message_bytes < 1:
            raise ValueError("max_receive_message_bytes must be positive")
        if self.keepalive_timeout_s <= 0:
            raise ValueError(f"keepalive_timeout_s must be positive, got {self.keepalive_timeout_s}")
        token = self.token if self.token is not None else os.environ.get("KEYWAY_TOKEN", "")
        tls_material = self.tls_material or resolve_tls(self.tls, self.tls_ca, self.tls_cert, self.tls_key)
        return ConnectOptions(
            target=self.target,
            connector_name=self.connector_name,
            engine=engine,
            token=token,
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
            tls=self.tls,
            tls_material=tls_material,
            instance_id=self.instance_id or f"{socket.gethostname()}-{os.getpid()}",
            capabilities=tuple(self.capabilities),
            backoff=self.backoff,
            handshake_timeout_s=self.handshake_timeout_s,
            max_receive_message_bytes=self.max_receive_message_bytes,
            keepalive_timeout_s=self.keepalive_timeout_s,
            max_consecutive_failures=self.max_consecutive_failures,
            logger=self.logger or logging.getLogger("keyway_connector"),
        )
