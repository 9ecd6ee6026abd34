"""Shared groups from Python (issue 14): workers take records locked to them one by one, a
released record comes back with its delivery counted, a rejected one lands in the dead-letter
topic with its origin headers, and every record ends accepted once or dead-lettered once."""

from __future__ import annotations

from obelisk_client import pb


def test_shared_consumers_settle_records_one_by_one(client):
    client.create_topic("st", partitions=2)
    client.produce("st", [pb.ProducerRecord(value=f"v{i}".encode(), partition=i % 2)
                          for i in range(10)])
    a = client.shared_consumer("st", "sg", member_id="a", max_records=4, max_wait_ms=200)
    b = client.shared_consumer("st", "sg", member_id="b", max_records=100, max_wait_ms=200)
    got_a = a.poll()
    assert len(got_a) == 4
    assert all(d.deliveries == 1 for d in got_a)
    got_b = b.poll()
    # b gets the others: nothing locked to a is handed to b.
    keys = lambda ds: {(d.record.partition, d.record.offset) for d in ds}
    assert len(got_b) == 6 and keys(got_a).isdisjoint(keys(got_b))
    released, rejected = got_a[0], got_a[1]
    a.release(released, delay_ms=0, reason="later")
    a.reject(rejected, reason="cannot parse")
    for d in got_a[2:]:
        a.accept(d)
    results = a.flush()
    assert [r.outcome for r in results] == ["available", "dead_lettered", "done", "done"]
    # A record done already is refused, and so is another worker's.
    b.accept(got_a[2])
    refused = b.flush()
    assert refused[0].outcome == "" and "done already" in refused[0].error
    again = b.poll()
    assert keys(again) == keys([released])
    assert again[0].deliveries == 2
    for d in got_b + again:
        b.accept(d)
    assert all(r.outcome == "done" for r in b.flush())
    d = client.stub.DescribeSharedGroup(pb.DescribeSharedGroupRequest(group="sg", topic="st"))
    assert sum(p.position for p in d.partitions) == 10
    assert all(p.in_flight == 0 for p in d.partitions)
    dead = client.stub.Fetch(pb.FetchRequest(topic="sg.dlq", partition=0, offset=0)).records
    assert len(dead) == 1
    h = dead[0].headers
    assert h["obelisk-origin-topic"] == b"st"
    assert (int(h["obelisk-origin-partition"]), int(h["obelisk-origin-offset"])) == (
        rejected.record.partition, rejected.record.offset)
    assert h["obelisk-reason"] == b"cannot parse"


def test_shared_streams_get_records_pushed_and_settle_on_the_stream(client):
    """Two workers on SharedConsume streams: records are pushed to them (no poll), settled on
    the stream; a dropped stream's locks stay, a closed one returns what it did not read."""
    import pytest
    from obelisk_client import ObeliskError
    client.create_topic("ss", partitions=2)
    client.produce("ss", [pb.ProducerRecord(value=f"v{i}".encode(), partition=i % 2)
                          for i in range(10)])
    keys = lambda ds: {(d.record.partition, d.record.offset) for d in ds}
    a = client.shared_stream("ss", "ssg", member_id="a", max_in_flight=4)
    got_a = []
    while len(got_a) < 4:
        got_a += a.deliveries(timeout=5)
    assert len(got_a) == 4 and all(d.deliveries == 1 for d in got_a)
    # a's credit is spent: the rest goes to b (whose credit is spent then too).
    b = client.shared_stream("ss", "ssg", member_id="b", max_in_flight=6)
    got_b = []
    while len(got_b) < 6:
        got_b += b.deliveries(timeout=5)
    assert keys(got_a).isdisjoint(keys(got_b))
    released, rejected = got_a[0], got_a[1]
    a.release(released, delay_ms=0, reason="later")
    a.reject(rejected, reason="cannot parse")
    a.accept(got_a[2])
    results = a.settle()
    assert [r.outcome for r in results] == ["available", "dead_lettered", "done"]
    # Credit came back: the released record is pushed again, counted.
    again = a.deliveries(timeout=5)
    assert keys(again) == keys([released]) and again[0].deliveries == 2
    # a crashes: got_a[3] and the released record stay locked to it, nobody else gets them.
    a.abort()
    for d in got_b:
        b.accept(d)
    assert all(r.outcome == "done" for r in b.settle())
    assert b.deliveries(timeout=0.3) == []
    assert b.close() == []
    # Still a's: a new stream of the same member settles them.
    a2 = client.shared_stream("ss", "ssg", member_id="a", max_in_flight=4)
    a2.accept(got_a[3])
    a2.accept(again[0])
    assert [r.outcome for r in a2.settle()] == ["done", "done"]
    a2.close()
    d = client.stub.DescribeSharedGroup(pb.DescribeSharedGroupRequest(group="ssg", topic="ss"))
    assert sum(p.position for p in d.partitions) == 10
    # Bad input: a clear status.
    bad = client.shared_stream("ss", "ssg", member_id="")
    with pytest.raises(ObeliskError) as e:
        bad.deliveries(timeout=5)
    assert e.value.code.name == "INVALID_ARGUMENT" and "member id" in e.value.message
