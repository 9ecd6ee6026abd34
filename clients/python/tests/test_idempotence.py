"""The idempotent producer (issue 16) against a real broker: retries are stored once and answered
with the original offsets, a cut connection is retried, gaps are refused, and it is the default."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from cut_proxy import CutProxy
from obelisk_client import Client, ObeliskError, pb

DEADLINE_S = 20.0


def records(values, partition=0):
    return [pb.ProducerRecord(value=v.encode(), partition=partition) for v in values]


def stored(client, topic):
    """Records in the topic (the sum over its partitions of end - start)."""
    return sum(p.log_end_offset - p.log_start_offset
               for p in client.describe_topic(topic).partitions)


def wait_stored(client, topic, count, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(client, topic) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{stored(client, topic)} of {count} records stored within {timeout}s")


def read_all(client, topic):
    """Every stored record, by a new group from the start."""
    consumer = client.consumer(topic, f"fresh-{time.monotonic_ns()}")
    out = []
    deadline = time.monotonic() + DEADLINE_S
    want = stored(client, topic)
    while len(out) < want and time.monotonic() < deadline:
        got = consumer.poll(max_records=10_000, max_wait_ms=200)
        out += got
        if got:
            consumer.commit(got)
    return out


def test_a_retried_request_is_stored_once_with_the_same_offsets(client):
    client.create_topic("retry", partitions=2)
    grant = client.stub.InitProducer(pb.InitProducerRequest())
    ident = pb.IdempotentProduce(producer_id=grant.producer_id,
                                 producer_epoch=grant.producer_epoch, sequences={1: 0})
    req = pb.ProduceRequest(topic="retry", records=records(["a", "b", "c"], partition=1),
                            idempotence=ident)
    first = [(a.partition, a.offset) for a in client.stub.Produce(req).acks]
    again = [(a.partition, a.offset) for a in client.stub.Produce(req).acks]
    assert first == again == [(1, 0), (1, 1), (1, 2)]
    # The same over a ProduceStream: a retry there too is answered, not written.
    stream_req = pb.ProduceStreamRequest(sequence=7, topic="retry",
                                         records=records(["a", "b", "c"], partition=1),
                                         idempotence=ident)
    acks = list(client.stub.ProduceStream(iter([stream_req])))
    assert [(a.partition, a.offset) for a in acks[0].acks] == first
    assert stored(client, "retry") == 3
    assert [r.value for r in read_all(client, "retry")] == [b"a", b"b", b"c"]


def test_a_gap_is_refused_with_failed_precondition(client):
    client.create_topic("gap", partitions=1)
    grant = client.stub.InitProducer(pb.InitProducerRequest())

    def produce(seq, values):
        return client.stub.Produce.with_call(pb.ProduceRequest(
            topic="gap", records=records(values),
            idempotence=pb.IdempotentProduce(producer_id=grant.producer_id,
                                             producer_epoch=grant.producer_epoch,
                                             sequences={0: seq})))

    produce(0, ["a", "b"])
    with pytest.raises(grpc.RpcError) as err:
        produce(5, ["x"])  # 2 was next
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    trailer = dict(err.value.trailing_metadata() or ())
    assert trailer.get("obelisk-expected-sequence") == "2", trailer
    assert stored(client, "gap") == 2

    # An older epoch is fenced once the same id was initialised again.
    newer = client.stub.InitProducer(pb.InitProducerRequest(producer_id=grant.producer_id))
    assert newer.producer_epoch > grant.producer_epoch
    with pytest.raises(grpc.RpcError) as fenced:
        produce(2, ["c"])
    assert fenced.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_the_producer_is_idempotent_by_default(client):
    client.create_topic("default", partitions=3)
    with client.producer(batch_records=10, linger_ms=60_000) as producer:
        assert producer.idempotent and producer.producer_id is not None
        acks = [f.result(DEADLINE_S) for f in
                [producer.send("default", f"v{i}", partition=0) for i in range(10)]]
        pid, epoch = producer.producer_id, producer.producer_epoch
    assert [(a.partition, a.offset) for a in acks] == [(0, i) for i in range(10)]
    # Its batch carried (id, epoch, sequence 0 in partition 0): sent again by hand, it is a retry.
    retry = pb.ProduceRequest(topic="default", records=records([f"v{i}" for i in range(10)]),
                              idempotence=pb.IdempotentProduce(producer_id=pid,
                                                               producer_epoch=epoch,
                                                               sequences={0: 0}))
    assert [a.offset for a in client.stub.Produce(retry).acks] == list(range(10))
    assert stored(client, "default") == 10

    with client.producer(idempotent=False) as plain:
        assert not plain.idempotent and plain.producer_id is None
        assert plain.send("default", "x", partition=1).result(DEADLINE_S).offset == 0


def test_keys_are_routed_as_the_broker_routes_them(client):
    """The idempotent producer picks partitions itself: same FNV-1a rule as the broker."""
    from obelisk_client.producer import fnv1a_32
    client.create_topic("routed", partitions=4)
    with client.producer(batch_records=50, linger_ms=5) as producer:
        futures = [producer.send("routed", f"v{i}", key=f"user-{i % 7}") for i in range(100)]
        unkeyed = [producer.send("routed", "rr") for _ in range(8)]
        acks = [f.result(DEADLINE_S) for f in futures]
        rr = {f.result(DEADLINE_S).partition for f in unkeyed}
    for i, a in enumerate(acks):
        assert a.partition == fnv1a_32(f"user-{i % 7}".encode()) % 4
    assert rr == {0, 1, 2, 3}, "empty keys go round-robin"


def test_a_new_topic_is_created_by_a_plain_batch_then_idempotent(client):
    with client.producer(batch_records=5, linger_ms=60_000) as producer:
        first = [producer.send("fresh", f"a{i}", partition=0) for i in range(5)]
        assert [f.result(DEADLINE_S).offset for f in first] == list(range(5))
        later = [producer.send("fresh", f"b{i}", partition=0) for i in range(5)]
        assert [f.result(DEADLINE_S).offset for f in later] == list(range(5, 10))
        pid, epoch = producer.producer_id, producer.producer_epoch
    # The second batch was idempotent, numbered from 0 in the partition.
    retry = pb.ProduceRequest(topic="fresh", records=records([f"b{i}" for i in range(5)]),
                              idempotence=pb.IdempotentProduce(producer_id=pid,
                                                               producer_epoch=epoch,
                                                               sequences={0: 0}))
    assert [a.offset for a in client.stub.Produce(retry).acks] == list(range(5, 10))
    assert stored(client, "fresh") == 10


def _produce_through_a_cut(client, server, idempotent):
    """Sends 1 record (acked) then 50 whose ack the proxy swallows; once the broker stored them,
    cuts the connection. Returns the 50 futures, settled."""
    client.create_topic("cut", partitions=2)
    with CutProxy(server.addr) as proxy, Client(proxy.addr, timeout=10.0) as via:
        producer = via.producer(batch_records=100, linger_ms=60_000, idempotent=idempotent)
        warm = producer.send("cut", "warm", key="k")
        producer.flush(DEADLINE_S)
        warm.result(0)  # the topic is described and the stream is up
        proxy.hold()
        futures = [producer.send("cut", f"v{i}", key=f"k{i}") for i in range(50)]
        t = threading.Thread(target=producer.flush, args=(DEADLINE_S * 2,), daemon=True)
        t.start()
        wait_stored(client, "cut", 51)
        assert not any(f.done() for f in futures), "the acks were swallowed"
        proxy.cut()
        t.join(DEADLINE_S * 2)
        for f in futures:
            f.exception(DEADLINE_S)  # settled either way
        if idempotent:
            producer.close(DEADLINE_S)
        else:
            with pytest.raises(ObeliskError):
                producer.send("cut", "after")
        return futures


def test_a_cut_connection_is_retried_and_stored_once(server, client):
    futures = _produce_through_a_cut(client, server, idempotent=True)
    acks = [f.result(0) for f in futures]
    assert len({(a.partition, a.offset) for a in acks}) == 50
    assert stored(client, "cut") == 51, "the resent batch was not written again"
    back = read_all(client, "cut")
    assert sorted(r.value for r in back) == sorted([b"warm"] + [f"v{i}".encode() for i in range(50)])
    by_value = {r.value: (r.partition, r.offset) for r in back}
    for i, a in enumerate(acks):
        assert by_value[f"v{i}".encode()] == (a.partition, a.offset), "the original offsets"


def test_a_cut_connection_fails_a_plain_producer(server, client):
    futures = _produce_through_a_cut(client, server, idempotent=False)
    for f in futures:
        assert f.exception(0).code == grpc.StatusCode.UNAVAILABLE
    assert stored(client, "cut") == 51, "stored once, and not retried"


def test_a_batch_stored_before_a_kill_9_is_retried_and_stored_once(server, client):
    """The ack is swallowed, the broker is killed (-9) and restarted on its port: the producer
    retries against the new process, which answers from the state it rebuilt from the log."""
    client.create_topic("crash", partitions=2)
    fast = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
    with CutProxy(server.addr) as proxy, Client(proxy.addr, timeout=10.0, options=fast) as via:
        producer = via.producer(batch_records=100, linger_ms=60_000, max_retries=40)
        warm = producer.send("crash", "warm", key="k")
        producer.flush(DEADLINE_S)
        warm.result(0)
        proxy.hold()
        futures = [producer.send("crash", f"v{i}", key=f"k{i}") for i in range(50)]
        t = threading.Thread(target=producer.flush, args=(DEADLINE_S * 3,), daemon=True)
        t.start()
        wait_stored(client, "crash", 51)
        server.kill9()
        server.start(addr=server.addr)
        acks = [f.result(DEADLINE_S * 3) for f in futures]
        producer.close(DEADLINE_S)
    with Client(server.addr, timeout=10.0) as after:
        after.wait_ready(10.0)
        assert stored(after, "crash") == 51, "stored once across the crash"
        where = {r.value: (r.partition, r.offset) for r in read_all(after, "crash")}
    for i, a in enumerate(acks):
        assert where[f"v{i}".encode()] == (a.partition, a.offset)


def test_missing_acks_time_out_are_retried_and_then_fail(server, client):
    """Acks that never come (the proxy swallows them, the connection stays up): each wait ends
    after ``request_timeout`` and the batch is resent on a new stream (stored once all along);
    after ``max_retries`` the records fail with DEADLINE_EXCEEDED instead of hanging."""
    client.create_topic("silent", partitions=1)
    with CutProxy(server.addr) as proxy, Client(proxy.addr, timeout=10.0) as via:
        producer = via.producer(batch_records=100, linger_ms=60_000, request_timeout=0.5,
                                max_retries=2)
        warm = producer.send("silent", "warm")
        producer.flush(DEADLINE_S)
        warm.result(0)
        proxy.hold()
        futures = [producer.send("silent", f"v{i}") for i in range(10)]
        producer.flush(DEADLINE_S)
        for f in futures:
            assert f.exception(0).code == grpc.StatusCode.DEADLINE_EXCEEDED
        producer.close(DEADLINE_S)
    assert stored(client, "silent") == 11, "stored once, however often it was resent"
