"""The Python client against a real broker: produce, consume, commit, restart, subscribe, errors."""

from __future__ import annotations

import time
from concurrent.futures import wait

import grpc
import pytest

from obelisk_client import Client, ObeliskError, Record, at_timestamp, pb

DEADLINE_S = 10.0


def fnv1a_32(data: bytes) -> int:
    """The broker's key hash (FNV-1a, 32 bit)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def poll_until(consumer, count: int, timeout: float = DEADLINE_S) -> list[Record]:
    """Polls (without committing) until ``count`` records come back in one poll, or times out."""
    deadline = time.monotonic() + timeout
    records: list[Record] = []
    while time.monotonic() < deadline:
        records = consumer.poll(max_records=10_000, max_wait_ms=200)
        if len(records) >= count:
            return records
    raise AssertionError(f"got {len(records)} of {count} records within {timeout}s")


def test_produce_batch_and_consume_back(client):
    with client.producer(batch_records=50, linger_ms=5) as producer:
        futures = [producer.send("orders", f"value-{i}", key=f"user-{i % 7}",
                                 headers={"n": str(i)}) for i in range(200)]
        acks = [f.result(timeout=DEADLINE_S) for f in futures]

    for i, ack in enumerate(acks):
        assert ack.partition == fnv1a_32(f"user-{i % 7}".encode()) % 4, "FNV-1a placement"
    by_partition: dict[int, list[int]] = {}
    for ack in acks:
        by_partition.setdefault(ack.partition, []).append(ack.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets))), "dense offsets, in send order"

    records = poll_until(client.consumer("orders", "g1"), 200)
    assert len(records) == 200
    sent = {(a.partition, a.offset): i for i, a in enumerate(acks)}
    for r in records:
        i = sent[(r.partition, r.offset)]
        assert (r.key, r.value, r.headers) == (f"user-{i % 7}".encode(), f"value-{i}".encode(),
                                               {"n": str(i).encode()})
        assert r.timestamp_ns > 0, "the broker stamps records sent without a timestamp"


def test_gzip_transport_compression(server):
    with Client(server.addr, timeout=10.0, compression="gzip") as c:
        c.wait_ready(10.0)
        with c.producer() as producer:
            acks = [producer.send("gz", "x" * 2000 + str(i), partition=0) for i in range(50)]
            assert [a.result(timeout=DEADLINE_S).offset for a in acks] == list(range(50))
        records = poll_until(c.consumer("gz", "g"), 50)
        assert [r.value for r in records] == [("x" * 2000 + str(i)).encode() for i in range(50)]
    with pytest.raises(ValueError):
        Client(server.addr, compression="snappy")


def test_key_timestamp_headers_roundtrip(client):
    with client.producer() as producer:
        ack = producer.send("t", b"\x00\xffbinary", key=b"\x01k", headers={"h": b"\x00\x01"},
                            timestamp_ns=1_700_000_000_123_456_789, partition=2).result(DEADLINE_S)
    assert ack.partition == 2
    [r] = poll_until(client.consumer("t", "g"), 1)
    assert r == Record(partition=2, offset=0, timestamp_ns=1_700_000_000_123_456_789,
                       key=b"\x01k", value=b"\x00\xffbinary", headers={"h": b"\x00\x01"})


def test_linger_holds_a_partial_batch_until_flush(client):
    with client.producer(batch_records=10, linger_ms=60_000) as producer:
        full = [producer.send("lingering", str(i)) for i in range(10)]
        done, _ = wait(full, timeout=DEADLINE_S)
        assert len(done) == 10, "a full batch is sent without waiting for linger"
        partial = [producer.send("lingering", str(i)) for i in range(3)]
        done, _ = wait(partial, timeout=0.5)
        assert not done, "a partial batch waits for linger"
        producer.flush(timeout=DEADLINE_S)
        assert all(f.done() and f.exception() is None for f in partial)


def test_poll_commit_resume_after_restart(server, tmp_path):
    with Client(server.addr) as client:
        client.create_topic("jobs", partitions=1)
        client.produce("jobs", [pb.ProducerRecord(value=str(i).encode()) for i in range(20)])
        consumer = client.consumer("jobs", "workers")
        first = consumer.poll(max_records=8)
        assert [r.offset for r in first] == list(range(8))
        assert consumer.poll(max_records=8) == first, "no commit: the same records again"
        assert consumer.commit(first) == {0: 8}, "commit stores the NEXT offset to read"

    assert server.stop() == 0
    server.start()
    with Client(server.addr) as client:
        resumed = client.consumer("jobs", "workers").poll(max_records=100)
        assert [r.offset for r in resumed] == list(range(8, 20))
        assert [r.value for r in resumed] == [str(i).encode() for i in range(8, 20)]


def test_subscribe_receives_new_records(client):
    client.create_topic("live", partitions=2)
    consumer = client.consumer("live", "watchers")
    with client.producer() as producer:
        with consumer.subscribe(timeout=DEADLINE_S) as sub:
            for round_ in range(2):
                sent = {producer.send("live", f"r{round_}-{i}").result(DEADLINE_S): i
                        for i in range(5)}
                got = [next(sub) for _ in range(5)]
                assert sorted((r.partition, r.offset) for r in got) == sorted(
                    (a.partition, a.offset) for a in sent)
                assert {r.value for r in got} == {f"r{round_}-{i}".encode() for i in range(5)}
        assert list(sub) == [], "a cancelled subscription stops"
    assert consumer.poll(max_wait_ms=0) != [], "subscribe does not commit"


def test_subscribe_from_timestamp(client):
    with client.producer() as producer:
        for ts in (100, 200, 300):
            producer.send("ts", str(ts), timestamp_ns=ts, partition=0)
    sub = client.consumer("ts", "g").subscribe(at_timestamp(200), timeout=DEADLINE_S)
    assert [next(sub).timestamp_ns for _ in range(2)] == [200, 300]
    sub.cancel()


def test_bad_topic_raises_obelisk_error(client):
    with pytest.raises(ObeliskError) as unary:
        client.consumer("bad/topic", "g").poll(max_wait_ms=0)
    assert unary.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert unary.value.message.startswith('invalid topic name "bad/topic"'), unary.value.message

    with client.producer() as producer:
        fut = producer.send("bad/topic", b"x")
        with pytest.raises(ObeliskError) as streamed:
            fut.result(DEADLINE_S)
        assert streamed.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad/topic" in streamed.value.message
        ok = producer.send("good-topic", b"x").result(DEADLINE_S)
        assert ok.offset == 0, "the stream goes on after a failed batch"


def test_commit_beyond_end_is_out_of_range(client):
    client.produce("small", [pb.ProducerRecord(value=b"x", partition=0)])
    with pytest.raises(ObeliskError) as err:
        client.consumer("small", "g").commit_offsets({0: 5})
    assert err.value.code == grpc.StatusCode.OUT_OF_RANGE


def test_send_after_close_raises(client):
    producer = client.producer()
    producer.close()
    with pytest.raises(ObeliskError) as err:
        producer.send("t", b"late")
    assert err.value.code == grpc.StatusCode.CANCELLED


def test_broken_stream_fails_pending_acks(server, client):
    producer = client.producer(linger_ms=60_000, batch_records=1000, idempotent=False)
    fut = producer.send("t", b"never sent before the stop")
    assert server.stop() == 0
    producer.flush(timeout=DEADLINE_S)
    with pytest.raises(ObeliskError) as err:
        fut.result(0)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ObeliskError):
        producer.send("t", b"after the break")
