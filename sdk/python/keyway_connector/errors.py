"""The SDK's error type: a session ending, with the engine's protocol code and the gRPC status.

docs/protocol.md §11 defines the codes. A session that ends with an ``Error`` message carries its
code; one that ends without (the engine is down, the connection broke) carries only the status,
with code ``ERROR_CODE_UNSPECIFIED``.
"""
from __future__ import annotations

import enum
from typing import Optional

import grpc

from ._proto import pb


class ErrorCode(enum.IntEnum):
    """The protocol's ``ErrorCode`` (docs/protocol.md §11), without the ``ERROR_CODE_`` prefix."""

    UNSPECIFIED = pb.ERROR_CODE_UNSPECIFIED
    MALFORMED = pb.ERROR_CODE_MALFORMED
    UNSUPPORTED_VERSION = pb.ERROR_CODE_UNSUPPORTED_VERSION
    UNAUTHENTICATED = pb.ERROR_CODE_UNAUTHENTICATED
    UNKNOWN_TARGET = pb.ERROR_CODE_UNKNOWN_TARGET
    PROTOCOL_VIOLATION = pb.ERROR_CODE_PROTOCOL_VIOLATION
    STREAM_BUSY = pb.ERROR_CODE_STREAM_BUSY
    CREDITS_EXCEEDED = pb.ERROR_CODE_CREDITS_EXCEEDED
    POSITION_REGRESSED = pb.ERROR_CODE_POSITION_REGRESSED
    BATCH_TOO_LARGE = pb.ERROR_CODE_BATCH_TOO_LARGE
    UNKNOWN_SEQUENCE = pb.ERROR_CODE_UNKNOWN_SEQUENCE
    SHUTTING_DOWN = pb.ERROR_CODE_SHUTTING_DOWN
    INTERNAL = pb.ERROR_CODE_INTERNAL
    STREAM_OWNED = pb.ERROR_CODE_STREAM_OWNED
    TOO_MANY_STREAMS = pb.ERROR_CODE_TOO_MANY_STREAMS
    SESSION_REPLACED = pb.ERROR_CODE_SESSION_REPLACED
    PERMISSION_DENIED = pb.ERROR_CODE_PERMISSION_DENIED


#: Configuration errors: reconnecting cannot help, so the SDK stops (R-ERROR-CONFIG-FATAL).
#: STREAM_OWNED: another connector (another ``connector_name``) owns the stream name.
#: SESSION_REPLACED: a newer session with this ``instance_id`` took this one's place, so another
#: running instance shares the id.
#: PERMISSION_DENIED: the connector's credential does not allow its role, target or stream name.
CONFIGURATION_CODES = frozenset(
    {ErrorCode.UNSUPPORTED_VERSION, ErrorCode.UNAUTHENTICATED, ErrorCode.UNKNOWN_TARGET, ErrorCode.STREAM_OWNED,
     ErrorCode.SESSION_REPLACED, ErrorCode.PERMISSION_DENIED}
)

#: The gRPC status the engine ends a call with after each code (docs/protocol.md §11).
STATUS_OF_CODE = {
    ErrorCode.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNSUPPORTED_VERSION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.UNKNOWN_TARGET: grpc.StatusCode.NOT_FOUND,
    ErrorCode.PROTOCOL_VIOLATION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.STREAM_BUSY: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.CREDITS_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.POSITION_REGRESSED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.BATCH_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNKNOWN_SEQUENCE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.STREAM_OWNED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.TOO_MANY_STREAMS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.SESSION_REPLACED: grpc.StatusCode.ABORTED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

# A call that ended with one of these statuses and no Error message (or an Error whose code this
# SDK does not know) is final too: the last table of docs/protocol.md §11, R-ERROR-UNKNOWN-CODE.
_FINAL_STATUSES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND})


def code_name(code: int) -> str:
    """``UNKNOWN_TARGET`` for a known code, the number for one from a newer minor version."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class ConnectorError(Exception):
    """A session ended, or the connector stopped, for the reason in ``code`` and ``grpc_status``.

    Attributes:
        code: the protocol ``ErrorCode`` from the engine's ``Error`` message (an ``int`` when the
            engine sent a code this SDK does not know), ``UNSPECIFIED`` when it sent none.
        grpc_status: the gRPC status the call ended with, or ``None`` when it never ended with one.
        detail: the engine's ``Error.message`` or the gRPC status details.
    """

    def __init__(self, code: int, grpc_status: Optional[grpc.StatusCode], detail: str, message: str,
                 configuration: bool = False) -> None:
        super().__init__(message)
        # Set when the SDK itself found the configuration wrong (a TLS mismatch), whatever the code.
        self._configuration = configuration
        try:
            self.code: int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.grpc_status = grpc_status
        self.detail = detail

    @property
    def code_name(self) -> str:
        """The code without its prefix, e.g. ``"UNKNOWN_TARGET"``."""
        return code_name(self.code)

    @property
    def is_configuration_error(self) -> bool:
        """True when reconnecting cannot help: a wrong token, protocol version or target name, a
        stream name another connector owns, or an instance_id another running instance uses; or
        a TLS misconfiguration the SDK found after a failed dial (the engine speaks TLS and this
        connector does not, or the reverse, a certificate not trusted or refused)."""
        if self._configuration or self.code in CONFIGURATION_CODES:
            return True
        known = isinstance(self.code, ErrorCode) and self.code != ErrorCode.UNSPECIFIED
        return not known and self.grpc_status in _FINAL_STATUSES


class ConfigurationError(ConnectorError):
    """A ``ConnectorError`` that stopped the connector for good: the SDK does not reconnect after
    ``UNSUPPORTED_VERSION``, ``UNAUTHENTICATED``, ``UNKNOWN_TARGET``, ``STREAM_OWNED`` or
    ``SESSION_REPLACED`` or ``PERMISSION_DENIED`` (R-ERROR-CONFIG-FATAL), nor after a TLS
    misconfiguration it found itself."""


class ConnectorStopped(Exception):
    """The connector was closed (by ``close()``) while a call waited on it."""
