"""The SharedConsumer (shared groups, issue 14): a worker of a shared group takes records, each
locked to it, and settles each one (accept, release, reject, extend) in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from ._generated.obelisk.v1 import broker_pb2 as pb
from .client import call
from .records import Record


@dataclass(frozen=True)
class Delivery:
    """A handed-out record: locked to this worker until ``lock_deadline_ns`` (Unix ns)."""

    record: Record
    #: 1 on the first hand-out.
    deliveries: int
    lock_deadline_ns: int


@dataclass(frozen=True)
class SettleResult:
    partition: int
    offset: int
    #: "done", "available", "extended" or "dead_lettered"; empty when refused.
    outcome: str
    #: Why it was refused (its lock expired, it is another worker's, ...); empty when settled.
    error: str


class SharedConsumer:
    """A worker of the shared group ``group`` on ``topic``.

    :meth:`accept`, :meth:`release`, :meth:`reject` and :meth:`extend` queue a settlement;
    :meth:`flush` sends them as one Settle (and :meth:`poll` flushes before it takes more). When
    :meth:`flush` returns, every outcome it reports is durable on the broker.

    Args:
        client: a :class:`~obelisk_client.Client`.
        topic, group: the topic and the shared group (created with the defaults on first use).
        member_id: any stable id of this worker (default: a random one).
        max_records: per poll; max_wait_ms: how long a poll waits when nothing is available.
    """

    def __init__(self, client: Any, topic: str, group: str, *, member_id: Optional[str] = None,
                 max_records: int = 100, max_wait_ms: int = 1000):
        import uuid
        self._client = client
        self.topic = topic
        self.group = group
        self.member_id = member_id or f"python-{uuid.uuid4().hex[:12]}"
        self.max_records = max_records
        self.max_wait_ms = max_wait_ms
        self._pending: List[pb.Settlement] = []

    def poll(self, max_records: Optional[int] = None,
             max_wait_ms: Optional[int] = None) -> List[Delivery]:
        """Sends the pending settlements, then takes records (waits up to ``max_wait_ms``)."""
        self.flush()
        wait_ms = self.max_wait_ms if max_wait_ms is None else max_wait_ms
        req = pb.SharedPollRequest(
            group=self.group, topic=self.topic, member_id=self.member_id,
            max_records=self.max_records if max_records is None else max_records,
            max_wait_ms=wait_ms)
        resp = call(self._client.stub.SharedPoll, req,
                    timeout=self._client.timeout + wait_ms / 1000)
        return [Delivery(Record.from_pb(d.record), d.deliveries, d.lock_deadline_ns)
                for d in resp.deliveries]

    def _push(self, d: Delivery, kind: int, delay_ms: Optional[int] = None,
              reason: str = "") -> None:
        s = pb.Settlement(partition=d.record.partition, offset=d.record.offset, kind=kind,
                          reason=reason)
        if delay_ms is not None:
            s.delay_ms = delay_ms
        self._pending.append(s)

    def accept(self, d: Delivery) -> None:
        """Done with the record."""
        self._push(d, pb.SETTLE_KIND_ACCEPT)

    def release(self, d: Delivery, delay_ms: Optional[int] = None, reason: str = "") -> None:
        """Gives the record back, available after ``delay_ms`` (None: the group's backoff)."""
        self._push(d, pb.SETTLE_KIND_RELEASE, delay_ms, reason)

    def reject(self, d: Delivery, reason: str = "") -> None:
        """Sends the record to the group's dead-letter topic."""
        self._push(d, pb.SETTLE_KIND_REJECT, None, reason)

    def extend(self, d: Delivery) -> None:
        """Keeps the record locked for another ack timeout."""
        self._push(d, pb.SETTLE_KIND_EXTEND)

    def flush(self) -> List[SettleResult]:
        """Sends the pending settlements as one batch; returns each one's result. On an error
        they stay pending (settle them again: one already stored is then refused as done)."""
        if not self._pending:
            return []
        req = pb.SettleRequest(group=self.group, topic=self.topic, member_id=self.member_id,
                               settlements=self._pending)
        resp = call(self._client.stub.Settle, req, timeout=self._client.timeout)
        self._pending = []
        return [SettleResult(r.partition, r.offset, r.outcome, r.error) for r in resp.results]
