"""The Producer: records are batched (by count or linger) onto one ProduceStream; each ``send``
returns a future that resolves to the record's :class:`Ack` once the broker stored it durably.

Threads: gRPC pulls batches from :meth:`Producer._requests` on its own thread (that generator is the
batcher), and a receiver thread matches acks to batches. Acks on a stream arrive in send order.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future, wait
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from .errors import ObeliskError
from .records import Ack, Bytes, to_bytes

_Pending = Tuple[str, "pb.ProducerRecord", Future]


class Producer:
    """A batching producer over one ``ProduceStream``.

    Args:
        client: a :class:`~obelisk_client.Client`.
        batch_records: a batch is sent once it holds this many records...
        linger_ms: ...or once its first record has waited this long.
        max_in_flight: batches sent and not yet acknowledged; past this, batches wait.
        max_buffered: records queued and not yet sent; past this, :meth:`send` blocks.

    A batch holds records of one topic. Records sent through one producer are stored in send order
    per partition. Use as a context manager (closes, which flushes), or call :meth:`close`.
    """

    def __init__(self, client: Any, *, batch_records: int = 500, linger_ms: float = 2.0,
                 max_in_flight: int = 16, max_buffered: int = 10_000):
        self._batch_records = max(1, batch_records)
        self._linger = max(0.0, linger_ms) / 1000.0
        self._max_in_flight = max(1, max_in_flight)
        self._max_buffered = max(1, max_buffered)
        self._cond = threading.Condition()
        self._pending: Deque[Tuple[float, _Pending]] = collections.deque()
        self._waiting: Deque[List[Future]] = collections.deque()
        self._unresolved: set = set()
        self._enqueued = 0  # records ever queued
        self._taken = 0  # records ever put into a batch
        self._flush_upto = 0  # records queued before the last flush(): sent without lingering
        self._closing = False
        self._error: Optional[ObeliskError] = None
        self._call = client.stub.ProduceStream(self._requests())
        self._receiver = threading.Thread(target=self._receive, name="obelisk-producer-acks",
                                          daemon=True)
        self._receiver.start()

    def send(self, topic: str, value: Bytes = b"", *, key: Bytes = b"",
             headers: Optional[Mapping[str, Bytes]] = None, timestamp_ns: Optional[int] = None,
             partition: Optional[int] = None) -> "Future[Ack]":
        """Queues one record and returns a future of its :class:`Ack` (partition, offset).

        The future fails with :class:`ObeliskError` if the broker refuses the record's batch or
        the stream breaks. ``str`` keys/values/header values are encoded as UTF-8.
        ``timestamp_ns`` unset: the broker stamps the arrival time. ``partition`` unset: chosen
        from the key (FNV-1a), or round-robin for an empty key.
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
            self._receiver.join(timeout)
            if self._receiver.is_alive():
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

    def _requests(self) -> Iterator["pb.ProduceStreamRequest"]:
        """The request stream: yields a batch whenever one is due; returns once closed and drained."""
        sequence = 0
        while True:
            with self._cond:
                while not self._ready_to_send():
                    if self._error is not None or (self._closing and not self._pending):
                        return
                    timeout = None
                    if self._pending and len(self._waiting) < self._max_in_flight:
                        timeout = max(0.0, self._pending[0][0] + self._linger - time.monotonic())
                    self._cond.wait(timeout)
                topic = self._pending[0][1][0]
                records: List[pb.ProducerRecord] = []
                futures: List[Future] = []
                while (self._pending and self._pending[0][1][0] == topic
                       and len(records) < self._batch_records):
                    _, (_, record, fut) = self._pending.popleft()
                    records.append(record)
                    futures.append(fut)
                self._taken += len(records)
                self._waiting.append(futures)
                self._cond.notify_all()
            yield pb.ProduceStreamRequest(sequence=sequence, topic=topic, records=records)
            sequence += 1

    def _receive(self) -> None:
        """Resolves each batch's futures from its ack; on a broken stream, fails all that is left."""
        error = ObeliskError(grpc.StatusCode.UNAVAILABLE, "the produce stream ended before all acks")
        try:
            for ack in self._call:
                with self._cond:
                    if not self._waiting:
                        continue  # an ack for nothing we sent: ignore it
                    futures = self._waiting.popleft()
                    self._cond.notify_all()
                _resolve(futures, ack)
        except grpc.RpcError as e:
            error = ObeliskError.from_rpc(e)
        with self._cond:
            leftover = [f for batch in self._waiting for f in batch]
            leftover += [p[1][2] for p in self._pending]
            self._waiting.clear()
            self._pending.clear()
            if leftover or not self._closing:
                self._error = error
            else:
                self._error = ObeliskError(grpc.StatusCode.CANCELLED, "the producer is closed")
            self._cond.notify_all()
        for f in leftover:
            f.set_exception(error)


def _resolve(futures: List[Future], ack: "pb.ProduceStreamAck") -> None:
    if ack.HasField("error"):
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
