"""Groups with members from Python (issue 13): two GroupConsumers split the partitions, a
revocation commits before it releases, a leave moves partitions, fenced commits fail."""

from __future__ import annotations

import time

import grpc
import pytest

from obelisk_client import ObeliskError, pb
from obelisk_client.client import call

DEADLINE_S = 20.0


def produce_each(client, topic: str, partitions: int, per: int, prefix: str) -> None:
    client.produce(topic, [pb.ProducerRecord(value=f"{prefix}-{p}-{i}".encode(), partition=p)
                           for p in range(partitions) for i in range(per)])


def test_two_members_split_partitions_and_a_leave_moves_them(client):
    client.create_topic("gt", partitions=4)
    produce_each(client, "gt", 4, 5, "a")
    events: list[str] = []
    a = client.group_consumer("pg", ["gt"], max_wait_ms=200,
                              on_assigned=lambda ps: events.append(f"a+{len(ps)}"),
                              on_revoked=lambda ps: events.append(f"a-{len(ps)}"))
    assert len(a.assignment) == 4
    seen_a = []
    while len(seen_a) < 8:
        seen_a += a.poll()
    a.commit()
    committed = {(r.partition, r.offset) for r in seen_a}
    b = client.group_consumer("pg", ["gt"], max_wait_ms=200)
    seen_b = []
    deadline = time.monotonic() + DEADLINE_S
    while len(seen_a) + len(seen_b) < 20 or len(a.assignment) != 2 or len(b.assignment) != 2:
        assert time.monotonic() < deadline, (a.assignment, b.assignment)
        seen_a += a.poll()
        seen_b += b.poll()
    assert set(a.assignment).isdisjoint(b.assignment)
    assert "a-2" in events
    assert committed.isdisjoint({(r.partition, r.offset) for r in seen_b})
    assert len({(r.partition, r.offset) for r in seen_a + seen_b}) == 20
    d = client.describe_group("pg")
    assert d.state == "stable"
    assert sorted(m.client_id for m in d.members) == ["obelisk-python", "obelisk-python"]
    # A fenced commit: a member committing a partition it does not own.
    theirs = b.assignment[0][1]
    with pytest.raises(ObeliskError) as err:
        call(client.stub.Commit, pb.CommitRequest(
            topic="gt", group="pg", offsets=[pb.PartitionOffset(partition=theirs, offset=0)],
            member_id=a.member_id, member_epoch=a.member_epoch))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ObeliskError) as err:
        client.delete_group("pg")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    a.close()
    deadline = time.monotonic() + DEADLINE_S
    while len(b.assignment) != 4:
        assert time.monotonic() < deadline, b.assignment
        b.poll()
    b.close()
    client.delete_group("pg")


def test_a_fenced_member_is_told_it_lost_its_partitions_and_rejoins(client):
    client.create_topic("gf", partitions=2)
    lost: list[int] = []
    a = client.group_consumer("pf", ["gf"], instance_id="host-a", max_wait_ms=200,
                              on_lost=lambda ps: lost.append(len(ps)))
    first_epoch = a.member_epoch
    assert len(a.assignment) == 2
    # Another process takes over the same instance id: this one is fenced (its stream ends).
    b = client.group_consumer("pf", ["gf"], instance_id="host-a", max_wait_ms=200)
    deadline = time.monotonic() + DEADLINE_S
    while a.member_epoch == first_epoch:
        assert time.monotonic() < deadline, "never rejoined"
        a.poll()
    assert lost == [2], lost
    assert a.member_epoch > b.member_epoch > first_epoch
    assert len(a.assignment) == 2, "rejoined with the instance's partitions"
    a.close()
