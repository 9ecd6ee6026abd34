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
