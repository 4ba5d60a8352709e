"""``Describe``: what the engine serves (target names, protocol versions, limits, whether a token
is needed), without a token (R-DESCRIBE). Useful to check a target before connecting, and to show
the valid names when the engine answers ``UNKNOWN_TARGET``."""
from __future__ import annotations

import os
from typing import Any, Optional

import grpc

from ._proto import grpc_stub, pb
from .options import DEFAULT_ENGINE


def describe(engine: Optional[str] = None, timeout_s: float = 5.0) -> Any:
    """Calls ``Describe`` on ``engine`` (HOST:PORT; default ``$KEYWAY_ENGINE`` or 127.0.0.1:7700)
    with a deadline (R-TRANSPORT-NO-DEADLINE) and returns the ``DescribeResponse``. Raises
    ``grpc.RpcError`` when the engine cannot be reached in time."""
    address = engine or os.environ.get("KEYWAY_ENGINE") or DEFAULT_ENGINE
    with grpc.insecure_channel(address) as channel:
        return grpc_stub.ConnectorServiceStub(channel).Describe(pb.DescribeRequest(), timeout=timeout_s)
