"""The GroupConsumer: a member of a consumer group (a JoinGroup stream) that polls only the
partitions the server assigns it.

- ``on_assigned`` / ``on_revoked`` / ``on_lost`` callbacks get lists of ``(topic, partition)``.
- A revoked partition is committed (the positions after the records already returned by
  :meth:`GroupConsumer.poll`: records returned by one poll count as processed at the next call)
  and only then released, so its next owner starts where this member stopped.
- A fenced call (FAILED_PRECONDITION: removed after the session timeout, or replaced) or an ended
  stream makes it rejoin: ``on_lost`` for what it held, then ``on_assigned``.
- A long poll is cut short when the assignment changes, so a revocation is answered at once.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from .client import call
from .errors import ObeliskError
from .records import Record

Partition = Tuple[str, int]
Callback = Optional[Callable[[List[Partition]], None]]


def _flatten(tps: Iterable[Any]) -> Set[Partition]:
    return {(t.topic, p) for t in tps for p in t.partitions}


def _grouped(parts: Iterable[Partition]) -> List["pb.TopicPartitions"]:
    by: Dict[str, List[int]] = {}
    for t, p in sorted(parts):
        by.setdefault(t, []).append(p)
    return [pb.TopicPartitions(topic=t, partitions=ps) for t, ps in by.items()]


class _Session:
    """One JoinGroup stream: requests from a queue (heartbeats when idle), responses read by a
    thread into ``latest``; ``changed`` is set on every response and when the stream ends."""

    def __init__(self, stub: Any, join: "pb.JoinGroupJoin"):
        self._q: "queue.Queue[Optional[pb.JoinGroupRequest]]" = queue.Queue()
        self._q.put(pb.JoinGroupRequest(join=join))
        self._beat = 1.0
        self.changed = threading.Event()
        self.ended: Optional[str] = None
        self._call = stub.JoinGroup(self._requests())
        try:
            first = next(self._call)
        except grpc.RpcError as e:
            raise ObeliskError.from_rpc(e) from None
        self.latest = first
        self.member_id: str = first.member_id
        self.epoch: int = first.member_epoch
        self._beat = max(first.session_timeout_ms, 300) / 3000
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self):
        while True:
            try:
                item = self._q.get(timeout=self._beat)
            except queue.Empty:
                item = pb.JoinGroupRequest(heartbeat=pb.JoinGroupHeartbeat())
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for msg in self._call:
                self.latest = msg
                self.changed.set()
            self.ended = "the broker ended the membership"
        except grpc.RpcError as e:
            self.ended = e.details() or str(e.code())
        self.changed.set()

    def send(self, req: "pb.JoinGroupRequest") -> None:
        self._q.put(req)

    def close(self) -> None:
        self._q.put(None)
        self._call.cancel()


class GroupConsumer:
    """A member of ``group`` consuming ``topics``; the server assigns its partitions.

    Args:
        client: a :class:`~obelisk_client.Client`.
        group, topics: the group and the topics it consumes.
        instance_id: static membership: rejoining with it within the session timeout gets the
            same partitions back without a rebalance.
        on_assigned, on_revoked, on_lost: callbacks with lists of ``(topic, partition)``;
            ``on_revoked`` runs before the consumer commits and releases them.
    """

    def __init__(self, client: Any, group: str, topics: Iterable[str], *,
                 instance_id: str = "", client_id: str = "obelisk-python",
                 max_records: int = 500, max_wait_ms: int = 1000,
                 on_assigned: Callback = None, on_revoked: Callback = None,
                 on_lost: Callback = None):
        self._client = client
        self.group = group
        self.topics = list(topics)
        self.max_records = max_records
        self.max_wait_ms = max_wait_ms
        self._join = pb.JoinGroupJoin(group=group, topics=self.topics, instance_id=instance_id,
                                      client_id=client_id)
        self._on_assigned, self._on_revoked, self._on_lost = on_assigned, on_revoked, on_lost
        self._assigned: Set[Partition] = set()
        self._delivered: Dict[Partition, int] = {}
        self._committed: Dict[Partition, int] = {}
        self._next_topic = 0
        self._session: Optional[_Session] = _Session(client.stub, self._join)
        self._reconcile()

    @property
    def member_id(self) -> str:
        return self._session.member_id if self._session else ""

    @property
    def member_epoch(self) -> int:
        return self._session.epoch if self._session else 0

    @property
    def assignment(self) -> List[Partition]:
        """Partitions this member consumes now, sorted."""
        return sorted(self._assigned)

    def _reconcile(self) -> None:
        s = self._session
        if s is None or s.ended is not None:
            lost = sorted(self._assigned)
            self._assigned.clear()
            for p in lost:
                self._delivered.pop(p, None)
            if lost and self._on_lost:
                self._on_lost(lost)
            if s is not None:
                s.close()
            self._session = None
            self._session = _Session(self._client.stub, self._join)
            return self._reconcile()
        s.changed.clear()
        resp = s.latest
        revoke = _flatten(resp.revoke)
        mine = sorted(revoke & self._assigned)
        if mine:
            if self._on_revoked:
                self._on_revoked(mine)
            try:
                self._commit_partitions(mine)
            except ObeliskError:
                # Released anyway: the next owner reads again from the last commit (at least
                # once), where holding on would stall the partition.
                pass
            for p in mine:
                self._assigned.discard(p)
                self._delivered.pop(p, None)
        if revoke:
            s.send(pb.JoinGroupRequest(release=pb.JoinGroupRelease(partitions=_grouped(revoke))))
        now = _flatten(resp.assigned)
        gone = sorted(self._assigned - now)
        new = sorted(now - self._assigned)
        for p in gone:
            self._assigned.discard(p)
            self._delivered.pop(p, None)
        if gone and self._on_lost:
            self._on_lost(gone)
        if new:
            self._assigned.update(new)
            if self._on_assigned:
                self._on_assigned(new)

    def poll(self) -> List[Record]:
        """Records from this member's partitions (long poll up to ``max_wait_ms``, cut short by
        an assignment change). The records of the previous call count as processed."""
        self._reconcile()
        s = self._session
        wait = self.max_wait_ms / 1000
        if s is None:
            return []
        topics = sorted({t for t, _ in self._assigned})
        if not topics:
            s.changed.wait(wait)
            return []
        self._next_topic += 1
        topic = topics[self._next_topic % len(topics)]
        req = pb.PollRequest(topic=topic, group=self.group, max_records=self.max_records,
                             max_wait_ms=0 if len(topics) > 1 else self.max_wait_ms,
                             member_id=s.member_id, member_epoch=s.epoch)
        fut = self._client.stub.Poll.future(req, timeout=self._client.timeout + wait)
        fut.add_done_callback(lambda _f: s.changed.set())
        s.changed.wait(self._client.timeout + wait)
        if not fut.done():
            fut.cancel()
            return []
        try:
            resp = fut.result()
        except grpc.FutureCancelledError:
            return []
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                s.ended = e.details()
                return []
            raise ObeliskError.from_rpc(e) from None
        records = [Record.from_pb(r) for r in resp.records]
        for r in records:
            key = (topic, r.partition)
            self._delivered[key] = max(self._delivered.get(key, 0), r.offset + 1)
        return records

    def commit(self) -> None:
        """Commits the positions after every record returned so far. A fenced commit raises
        ObeliskError(FAILED_PRECONDITION), changes nothing, and the next poll rejoins."""
        try:
            self._commit_partitions(list(self._delivered))
        except ObeliskError as e:
            if e.code == grpc.StatusCode.FAILED_PRECONDITION and self._session is not None:
                self._session.ended = e.message
            raise

    def _commit_partitions(self, parts: Iterable[Partition]) -> None:
        s = self._session
        if s is None:
            return
        by_topic: Dict[str, List["pb.PartitionOffset"]] = {}
        done: Dict[Partition, int] = {}
        for p in parts:
            nxt = self._delivered.get(p)
            if nxt is None or self._committed.get(p) == nxt:
                continue
            by_topic.setdefault(p[0], []).append(pb.PartitionOffset(partition=p[1], offset=nxt))
            done[p] = nxt
        for topic, offsets in by_topic.items():
            call(self._client.stub.Commit,
                 pb.CommitRequest(topic=topic, group=self.group, offsets=offsets,
                                  member_id=s.member_id, member_epoch=s.epoch),
                 timeout=self._client.timeout)
        self._committed.update(done)

    def close(self) -> None:
        """Commits what was returned and leaves the group: its partitions move at once."""
        try:
            self.commit()
        finally:
            s, self._session = self._session, None
            if s is not None:
                s.send(pb.JoinGroupRequest(leave=pb.JoinGroupLeave()))
                # The server ends the stream once the member is gone.
                deadline = time.monotonic() + 5.0
                while s.ended is None and time.monotonic() < deadline:
                    s.changed.wait(0.1)
                    s.changed.clear()
                s.close()

    def __enter__(self) -> "GroupConsumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
