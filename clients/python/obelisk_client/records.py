"""Plain data types handed to and returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Union

from ._generated.obelisk.v1 import broker_pb2 as pb

Bytes = Union[bytes, bytearray, memoryview, str]


def to_bytes(value: Optional[Bytes]) -> bytes:
    """``str`` is encoded as UTF-8; ``None`` is empty."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


@dataclass(frozen=True)
class Ack:
    """Where an acknowledged record was stored."""

    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """A stored record, as read back from the broker."""

    partition: int
    offset: int
    timestamp_ns: int
    key: bytes
    value: bytes
    headers: Dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, r: "pb.Record") -> "Record":
        return cls(
            partition=r.partition,
            offset=r.offset,
            timestamp_ns=r.timestamp_ns,
            key=bytes(r.key),
            value=bytes(r.value),
            headers={k: bytes(v) for k, v in r.headers.items()},
        )


PositionLike = Union[str, int, "pb.Position", None]


def earliest() -> "pb.Position":
    """The first record still stored in each partition."""
    return pb.Position(earliest=True)


def latest() -> "pb.Position":
    """The end of each partition: only records produced from now on."""
    return pb.Position(latest=True)


def at_offset(offset: int) -> "pb.Position":
    """The same offset in every partition (clamped to each partition's range)."""
    return pb.Position(offset=offset)


def at_timestamp(timestamp_ns: int) -> "pb.Position":
    """The first record at or after this Unix time in nanoseconds."""
    return pb.Position(timestamp_ns=timestamp_ns)


def to_position(start: PositionLike) -> Optional["pb.Position"]:
    """Accepts ``None``, ``"earliest"``, ``"latest"``, an ``int`` offset or a ``pb.Position``."""
    if start is None or isinstance(start, pb.Position):
        return start
    if start == "earliest":
        return earliest()
    if start == "latest":
        return latest()
    if isinstance(start, int) and not isinstance(start, bool):
        return at_offset(start)
    raise ValueError(f"not a position: {start!r} (use 'earliest', 'latest', an offset or at_timestamp())")
