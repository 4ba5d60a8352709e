"""``Describe``: what the engine serves (target names, protocol versions, limits, whether a token
is needed), without a token (R-DESCRIBE). Useful to check a target before connecting, and to show
the valid names when the engine answers ``UNKNOWN_TARGET``."""
from __future__ import annotations

import os
from typing import Any, Optional

import grpc

from ._proto import grpc_stub, pb
from .addresses import parse_engines
from .options import DEFAULT_ENGINE
from .tls import Pem, TlsMaterial, open_channel, resolve_tls


def describe(engine: Optional[str] = None, timeout_s: float = 5.0, tls: bool = False, tls_ca: Optional[Pem] = None,
             tls_cert: Optional[Pem] = None, tls_key: Optional[Pem] = None) -> Any:
    """Calls ``Describe`` on ``engine`` (HOST:PORT, or several separated by commas, tried in turn;
    default ``$KEYWAY_ENGINE`` or 127.0.0.1:7700) with a deadline per address
    (R-TRANSPORT-NO-DEADLINE) and returns the first ``DescribeResponse``. Raises the last
    ``grpc.RpcError`` when no address answers in time. The TLS options are those of
    ``ConnectOptions``."""
    *others, last = parse_engines(engine or os.environ.get("KEYWAY_ENGINE") or DEFAULT_ENGINE)
    material = resolve_tls(tls, tls_ca, tls_cert, tls_key)
    for address in others:
        try:
            return _describe(address, timeout_s, material)
        except grpc.RpcError:
            continue
    return _describe(last, timeout_s, material)


def _describe(address: str, timeout_s: float, tls: Optional[TlsMaterial]) -> Any:
    with open_channel(address, tls) as channel:
        return grpc_stub.ConnectorServiceStub(channel).Describe(pb.DescribeRequest(), timeout=timeout_s)
