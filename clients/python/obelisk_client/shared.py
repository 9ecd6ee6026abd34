"""The SharedConsumer (shared groups, issue 14): a worker of a shared group takes records, each
locked to it, and settles each one (accept, release, reject, extend) in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from .client import call
from .errors import ObeliskError
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


class _Settling:
    """Queues settlements for the next batch (``flush``); shared by both kinds of member."""

    _pending: List[Any]

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


class SharedConsumer(_Settling):
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


class SharedStream(_Settling):
    """A worker of the shared group ``group`` on one SharedConsume stream: the broker pushes
    records while fewer than ``max_in_flight`` handed out on the stream are unsettled (no polling
    loop), and answers each settle batch on the same stream.

    :meth:`deliveries` returns the next records pushed; :meth:`accept`, :meth:`release`,
    :meth:`reject` and :meth:`extend` queue a settlement; :meth:`settle` sends them as one batch
    and waits for the results (durable when it returns). :meth:`close` ends the stream and
    returns the records pushed but not read (still locked to the worker); :meth:`abort` drops it
    like a crash (its locks stay until they expire).
    """

    def __init__(self, client: Any, topic: str, group: str, *, member_id: Optional[str] = None,
                 max_in_flight: int = 1000, max_records: int = 0):
        import queue
        import threading
        import uuid
        self.topic = topic
        self.group = group
        self.member_id = (f"python-{uuid.uuid4().hex[:12]}" if member_id is None
                          else member_id)
        self._requests: "queue.Queue[Optional[pb.SharedConsumeRequest]]" = queue.Queue()
        self._events: "queue.Queue[tuple]" = queue.Queue()
        self._pending: List[pb.Settlement] = []
        self._early: List[tuple] = []
        self._next_id = 1
        self._requests.put(pb.SharedConsumeRequest(open=pb.SharedConsumeOpen(
            group=group, topic=topic, member_id=self.member_id, max_in_flight=max_in_flight,
            max_records=max_records)))
        self._call = client.stub.SharedConsume(self._outgoing())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _outgoing(self):
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for msg in self._call:
                kind = msg.WhichOneof("kind")
                if kind == "deliveries":
                    ds = [Delivery(Record.from_pb(d.record), d.deliveries, d.lock_deadline_ns)
                          for d in msg.deliveries.deliveries]
                    self._events.put(("deliveries", ds))
                elif kind == "settled":
                    rs = [SettleResult(r.partition, r.offset, r.outcome, r.error)
                          for r in msg.settled.results]
                    self._events.put(("settled", (msg.settled.id, rs)))
            self._events.put(("end", None))
        except grpc.RpcError as e:
            self._events.put(("error", e))

    def _take(self, timeout: Optional[float]) -> Optional[tuple]:
        import queue
        try:
            ev = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev[0] == "error":
            self._events.put(ev)
            raise ObeliskError.from_rpc(ev[1]) from None
        if ev[0] == "end":
            self._events.put(ev)
        return ev

    def deliveries(self, timeout: Optional[float] = None) -> List[Delivery]:
        """The next records pushed (waits up to ``timeout`` seconds, None: until some come);
        ``[]`` when none came in time or the stream ended. Settle answers read meanwhile are
        dropped."""
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._early:
                return self._early.pop(0)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ev = self._take(left)
            if ev is None or ev[0] == "end":
                return []
            if ev[0] == "deliveries":
                return ev[1]

    def flush(self) -> Optional[int]:
        """Sends the queued settlements as one batch without waiting; returns its id."""
        if not self._pending:
            return None
        sid = self._next_id
        self._next_id += 1
        self._requests.put(pb.SharedConsumeRequest(settle=pb.SharedConsumeSettle(
            id=sid, settlements=self._pending)))
        self._pending = []
        return sid

    def settle(self, timeout: Optional[float] = 10.0) -> List[SettleResult]:
        """Sends the queued settlements and waits for their results (records pushed meanwhile
        are kept for :meth:`deliveries`)."""
        want = self.flush()
        if want is None:
            return []
        while True:
            ev = self._take(timeout)
            if ev is None:
                raise TimeoutError(f"no answer to settle batch {want} within {timeout} s")
            if ev[0] == "end":
                raise ObeliskError(grpc.StatusCode.UNAVAILABLE,
                                   "the stream ended before the settle's answer")
            if ev[0] == "settled" and ev[1][0] == want:
                return ev[1][1]
            if ev[0] == "deliveries":
                self._early.append(ev[1])

    def set_credit(self, max_in_flight: int) -> None:
        """Records unsettled on this stream at most (0 pauses the hand-out)."""
        self._requests.put(pb.SharedConsumeRequest(
            credit=pb.SharedConsumeCredit(max_in_flight=max_in_flight)))

    def close(self) -> List[Delivery]:
        """Ends the stream; returns the records pushed and not read (still locked to the worker:
        release them with a :class:`SharedConsumer` of the same ``member_id``)."""
        self._requests.put(None)
        left = [d for ds in self._early for d in ds]
        self._early = []
        while True:
            ev = self._take(None)
            if ev[0] == "end":
                return left
            if ev[0] == "deliveries":
                left.extend(ev[1])

    def abort(self) -> None:
        """Drops the stream like a crashed worker: nothing is settled, its locks stay until they
        expire."""
        self._call.cancel()
        self._requests.put(None)
