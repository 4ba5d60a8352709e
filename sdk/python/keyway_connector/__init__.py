"""Keyway connector SDK for Python: sources, sinks and partition functions that attach to a Keyway
engine over its gRPC connector protocol (docs/protocol.md in the Keyway repository).

Needs only grpcio and protobuf (Debian's python3-grpcio and python3-protobuf are enough).
"""
from .backoff import Backoff
from .describe import describe
from .errors import ConfigurationError, ConnectorError, ConnectorStopped, ErrorCode
from .id_window import IdWindow
from .options import ConnectOptions
from .partitioner import Partitioner
from .session import PROTOCOL_MAJOR, PROTOCOL_MINOR
from .sink import Sink
from .source import Source, StreamOpenedInfo

__all__ = [
    "Backoff",
    "ConfigurationError",
    "ConnectOptions",
    "ConnectorError",
    "ConnectorStopped",
    "ErrorCode",
    "IdWindow",
    "Partitioner",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "Sink",
    "Source",
    "StreamOpenedInfo",
    "describe",
]
__version__ = "0.1.0"
