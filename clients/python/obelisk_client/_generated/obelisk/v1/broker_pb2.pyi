from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_POSITION_EARLIEST: _ClassVar[StartPosition]
    START_POSITION_LATEST: _ClassVar[StartPosition]

class AclResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_RESOURCE_TYPE_UNSPECIFIED: _ClassVar[AclResourceType]
    ACL_RESOURCE_TYPE_TOPIC: _ClassVar[AclResourceType]
    ACL_RESOURCE_TYPE_GROUP: _ClassVar[AclResourceType]
    ACL_RESOURCE_TYPE_CLUSTER: _ClassVar[AclResourceType]

class AclPattern(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_PATTERN_LITERAL: _ClassVar[AclPattern]
    ACL_PATTERN_PREFIX: _ClassVar[AclPattern]

class AclOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_OPERATION_UNSPECIFIED: _ClassVar[AclOperation]
    ACL_OPERATION_PRODUCE: _ClassVar[AclOperation]
    ACL_OPERATION_CONSUME: _ClassVar[AclOperation]
    ACL_OPERATION_DESCRIBE: _ClassVar[AclOperation]
    ACL_OPERATION_ADMIN: _ClassVar[AclOperation]

class AclEffect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_EFFECT_ALLOW: _ClassVar[AclEffect]
    ACL_EFFECT_DENY: _ClassVar[AclEffect]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_LZ4: _ClassVar[Compression]
    COMPRESSION_ZSTD: _ClassVar[Compression]

class SettleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLE_KIND_UNSPECIFIED: _ClassVar[SettleKind]
    SETTLE_KIND_ACCEPT: _ClassVar[SettleKind]
    SETTLE_KIND_RELEASE: _ClassVar[SettleKind]
    SETTLE_KIND_REJECT: _ClassVar[SettleKind]
    SETTLE_KIND_EXTEND: _ClassVar[SettleKind]
START_POSITION_EARLIEST: StartPosition
START_POSITION_LATEST: StartPosition
ACL_RESOURCE_TYPE_UNSPECIFIED: AclResourceType
ACL_RESOURCE_TYPE_TOPIC: AclResourceType
ACL_RESOURCE_TYPE_GROUP: AclResourceType
ACL_RESOURCE_TYPE_CLUSTER: AclResourceType
ACL_PATTERN_LITERAL: AclPattern
ACL_PATTERN_PREFIX: AclPattern
ACL_OPERATION_UNSPECIFIED: AclOperation
ACL_OPERATION_PRODUCE: AclOperation
ACL_OPERATION_CONSUME: AclOperation
ACL_OPERATION_DESCRIBE: AclOperation
ACL_OPERATION_ADMIN: AclOperation
ACL_EFFECT_ALLOW: AclEffect
ACL_EFFECT_DENY: AclEffect
COMPRESSION_NONE: Compression
COMPRESSION_LZ4: Compression
COMPRESSION_ZSTD: Compression
SETTLE_KIND_UNSPECIFIED: SettleKind
SETTLE_KIND_ACCEPT: SettleKind
SETTLE_KIND_RELEASE: SettleKind
SETTLE_KIND_REJECT: SettleKind
SETTLE_KIND_EXTEND: SettleKind

class ProducerRecord(_message.Message):
    __slots__ = ("key", "value", "headers", "timestamp_ns", "partition")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, bytes]
    timestamp_ns: int
    partition: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, bytes]] = ..., timestamp_ns: _Optional[int] = ..., partition: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("partition", "offset", "timestamp_ns", "key", "value", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    timestamp_ns: int
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, bytes]
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class RecordAck(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ProduceRequest(_message.Message):
    __slots__ = ("topic", "records", "idempotence")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    records: _containers.RepeatedCompositeFieldContainer[ProducerRecord]
    idempotence: IdempotentProduce
    def __init__(self, topic: _Optional[str] = ..., records: _Optional[_Iterable[_Union[ProducerRecord, _Mapping]]] = ..., idempotence: _Optional[_Union[IdempotentProduce, _Mapping]] = ...) -> None: ...

class ProduceResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[RecordAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[RecordAck, _Mapping]]] = ...) -> None: ...

class ProduceStreamRequest(_message.Message):
    __slots__ = ("sequence", "topic", "records", "idempotence")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    topic: str
    records: _containers.RepeatedCompositeFieldContainer[ProducerRecord]
    idempotence: IdempotentProduce
    def __init__(self, sequence: _Optional[int] = ..., topic: _Optional[str] = ..., records: _Optional[_Iterable[_Union[ProducerRecord, _Mapping]]] = ..., idempotence: _Optional[_Union[IdempotentProduce, _Mapping]] = ...) -> None: ...

class ProduceStreamAck(_message.Message):
    __slots__ = ("sequence", "acks", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    acks: _containers.RepeatedCompositeFieldContainer[RecordAck]
    error: Error
    def __init__(self, sequence: _Optional[int] = ..., acks: _Optional[_Iterable[_Union[RecordAck, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("topic", "group", "max_records", "max_bytes", "max_wait_ms", "start_if_new", "member_id", "member_epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    START_IF_NEW_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    group: str
    max_records: int
    max_bytes: int
    max_wait_ms: int
    start_if_new: StartPosition
    member_id: str
    member_epoch: int
    def __init__(self, topic: _Optional[str] = ..., group: _Optional[str] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., start_if_new: _Optional[_Union[StartPosition, str]] = ..., member_id: _Optional[str] = ..., member_epoch: _Optional[int] = ...) -> None: ...

class PollResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("topic", "partition", "offset", "max_records", "max_bytes", "max_wait_ms")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    max_records: int
    max_bytes: int
    max_wait_ms: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("records", "log_start_offset", "log_end_offset")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LOG_START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    log_start_offset: int
    log_end_offset: int
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., log_start_offset: _Optional[int] = ..., log_end_offset: _Optional[int] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("earliest", "latest", "offset", "timestamp_ns")
    EARLIEST_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    earliest: bool
    latest: bool
    offset: int
    timestamp_ns: int
    def __init__(self, earliest: _Optional[bool] = ..., latest: _Optional[bool] = ..., offset: _Optional[int] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("topic", "group", "start", "max_records_per_message", "member_id", "member_epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    group: str
    start: Position
    max_records_per_message: int
    member_id: str
    member_epoch: int
    def __init__(self, topic: _Optional[str] = ..., group: _Optional[str] = ..., start: _Optional[_Union[Position, _Mapping]] = ..., max_records_per_message: _Optional[int] = ..., member_id: _Optional[str] = ..., member_epoch: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class PartitionOffset(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("topic", "group", "offsets", "member_id", "member_epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    group: str
    offsets: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    member_id: str
    member_epoch: int
    def __init__(self, topic: _Optional[str] = ..., group: _Optional[str] = ..., offsets: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ..., member_id: _Optional[str] = ..., member_epoch: _Optional[int] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("topic", "group", "to")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    topic: str
    group: str
    to: Position
    def __init__(self, topic: _Optional[str] = ..., group: _Optional[str] = ..., to: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, offsets: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class TopicConfig(_message.Message):
    __slots__ = ("partitions", "retention_ms", "retention_bytes", "compression")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    retention_ms: int
    retention_bytes: int
    compression: Compression
    def __init__(self, partitions: _Optional[int] = ..., retention_ms: _Optional[int] = ..., retention_bytes: _Optional[int] = ..., compression: _Optional[_Union[Compression, str]] = ...) -> None: ...

class CreateTopicRequest(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: TopicConfig
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[TopicConfig, _Mapping]] = ...) -> None: ...

class CreateTopicResponse(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: TopicDescription
    def __init__(self, topic: _Optional[_Union[TopicDescription, _Mapping]] = ...) -> None: ...

class DeleteTopicRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTopicResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTopicsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTopicsResponse(_message.Message):
    __slots__ = ("topics",)
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicDescription]
    def __init__(self, topics: _Optional[_Iterable[_Union[TopicDescription, _Mapping]]] = ...) -> None: ...

class DescribeTopicRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DescribeTopicResponse(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: TopicDescription
    def __init__(self, topic: _Optional[_Union[TopicDescription, _Mapping]] = ...) -> None: ...

class TopicDescription(_message.Message):
    __slots__ = ("name", "config", "partitions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: TopicConfig
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionDescription]
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[TopicConfig, _Mapping]] = ..., partitions: _Optional[_Iterable[_Union[PartitionDescription, _Mapping]]] = ...) -> None: ...

class PartitionDescription(_message.Message):
    __slots__ = ("partition", "log_start_offset", "log_end_offset", "size_bytes", "segments", "read_only")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    LOG_START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    partition: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int
    segments: int
    read_only: bool
    def __init__(self, partition: _Optional[int] = ..., log_start_offset: _Optional[int] = ..., log_end_offset: _Optional[int] = ..., size_bytes: _Optional[int] = ..., segments: _Optional[int] = ..., read_only: _Optional[bool] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, groups: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class DescribeGroupResponse(_message.Message):
    __slots__ = ("group", "partitions", "state", "epoch", "members", "topics")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    group: str
    partitions: _containers.RepeatedCompositeFieldContainer[GroupPartition]
    state: str
    epoch: int
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[GroupPartition, _Mapping]]] = ..., state: _Optional[str] = ..., epoch: _Optional[int] = ..., members: _Optional[_Iterable[_Union[GroupMember, _Mapping]]] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...

class GroupPartition(_message.Message):
    __slots__ = ("topic", "partition", "committed_offset", "log_end_offset", "lag")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    committed_offset: int
    log_end_offset: int
    lag: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., committed_offset: _Optional[int] = ..., log_end_offset: _Optional[int] = ..., lag: _Optional[int] = ...) -> None: ...

class AclRule(_message.Message):
    __slots__ = ("principal", "resource_type", "name", "pattern", "operation", "effect")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    principal: str
    resource_type: AclResourceType
    name: str
    pattern: AclPattern
    operation: AclOperation
    effect: AclEffect
    def __init__(self, principal: _Optional[str] = ..., resource_type: _Optional[_Union[AclResourceType, str]] = ..., name: _Optional[str] = ..., pattern: _Optional[_Union[AclPattern, str]] = ..., operation: _Optional[_Union[AclOperation, str]] = ..., effect: _Optional[_Union[AclEffect, str]] = ...) -> None: ...

class ListAclsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAclsResponse(_message.Message):
    __slots__ = ("acls",)
    ACLS_FIELD_NUMBER: _ClassVar[int]
    acls: _containers.RepeatedCompositeFieldContainer[AclRule]
    def __init__(self, acls: _Optional[_Iterable[_Union[AclRule, _Mapping]]] = ...) -> None: ...

class AddAclRequest(_message.Message):
    __slots__ = ("acl",)
    ACL_FIELD_NUMBER: _ClassVar[int]
    acl: AclRule
    def __init__(self, acl: _Optional[_Union[AclRule, _Mapping]] = ...) -> None: ...

class AddAclResponse(_message.Message):
    __slots__ = ("added",)
    ADDED_FIELD_NUMBER: _ClassVar[int]
    added: bool
    def __init__(self, added: _Optional[bool] = ...) -> None: ...

class RemoveAclRequest(_message.Message):
    __slots__ = ("acl",)
    ACL_FIELD_NUMBER: _ClassVar[int]
    acl: AclRule
    def __init__(self, acl: _Optional[_Union[AclRule, _Mapping]] = ...) -> None: ...

class RemoveAclResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class TopicPartitions(_message.Message):
    __slots__ = ("topic", "partitions")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, topic: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ...) -> None: ...

class JoinGroupRequest(_message.Message):
    __slots__ = ("join", "heartbeat", "release", "leave")
    JOIN_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    join: JoinGroupJoin
    heartbeat: JoinGroupHeartbeat
    release: JoinGroupRelease
    leave: JoinGroupLeave
    def __init__(self, join: _Optional[_Union[JoinGroupJoin, _Mapping]] = ..., heartbeat: _Optional[_Union[JoinGroupHeartbeat, _Mapping]] = ..., release: _Optional[_Union[JoinGroupRelease, _Mapping]] = ..., leave: _Optional[_Union[JoinGroupLeave, _Mapping]] = ...) -> None: ...

class JoinGroupJoin(_message.Message):
    __slots__ = ("group", "topics", "instance_id", "client_id")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    group: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    instance_id: str
    client_id: str
    def __init__(self, group: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., instance_id: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class JoinGroupHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JoinGroupRelease(_message.Message):
    __slots__ = ("partitions",)
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    def __init__(self, partitions: _Optional[_Iterable[_Union[TopicPartitions, _Mapping]]] = ...) -> None: ...

class JoinGroupLeave(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JoinGroupResponse(_message.Message):
    __slots__ = ("member_id", "member_epoch", "group_epoch", "assigned", "revoke", "session_timeout_ms")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    GROUP_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    member_epoch: int
    group_epoch: int
    assigned: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    revoke: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    session_timeout_ms: int
    def __init__(self, member_id: _Optional[str] = ..., member_epoch: _Optional[int] = ..., group_epoch: _Optional[int] = ..., assigned: _Optional[_Iterable[_Union[TopicPartitions, _Mapping]]] = ..., revoke: _Optional[_Iterable[_Union[TopicPartitions, _Mapping]]] = ..., session_timeout_ms: _Optional[int] = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = ("member_id", "instance_id", "client_id", "address", "member_epoch", "partitions", "revoking", "lag", "connected", "kind", "joined_at_ns")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    REVOKING_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    instance_id: str
    client_id: str
    address: str
    member_epoch: int
    partitions: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    revoking: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    lag: int
    connected: bool
    kind: str
    joined_at_ns: int
    def __init__(self, member_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., client_id: _Optional[str] = ..., address: _Optional[str] = ..., member_epoch: _Optional[int] = ..., partitions: _Optional[_Iterable[_Union[TopicPartitions, _Mapping]]] = ..., revoking: _Optional[_Iterable[_Union[TopicPartitions, _Mapping]]] = ..., lag: _Optional[int] = ..., connected: _Optional[bool] = ..., kind: _Optional[str] = ..., joined_at_ns: _Optional[int] = ...) -> None: ...

class DeleteGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class DeleteGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InitProducerRequest(_message.Message):
    __slots__ = ("producer_id",)
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    producer_id: int
    def __init__(self, producer_id: _Optional[int] = ...) -> None: ...

class InitProducerResponse(_message.Message):
    __slots__ = ("producer_id", "producer_epoch")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    producer_id: int
    producer_epoch: int
    def __init__(self, producer_id: _Optional[int] = ..., producer_epoch: _Optional[int] = ...) -> None: ...

class IdempotentProduce(_message.Message):
    __slots__ = ("producer_id", "producer_epoch", "sequences")
    class SequencesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    producer_id: int
    producer_epoch: int
    sequences: _containers.ScalarMap[int, int]
    def __init__(self, producer_id: _Optional[int] = ..., producer_epoch: _Optional[int] = ..., sequences: _Optional[_Mapping[int, int]] = ...) -> None: ...

class SharedGroupSettings(_message.Message):
    __slots__ = ("ack_timeout_ms", "max_deliveries", "max_in_flight", "dead_letter_topic", "backoff_exponential", "backoff_base_ms", "backoff_max_ms")
    ACK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_EXPONENTIAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_BASE_MS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    ack_timeout_ms: int
    max_deliveries: int
    max_in_flight: int
    dead_letter_topic: str
    backoff_exponential: bool
    backoff_base_ms: int
    backoff_max_ms: int
    def __init__(self, ack_timeout_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., dead_letter_topic: _Optional[str] = ..., backoff_exponential: _Optional[bool] = ..., backoff_base_ms: _Optional[int] = ..., backoff_max_ms: _Optional[int] = ...) -> None: ...

class CreateSharedGroupRequest(_message.Message):
    __slots__ = ("group", "settings")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    group: str
    settings: SharedGroupSettings
    def __init__(self, group: _Optional[str] = ..., settings: _Optional[_Union[SharedGroupSettings, _Mapping]] = ...) -> None: ...

class CreateSharedGroupResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: SharedGroupSettings
    def __init__(self, settings: _Optional[_Union[SharedGroupSettings, _Mapping]] = ...) -> None: ...

class SharedPollRequest(_message.Message):
    __slots__ = ("group", "topic", "member_id", "max_records", "max_bytes", "max_wait_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    member_id: str
    max_records: int
    max_bytes: int
    max_wait_ms: int
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., member_id: _Optional[str] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class SharedDelivery(_message.Message):
    __slots__ = ("record", "deliveries", "lock_deadline_ns")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    LOCK_DEADLINE_NS_FIELD_NUMBER: _ClassVar[int]
    record: Record
    deliveries: int
    lock_deadline_ns: int
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., deliveries: _Optional[int] = ..., lock_deadline_ns: _Optional[int] = ...) -> None: ...

class SharedPollResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[SharedDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[SharedDelivery, _Mapping]]] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("partition", "offset", "kind", "delay_ms", "reason")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    kind: SettleKind
    delay_ms: int
    reason: str
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ..., kind: _Optional[_Union[SettleKind, str]] = ..., delay_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("group", "topic", "member_id", "settlements")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    member_id: str
    settlements: _containers.RepeatedCompositeFieldContainer[Settlement]
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., member_id: _Optional[str] = ..., settlements: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ...) -> None: ...

class SettleResult(_message.Message):
    __slots__ = ("partition", "offset", "error", "outcome")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    error: str
    outcome: str
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ..., error: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ...) -> None: ...

class DescribeSharedGroupRequest(_message.Message):
    __slots__ = ("group", "topic")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...

class SharedPartition(_message.Message):
    __slots__ = ("topic", "partition", "position", "next", "in_flight", "locked", "deliveries")
    class DeliveriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    position: int
    next: int
    in_flight: int
    locked: int
    deliveries: _containers.ScalarMap[int, int]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., position: _Optional[int] = ..., next: _Optional[int] = ..., in_flight: _Optional[int] = ..., locked: _Optional[int] = ..., deliveries: _Optional[_Mapping[int, int]] = ...) -> None: ...

class DescribeSharedGroupResponse(_message.Message):
    __slots__ = ("settings", "partitions")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    settings: SharedGroupSettings
    partitions: _containers.RepeatedCompositeFieldContainer[SharedPartition]
    def __init__(self, settings: _Optional[_Union[SharedGroupSettings, _Mapping]] = ..., partitions: _Optional[_Iterable[_Union[SharedPartition, _Mapping]]] = ...) -> None: ...

class SharedConsumeOpen(_message.Message):
    __slots__ = ("group", "topic", "member_id", "max_in_flight", "max_records", "max_bytes")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    member_id: str
    max_in_flight: int
    max_records: int
    max_bytes: int
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., member_id: _Optional[str] = ..., max_in_flight: _Optional[int] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class SharedConsumeSettle(_message.Message):
    __slots__ = ("id", "settlements")
    ID_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    settlements: _containers.RepeatedCompositeFieldContainer[Settlement]
    def __init__(self, id: _Optional[int] = ..., settlements: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ...) -> None: ...

class SharedConsumeCredit(_message.Message):
    __slots__ = ("max_in_flight",)
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    max_in_flight: int
    def __init__(self, max_in_flight: _Optional[int] = ...) -> None: ...

class SharedConsumeRequest(_message.Message):
    __slots__ = ("open", "settle", "credit")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    open: SharedConsumeOpen
    settle: SharedConsumeSettle
    credit: SharedConsumeCredit
    def __init__(self, open: _Optional[_Union[SharedConsumeOpen, _Mapping]] = ..., settle: _Optional[_Union[SharedConsumeSettle, _Mapping]] = ..., credit: _Optional[_Union[SharedConsumeCredit, _Mapping]] = ...) -> None: ...

class SharedConsumeSettled(_message.Message):
    __slots__ = ("id", "results")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    def __init__(self, id: _Optional[int] = ..., results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ...) -> None: ...

class SharedConsumeResponse(_message.Message):
    __slots__ = ("deliveries", "settled")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    deliveries: SharedPollResponse
    settled: SharedConsumeSettled
    def __init__(self, deliveries: _Optional[_Union[SharedPollResponse, _Mapping]] = ..., settled: _Optional[_Union[SharedConsumeSettled, _Mapping]] = ...) -> None: ...

class MetadataRequest(_message.Message):
    __slots__ = ("topics",)
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topics: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterNode(_message.Message):
    __slots__ = ("node_id", "grpc_addr", "cluster_addr", "voter")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    grpc_addr: str
    cluster_addr: str
    voter: bool
    def __init__(self, node_id: _Optional[int] = ..., grpc_addr: _Optional[str] = ..., cluster_addr: _Optional[str] = ..., voter: _Optional[bool] = ...) -> None: ...

class PartitionPlacement(_message.Message):
    __slots__ = ("topic", "partition", "leader", "replicas")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    leader: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., leader: _Optional[int] = ..., replicas: _Optional[_Iterable[int]] = ...) -> None: ...

class MetadataResponse(_message.Message):
    __slots__ = ("node_id", "leader", "term", "applied_index", "nodes", "partitions")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    leader: int
    term: int
    applied_index: int
    nodes: _containers.RepeatedCompositeFieldContainer[ClusterNode]
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionPlacement]
    def __init__(self, node_id: _Optional[int] = ..., leader: _Optional[int] = ..., term: _Optional[int] = ..., applied_index: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[ClusterNode, _Mapping]]] = ..., partitions: _Optional[_Iterable[_Union[PartitionPlacement, _Mapping]]] = ...) -> None: ...
