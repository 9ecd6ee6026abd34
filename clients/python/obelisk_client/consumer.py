"""The Consumer: poll (or subscribe to) a topic in a group, and commit what was processed."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from .client import call
from .errors import ObeliskError
from .records import PositionLike, Record, to_position


class Consumer:
    """Reads one topic as one consumer group.

    Delivery is at-least-once: :meth:`poll` does not move the group's committed offsets, so poll
    again without :meth:`commit` and you get the same records. Commit after processing.

    Args:
        client: a :class:`~obelisk_client.Client`.
        topic, group: names of 1-249 bytes of ``[A-Za-z0-9._-]``.
        max_records: per poll (0: the server's default, 500).
        max_wait_ms: how long a poll waits for records when none are available.
        start_if_new: ``"earliest"`` or ``"latest"``: where a group with no committed offset starts.
    """

    def __init__(self, client: Any, topic: str, group: str, *, max_records: int = 500,
                 max_wait_ms: int = 1000, start_if_new: str = "earliest"):
        if start_if_new not in ("earliest", "latest"):
            raise ValueError("start_if_new must be 'earliest' or 'latest'")
        self._client = client
        self.topic = topic
        self.group = group
        self.max_records = max_records
        self.max_wait_ms = max_wait_ms
        self._start_if_new = (pb.START_POSITION_LATEST if start_if_new == "latest"
                              else pb.START_POSITION_EARLIEST)

    def poll(self, max_records: Optional[int] = None, max_wait_ms: Optional[int] = None,
             max_bytes: int = 0) -> List[Record]:
        """Records from the group's committed offsets, ordered by offset within each partition.

        Waits up to ``max_wait_ms`` when none are available; returns ``[]`` if none came.
        """
        wait_ms = self.max_wait_ms if max_wait_ms is None else max_wait_ms
        req = pb.PollRequest(
            topic=self.topic, group=self.group,
            max_records=self.max_records if max_records is None else max_records,
            max_bytes=max_bytes, max_wait_ms=wait_ms, start_if_new=self._start_if_new)
        resp = call(self._client.stub.Poll, req, timeout=self._client.timeout + wait_ms / 1000)
        return [Record.from_pb(r) for r in resp.records]

    def commit(self, records: Iterable[Record]) -> Dict[int, int]:
        """Commits past ``records``: for each partition, the offset after its highest record.

        Returns the offsets committed (partition -> next offset to read). No-op when empty.
        """
        nxt: Dict[int, int] = {}
        for r in records:
            nxt[r.partition] = max(nxt.get(r.partition, 0), r.offset + 1)
        if nxt:
            self.commit_offsets(nxt)
        return nxt

    def commit_offsets(self, offsets: Mapping[int, int]) -> None:
        """Stores ``partition -> next offset to read`` for the group, durably."""
        req = pb.CommitRequest(topic=self.topic, group=self.group, offsets=[
            pb.PartitionOffset(partition=p, offset=o) for p, o in sorted(offsets.items())])
        self._client.unary("Commit", req)

    def reset(self, to: PositionLike) -> Dict[int, int]:
        """Moves the group's committed offsets; ``to`` as in :meth:`subscribe`. Returns them."""
        pos = to_position(to)
        if pos is None:
            raise ValueError("reset needs a position")
        resp = self._client.unary("Reset",
                                  pb.ResetRequest(topic=self.topic, group=self.group, to=pos))
        return {o.partition: o.offset for o in resp.offsets}

    def subscribe(self, start: PositionLike = None, *, max_records_per_message: int = 0,
                  timeout: Optional[float] = None) -> "Subscription":
        """A live stream of records from the group's committed offsets, or from ``start``
        (``"earliest"``, ``"latest"``, an offset, or :func:`~obelisk_client.at_timestamp`).

        Subscribing does not commit: call :meth:`commit` with what you processed. ``timeout``
        (seconds) bounds the whole stream: past it, iteration raises ObeliskError(DEADLINE_EXCEEDED).
        """
        req = pb.SubscribeRequest(topic=self.topic, group=self.group, start=to_position(start),
                                  max_records_per_message=max_records_per_message)
        return Subscription(self._client.stub.Subscribe(req, timeout=timeout))

    def __iter__(self) -> Iterator[Record]:
        """Iterates over :meth:`subscribe` from the group's position; the stream is cancelled
        when the loop is left."""
        with self.subscribe() as sub:
            yield from sub


class Subscription:
    """An iterator over the records of a Subscribe stream. :meth:`cancel` (or leaving a ``with``
    block) ends it; iteration then stops. Errors raise :class:`ObeliskError`."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._buffer: List[Record] = []
        self._cancelled = False

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Record:
        while not self._buffer:
            try:
                msg = next(self._stream)
            except StopIteration:
                raise
            except grpc.RpcError as e:
                if self._cancelled and e.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise ObeliskError.from_rpc(e) from None
            self._buffer = [Record.from_pb(r) for r in reversed(msg.records)]
        return self._buffer.pop()

    def cancel(self) -> None:
        """Ends the stream."""
        self._cancelled = True
        self._stream.cancel()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()
