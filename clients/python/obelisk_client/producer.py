"""The Producer: records are batched (by count or linger) onto one ProduceStream; each ``send``
returns a future that resolves to the record's :class:`Ack` once the broker stored it durably.

By default the producer is idempotent (as the Rust producer): it takes a producer id and epoch from
``InitProducer``, routes every record to its partition itself (the broker's rule: an explicit
partition, else FNV-1a 32 of a non-empty key modulo the partition count, else round-robin; the
count comes from ``DescribeTopic``), and numbers each partition's records. When the stream breaks
(UNAVAILABLE, a cut connection) or an ack does not come within ``request_timeout``, it reconnects
and sends every unacknowledged batch again, unchanged: the broker answers a retry of a batch it
already stored with the original offsets, so a record is stored once however often it is sent.
A batch to a topic that does not exist yet is sent without idempotence (it creates the topic);
the next batches are idempotent. A broken stream with such a batch in flight, or of a producer
made with ``idempotent=False``, fails the records in flight, as retrying them could store them
twice.

Threads: gRPC pulls batches from :meth:`Producer._requests` on its own thread (that generator is the
batcher, and watches the ack timeout), and a stream thread reads acks, matches them to batches
(acks on a stream arrive in send order), and reconnects when the stream breaks.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future, wait
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from .client import call
from .errors import ObeliskError
from .records import Ack, Bytes, to_bytes

_Pending = Tuple[str, "pb.ProducerRecord", Future]

#: Codes after which a batch may or may not have been stored, so an idempotent one is sent again.
RETRIABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.INTERNAL})


def fnv1a_32(data: bytes) -> int:
    """The broker's key hash (FNV-1a, 32 bit)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _i32(n: int) -> int:
    """``n`` wrapped to a signed 32-bit integer (sequence numbers wrap as the broker's do)."""
    return ((n + (1 << 31)) % (1 << 32)) - (1 << 31)


class _Sent:
    """A batch sent and not yet acknowledged: the request as sent (a retry sends it unchanged)."""

    __slots__ = ("req", "futures", "sent_at")

    def __init__(self, req: "pb.ProduceStreamRequest", futures: List[Future]):
        self.req = req
        self.futures = futures
        self.sent_at = time.monotonic()


class Producer:
    """A batching producer over one ``ProduceStream``, idempotent by default.

    Args:
        client: a :class:`~obelisk_client.Client`.
        batch_records: a batch is sent once it holds this many records...
        linger_ms: ...or once its first record has waited this long.
        max_in_flight: batches sent and not yet acknowledged; past this, batches wait.
        max_buffered: records queued and not yet sent; past this, :meth:`send` blocks.
        idempotent: take a producer id and number records, so that batches are retried safely
            (the default). ``False``: a broken stream fails the records in flight.
        request_timeout: seconds the oldest unacknowledged batch may wait before the stream
            counts as broken (and is reconnected).
        max_retries: reconnections in a row (without an ack between) before the records in
            flight fail.

    A batch holds records of one topic. Records sent through one producer are stored in send order
    per partition. Use as a context manager (closes, which flushes), or call :meth:`close`.
    Raises :class:`ObeliskError` if the broker refuses a producer id.
    """

    def __init__(self, client: Any, *, batch_records: int = 500, linger_ms: float = 2.0,
                 max_in_flight: int = 16, max_buffered: int = 10_000, idempotent: bool = True,
                 request_timeout: float = 30.0, max_retries: int = 10):
        self._client = client
        self._batch_records = max(1, batch_records)
        self._linger = max(0.0, linger_ms) / 1000.0
        self._max_in_flight = max(1, max_in_flight)
        self._max_buffered = max(1, max_buffered)
        self._request_timeout = max(0.001, request_timeout)
        self._max_retries = max(0, max_retries)
        self._cond = threading.Condition()
        self._pending: Deque[Tuple[float, _Pending]] = collections.deque()
        self._waiting: Deque[_Sent] = collections.deque()
        self._unresolved: set = set()
        self._enqueued = 0  # records ever queued
        self._taken = 0  # records ever put into a batch
        self._flush_upto = 0  # records queued before the last flush(): sent without lingering
        self._closing = False
        self._error: Optional[ObeliskError] = None
        # Idempotence: identity, next sequence per (topic, partition), partition counts.
        self._producer_id: Optional[int] = None
        self._producer_epoch: Optional[int] = None
        self._sequences: Dict[Tuple[str, int], int] = {}
        self._reinit = False  # a batch failed at the broker: the next one starts a new epoch
        self._partitions: Dict[str, int] = {}
        self._round_robin = 0
        if idempotent:
            grant = call(client.stub.InitProducer, pb.InitProducerRequest(),
                         timeout=client.timeout)
            self._producer_id, self._producer_epoch = grant.producer_id, grant.producer_epoch
        self._sequence = 0  # ProduceStreamRequest.sequence, echoed in acks
        self._generation = 0  # the stream in use; a generator of an older one stops
        self._call: Any = None
        self._timed_out = False
        self._cancelled = False
        self._stream = threading.Thread(target=self._run, name="obelisk-producer-stream",
                                        daemon=True)
        self._stream.start()

    @property
    def idempotent(self) -> bool:
        """Whether batches carry a producer id and sequences (and are retried)."""
        return self._producer_id is not None

    @property
    def producer_id(self) -> Optional[int]:
        """The id ``InitProducer`` handed out (None when not idempotent)."""
        return self._producer_id

    @property
    def producer_epoch(self) -> Optional[int]:
        """The current epoch of :attr:`producer_id` (a new one after a batch failed)."""
        return self._producer_epoch

    def send(self, topic: str, value: Bytes = b"", *, key: Bytes = b"",
             headers: Optional[Mapping[str, Bytes]] = None, timestamp_ns: Optional[int] = None,
             partition: Optional[int] = None) -> "Future[Ack]":
        """Queues one record and returns a future of its :class:`Ack` (partition, offset).

        The future fails with :class:`ObeliskError` if the broker refuses the record's batch or
        the stream breaks (for good: an idempotent producer first retries). ``str``
        keys/values/header values are encoded as UTF-8. ``timestamp_ns`` unset: the broker
        stamps the arrival time. ``partition`` unset: chosen from the key (FNV-1a), or
        round-robin for an empty key.
        """
        record = pb.ProducerRecord(
            key=to_bytes(key), value=to_bytes(value),
            headers={k: to_bytes(v) for k, v in (headers or {}).items()},
            timestamp_ns=timestamp_ns, partition=partition)
        fut: Future = Future()
        fut.set_running_or_notify_cancel()  # an ack cannot be cancelled
        with self._cond:
            while len(self._pending) >= self._max_buffered and not self._stopped():
                self._cond.wait()
            if self._stopped():
                raise self._error or ObeliskError(grpc.StatusCode.CANCELLED, "the producer is closed")
            self._pending.append((time.monotonic(), (topic, record, fut)))
            self._unresolved.add(fut)
            self._enqueued += 1
            self._cond.notify_all()
        fut.add_done_callback(self._forget)
        return fut

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued now (without lingering) and waits for all outstanding acks.

        Raises ``TimeoutError`` if they do not all arrive within ``timeout`` seconds. Failed
        records are not raised here: their futures hold the errors.
        """
        with self._cond:
            self._flush_upto = self._enqueued
            outstanding = list(self._unresolved)
            self._cond.notify_all()
        _done, not_done = wait(outstanding, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} records not acknowledged within {timeout}s")

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, then ends the stream. Further :meth:`send` calls raise ObeliskError."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self.flush(timeout)
        finally:
            self._stream.join(timeout)
            if self._stream.is_alive():
                with self._cond:
                    self._cancelled = True
                    self._cond.notify_all()
                    if self._call is not None:
                        self._call.cancel()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stopped(self) -> bool:
        return self._closing or self._error is not None

    def _forget(self, fut: Future) -> None:
        with self._cond:
            self._unresolved.discard(fut)

    def _ready_to_send(self) -> bool:
        """Called with the lock held: is a batch due now?"""
        if not self._pending or len(self._waiting) >= self._max_in_flight:
            return False
        first_queued = self._pending[0][0]
        return (len(self._pending) >= self._batch_records or self._closing
                or self._taken < self._flush_upto
                or time.monotonic() >= first_queued + self._linger)

    # --- the stream thread -------------------------------------------------------------------

    def _run(self) -> None:
        """Opens the stream, resolves acks, and reconnects (resending what is unacknowledged)
        while that is safe; on a break that is not, fails all that is left."""
        failures = 0
        while True:
            with self._cond:
                self._generation += 1
                generation = self._generation
                resend = list(self._waiting)
                self._timed_out = False
                try:
                    self._call = self._client.stub.ProduceStream(
                        self._requests(generation, resend))
                except ValueError as e:  # the channel was closed
                    leftover = self._fail_all(ObeliskError(grpc.StatusCode.CANCELLED, str(e)))
                    error = self._error
                    break
                stream = self._call
            error = ObeliskError(grpc.StatusCode.UNAVAILABLE,
                                 "the produce stream ended before all acks")
            try:
                for ack in stream:
                    with self._cond:
                        if not self._waiting:
                            continue  # an ack for nothing we sent: ignore it
                        if self._leader_changed(ack):
                            # replication (issue 17): sent again, unchanged, to the leader.
                            error = ObeliskError.from_number(ack.error.code, ack.error.message)
                            stream.cancel()
                            break
                        sent = self._waiting.popleft()
                        failures = 0
                        self._cond.notify_all()
                    self._resolve(sent, ack)
            except grpc.RpcError as e:
                error = ObeliskError.from_rpc(e)
            # replication (issue 17): the next stream goes to the leader, wherever it is now.
            self._client.follow(error)
            with self._cond:
                if self._timed_out:
                    error = ObeliskError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                         f"no acknowledgement within {self._request_timeout}s")
                if self._closing and not self._waiting and not self._pending:
                    self._error = ObeliskError(grpc.StatusCode.CANCELLED, "the producer is closed")
                    self._cond.notify_all()
                    return
                safe = all(s.req.HasField("idempotence") for s in self._waiting)
                retry = (self.idempotent and safe and not self._cancelled
                         and error.code in RETRIABLE and failures < self._max_retries)
                if not retry:
                    leftover = self._fail_all(error)
                    break
                failures += 1
                self._generation += 1  # the old generator stops
                self._cond.notify_all()
                # Idle (nothing in flight): reconnect only once there is something to send.
                while not self._waiting and not self._pending and not self._closing \
                        and not self._cancelled:
                    self._cond.wait()
                if self._closing and not self._waiting and not self._pending:
                    self._error = ObeliskError(grpc.StatusCode.CANCELLED, "the producer is closed")
                    self._cond.notify_all()
                    return
            time.sleep(min(2.0, 0.1 * (1 << min(failures, 5))))
        for f in leftover:
            f.set_exception(error)

    def _leader_changed(self, ack: "pb.ProduceStreamAck") -> bool:
        """Called with the lock held. replication (issue 17): an idempotent batch refused as
        UNAVAILABLE by a cluster node (no longer the leader, or not replicated) counts as a broken
        stream, for a client given several nodes."""
        return (len(self._client.nodes) > 1 and ack.HasField("error")
                and ack.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
                and self._waiting[0].req.HasField("idempotence"))

    def _fail_all(self, error: ObeliskError) -> List[Future]:
        """Called with the lock held: the producer stops; returns every record's future not
        acknowledged (for the caller to fail once the lock is released)."""
        leftover = [f for sent in self._waiting for f in sent.futures]
        leftover += [p[1][2] for p in self._pending]
        self._waiting.clear()
        self._pending.clear()
        self._error = error
        self._cond.notify_all()
        return leftover

    def _resolve(self, sent: _Sent, ack: "pb.ProduceStreamAck") -> None:
        futures = sent.futures
        if ack.HasField("error"):
            if sent.req.HasField("idempotence"):
                # Its sequences were never stored: continue at a new epoch, not after a gap.
                with self._cond:
                    self._reinit = True
            err = ObeliskError.from_number(ack.error.code, ack.error.message)
            for f in futures:
                f.set_exception(err)
            return
        for f, a in zip(futures, ack.acks):
            f.set_result(Ack(a.partition, a.offset))
        if len(ack.acks) != len(futures):
            err = ObeliskError(grpc.StatusCode.INTERNAL,
                               f"the broker acked {len(ack.acks)} of {len(futures)} records")
            for f in futures[len(ack.acks):]:
                f.set_exception(err)

    # --- the request generator (gRPC's thread) -----------------------------------------------

    def _requests(self, generation: int,
                  resend: List[_Sent]) -> Iterator["pb.ProduceStreamRequest"]:
        """One stream's requests: first the unacknowledged batches again, then a batch whenever
        one is due; returns once closed and drained, or when a newer stream took over."""
        for sent in resend:
            with self._cond:
                if self._generation != generation:
                    return
                sent.sent_at = time.monotonic()
            yield sent.req
        while True:
            with self._cond:
                if not self._wait_for_batch(generation):
                    return
                topic = self._pending[0][1][0]
            # Routing needs the partition count, asked outside the lock (it is an RPC).
            self._prepare_idempotence(topic)
            with self._cond:
                if self._generation != generation or self._error is not None:
                    return
                if not self._pending:
                    continue
                records: List[pb.ProducerRecord] = []
                futures: List[Future] = []
                while (self._pending and self._pending[0][1][0] == topic
                       and len(records) < self._batch_records):
                    _, (_, record, fut) = self._pending.popleft()
                    records.append(record)
                    futures.append(fut)
                self._taken += len(records)
                req = pb.ProduceStreamRequest(sequence=self._sequence, topic=topic,
                                              records=records)
                self._sequence += 1
                self._number(req)
                self._waiting.append(_Sent(req, futures))
                self._cond.notify_all()
            yield req

    def _wait_for_batch(self, generation: int) -> bool:
        """Called with the lock held: waits until a batch is due (True), or the stream is done
        with (False): drained after close, replaced, or the oldest ack is overdue (then the call
        is cancelled and the stream thread reconnects)."""
        while not self._ready_to_send():
            if self._generation != generation or self._error is not None or self._cancelled:
                return False
            if self._closing and not self._pending and not self._waiting:
                return False
            now = time.monotonic()
            timeout: Optional[float] = None
            if self._waiting:
                due = self._waiting[0].sent_at + self._request_timeout
                if now >= due:
                    self._timed_out = True
                    if self._call is not None:
                        self._call.cancel()
                    return False
                timeout = due - now
            if self._pending and len(self._waiting) < self._max_in_flight:
                linger = max(0.0, self._pending[0][0] + self._linger - now)
                timeout = linger if timeout is None else min(timeout, linger)
            self._cond.wait(timeout)
        return self._generation == generation

    def _prepare_idempotence(self, topic: str) -> None:
        """Before a batch of ``topic``: its partition count (once it exists) and, after a failed
        batch, a new epoch. Failures leave the batch without idempotence, as the Rust client."""
        if not self.idempotent:
            return
        if topic not in self._partitions:
            try:
                n = call(self._client.stub.DescribeTopic, pb.DescribeTopicRequest(name=topic),
                         timeout=self._client.timeout).topic.config.partitions
            except ObeliskError:
                n = 0  # does not exist yet (created by this batch) or unreachable: ask again
            if n > 0:
                with self._cond:
                    self._partitions[topic] = n
        with self._cond:
            reinit = self._reinit
        if reinit:
            try:
                grant = call(self._client.stub.InitProducer,
                             pb.InitProducerRequest(producer_id=self._producer_id),
                             timeout=self._client.timeout)
            except ObeliskError:
                return
            with self._cond:
                self._producer_epoch = grant.producer_epoch
                self._sequences.clear()
                self._reinit = False

    def _number(self, req: "pb.ProduceStreamRequest") -> None:
        """Called with the lock held: routes the batch's records to partitions and sets its
        identity and first sequence per partition (when idempotent and the topic is known)."""
        n = self._partitions.get(req.topic)
        if not self.idempotent or n is None or self._reinit:
            return
        counts: Dict[int, int] = {}
        for r in req.records:
            if r.HasField("partition"):
                p = r.partition
            elif n <= 1:
                p = 0
            elif not r.key:
                self._round_robin += 1
                p = self._round_robin % n
            else:
                p = fnv1a_32(r.key) % n
            r.partition = p
            counts[p] = counts.get(p, 0) + 1
        sequences: Dict[int, int] = {}
        for p, count in counts.items():
            first = self._sequences.get((req.topic, p), 0)
            sequences[p] = first
            self._sequences[(req.topic, p)] = _i32(first + count)
        req.idempotence.CopyFrom(pb.IdempotentProduce(
            producer_id=self._producer_id, producer_epoch=self._producer_epoch,
            sequences=sequences))
