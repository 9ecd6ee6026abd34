from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RaftPayload(_message.Message):
    __slots__ = ("group", "payload")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    group: int
    payload: bytes
    def __init__(self, group: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "grpc_addr", "http_addr", "legacy_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDR_FIELD_NUMBER: _ClassVar[int]
    LEGACY_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    grpc_addr: str
    http_addr: str
    legacy_addr: str
    def __init__(self, node_id: _Optional[int] = ..., grpc_addr: _Optional[str] = ..., http_addr: _Optional[str] = ..., legacy_addr: _Optional[str] = ...) -> None: ...
