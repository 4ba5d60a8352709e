from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
ERROR_CODE_BATCH_TOO_LARGE: ErrorCode
ERROR_CODE_CREDITS_EXCEEDED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_MALFORMED: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_POSITION_REGRESSED: ErrorCode
ERROR_CODE_PROTOCOL_VIOLATION: ErrorCode
ERROR_CODE_SESSION_REPLACED: ErrorCode
ERROR_CODE_SHUTTING_DOWN: ErrorCode
ERROR_CODE_STREAM_BUSY: ErrorCode
ERROR_CODE_STREAM_OWNED: ErrorCode
ERROR_CODE_TOO_MANY_STREAMS: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_UNKNOWN_SEQUENCE: ErrorCode
ERROR_CODE_UNKNOWN_TARGET: ErrorCode
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_UNSUPPORTED_VERSION: ErrorCode

class Ack(_message.Message):
    __slots__ = ["sequence"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class Committed(_message.Message):
    __slots__ = ["position", "stream"]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    position: int
    stream: str
    def __init__(self, stream: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class Credits(_message.Message):
    __slots__ = ["records"]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: int
    def __init__(self, records: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ["app", "cluster_addresses", "limits", "partitioners", "sinks", "sources", "token_required", "versions"]
    APP_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONERS_FIELD_NUMBER: _ClassVar[int]
    SINKS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    app: str
    cluster_addresses: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    partitioners: _containers.RepeatedScalarFieldContainer[str]
    sinks: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    token_required: bool
    versions: _containers.RepeatedCompositeFieldContainer[ProtocolVersion]
    def __init__(self, app: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., sinks: _Optional[_Iterable[str]] = ..., partitioners: _Optional[_Iterable[str]] = ..., versions: _Optional[_Iterable[_Union[ProtocolVersion, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., token_required: bool = ..., cluster_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class EndStream(_message.Message):
    __slots__ = ["stream"]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: str
    def __init__(self, stream: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ["code", "message"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ["capabilities", "connector_name", "instance_id", "target", "token", "version"]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    connector_name: str
    instance_id: str
    target: str
    token: str
    version: ProtocolVersion
    def __init__(self, version: _Optional[_Union[ProtocolVersion, _Mapping]] = ..., connector_name: _Optional[str] = ..., instance_id: _Optional[str] = ..., target: _Optional[str] = ..., token: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ["idempotency_window", "max_batch_records", "max_message_bytes", "max_replay_records", "max_stream_name_bytes", "max_streams_per_session", "max_streams_per_source"]
    IDEMPOTENCY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLAY_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_PER_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_NAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    idempotency_window: int
    max_batch_records: int
    max_message_bytes: int
    max_replay_records: int
    max_stream_name_bytes: int
    max_streams_per_session: int
    max_streams_per_source: int
    def __init__(self, max_batch_records: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., idempotency_window: _Optional[int] = ..., max_streams_per_session: _Optional[int] = ..., max_streams_per_source: _Optional[int] = ..., max_stream_name_bytes: _Optional[int] = ..., max_replay_records: _Optional[int] = ...) -> None: ...

class OpenStream(_message.Message):
    __slots__ = ["stream"]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: str
    def __init__(self, stream: _Optional[str] = ...) -> None: ...

class PartitionBatch(_message.Message):
    __slots__ = ["request_id", "values"]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, request_id: _Optional[int] = ..., values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PartitionKey(_message.Message):
    __slots__ = ["raw", "text"]
    RAW_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    raw: bytes
    text: str
    def __init__(self, text: _Optional[str] = ..., raw: _Optional[bytes] = ...) -> None: ...

class PartitionKeys(_message.Message):
    __slots__ = ["keys", "request_id"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[PartitionKey]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[PartitionKey, _Mapping]]] = ...) -> None: ...

class PartitionRequest(_message.Message):
    __slots__ = ["credits", "hello", "keys"]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    credits: Credits
    hello: Hello
    keys: PartitionKeys
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., credits: _Optional[_Union[Credits, _Mapping]] = ..., keys: _Optional[_Union[PartitionKeys, _Mapping]] = ...) -> None: ...

class PartitionResponse(_message.Message):
    __slots__ = ["batch", "error", "redirect", "welcome"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    batch: PartitionBatch
    error: Error
    redirect: Redirect
    welcome: Welcome
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., batch: _Optional[_Union[PartitionBatch, _Mapping]] = ..., redirect: _Optional[_Union[Redirect, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ProtocolVersion(_message.Message):
    __slots__ = ["major", "minor"]
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    major: int
    minor: int
    def __init__(self, major: _Optional[int] = ..., minor: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ["event_time_ms", "headers", "idempotency_id", "key", "position", "value"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    event_time_ms: int
    headers: _containers.ScalarMap[str, str]
    idempotency_id: str
    key: bytes
    position: int
    value: bytes
    def __init__(self, position: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., event_time_ms: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., idempotency_id: _Optional[str] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ["records", "stream"]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    stream: str
    def __init__(self, stream: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class Redirect(_message.Message):
    __slots__ = ["address", "reason"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    address: str
    reason: str
    def __init__(self, address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SinkBatch(_message.Message):
    __slots__ = ["records", "sequence"]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[SinkRecord]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ..., records: _Optional[_Iterable[_Union[SinkRecord, _Mapping]]] = ...) -> None: ...

class SinkRecord(_message.Message):
    __slots__ = ["event_time_ms", "headers", "id", "key", "value"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    event_time_ms: int
    headers: _containers.ScalarMap[str, str]
    id: str
    key: bytes
    value: bytes
    def __init__(self, id: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., event_time_ms: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SinkRequest(_message.Message):
    __slots__ = ["ack", "credits", "hello"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    credits: Credits
    hello: Hello
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., credits: _Optional[_Union[Credits, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class SinkResponse(_message.Message):
    __slots__ = ["batch", "error", "redirect", "welcome"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    batch: SinkBatch
    error: Error
    redirect: Redirect
    welcome: Welcome
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., batch: _Optional[_Union[SinkBatch, _Mapping]] = ..., redirect: _Optional[_Union[Redirect, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class SourceRequest(_message.Message):
    __slots__ = ["batch", "end", "hello", "open"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    batch: RecordBatch
    end: EndStream
    hello: Hello
    open: OpenStream
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., open: _Optional[_Union[OpenStream, _Mapping]] = ..., batch: _Optional[_Union[RecordBatch, _Mapping]] = ..., end: _Optional[_Union[EndStream, _Mapping]] = ...) -> None: ...

class SourceResponse(_message.Message):
    __slots__ = ["committed", "credits", "ended", "error", "opened", "redirect", "welcome"]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    committed: Committed
    credits: Credits
    ended: StreamEnded
    error: Error
    opened: StreamOpened
    redirect: Redirect
    welcome: Welcome
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., opened: _Optional[_Union[StreamOpened, _Mapping]] = ..., credits: _Optional[_Union[Credits, _Mapping]] = ..., committed: _Optional[_Union[Committed, _Mapping]] = ..., ended: _Optional[_Union[StreamEnded, _Mapping]] = ..., redirect: _Optional[_Union[Redirect, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class StreamEnded(_message.Message):
    __slots__ = ["position", "stream"]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    position: int
    stream: str
    def __init__(self, stream: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class StreamOpened(_message.Message):
    __slots__ = ["committed", "resume_after", "stream"]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    committed: int
    resume_after: int
    stream: str
    def __init__(self, stream: _Optional[str] = ..., resume_after: _Optional[int] = ..., committed: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ["capabilities", "cluster_addresses", "initial_credits", "limits", "session_id", "version"]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CREDITS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    cluster_addresses: _containers.RepeatedScalarFieldContainer[str]
    initial_credits: int
    limits: Limits
    session_id: str
    version: ProtocolVersion
    def __init__(self, session_id: _Optional[str] = ..., version: _Optional[_Union[ProtocolVersion, _Mapping]] = ..., initial_credits: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., capabilities: _Optional[_Iterable[str]] = ..., cluster_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
