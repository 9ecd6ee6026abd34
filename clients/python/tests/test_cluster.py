"""replication (issue 17): the client against a real 3-node cluster, a follower's address given
first: unary produce and the batching producer follow the leader (also when it is killed), and a
commit made through the client is returned by every node."""

from __future__ import annotations

import time

import pytest

from obelisk_client import Client, ObeliskError
from obelisk_client._generated.obelisk.v1 import broker_pb2 as pb
from obelisk_server import ObeliskServer, free_port


@pytest.fixture
def cluster(tmp_path):
    """Three ``obelisk serve`` nodes of one cluster, each with its own data dir and log."""
    raft = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(raft))
    nodes = [ObeliskServer(tmp_path / f"data{i + 1}", tmp_path / f"node{i + 1}.log",
                           ["--node-id", str(i + 1), "--peers", peers,
                            "--default-partitions", "3"])
             for i in range(3)]
    for n in nodes:
        n.start()
    yield nodes
    for n in nodes:
        n.kill9()


def leader_of(nodes, patience: float = 30.0) -> ObeliskServer:
    """The node the cluster elected (asked through Metadata)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        for n in nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            with Client(n.addr, timeout=2.0) as c:
                try:
                    m = c.unary("Metadata", pb.MetadataRequest(), patience=0)
                except ObeliskError:
                    continue
                if m.HasField("leader") and m.leader == m.node_id:
                    return n
        time.sleep(0.1)
    raise AssertionError("no leader elected:\n" + "\n".join(n.log()[-2000:] for n in nodes))


def test_the_client_follows_the_leader_from_a_follower_and_through_a_kill(cluster):
    leader = leader_of(cluster)
    followers = [n for n in cluster if n is not leader]
    addrs = [followers[0].addr, followers[1].addr, leader.addr]  # a follower first
    with Client(addrs, timeout=30.0) as c:
        c.create_topic("t", partitions=3)  # a follower forwards it
        acks = c.produce("t", [c_record(b"unary-0")])
        assert len(acks) == 1
        assert c.addr == leader.addr, "the produce was redirected to the leader"
        with c.producer() as p:
            futures = [p.send("t", f"before-{i}".encode(), partition=i % 3) for i in range(30)]
            stored = [f.result(timeout=60) for f in futures]
            leader.kill9()
            futures = [p.send("t", f"after-{i}".encode(), partition=i % 3) for i in range(30)]
            stored += [f.result(timeout=60) for f in futures]
        assert c.addr != leader.addr, "the producer moved to the new leader"
        # Each record once, where its ack said, on the survivors.
        for n in followers:
            with Client(n.addr, timeout=10.0) as r:
                values = {}
                for part in range(3):
                    resp = r.stub.Fetch(_fetch("t", part))
                    for rec in resp.records:
                        assert rec.value not in values, f"{rec.value!r} stored twice on {n.addr}"
                        values[rec.value] = (part, rec.offset)
                for i, ack in enumerate(stored):
                    tag = f"before-{i}" if i < 30 else f"after-{i - 30}"
                    assert values.get(tag.encode()) == (ack.partition, ack.offset), (n.addr, tag)


def test_a_commit_through_the_client_is_on_every_node(cluster):
    leader = leader_of(cluster)
    followers = [n for n in cluster if n is not leader]
    with Client([followers[0].addr, leader.addr], timeout=30.0) as c:
        c.create_topic("t", partitions=3)
        c.produce("t", [c_record(b"x", partition=p) for p in range(3) for _ in range(5)])
        c.consumer("t", "g").commit_offsets({0: 5, 1: 3, 2: 1})
    for n in cluster:
        deadline = time.monotonic() + 30
        with Client(n.addr, timeout=10.0) as r:
            while True:
                try:
                    got = {p.partition: p.committed_offset
                           for p in r.describe_group("g").partitions if p.topic == "t"}
                except ObeliskError as e:  # not applied on this node yet
                    got = e
                if got == {0: 5, 1: 3, 2: 1}:
                    break
                assert time.monotonic() < deadline, (n.addr, got)
                time.sleep(0.1)


def c_record(value: bytes, partition=None):
    return pb.ProducerRecord(value=value, partition=partition)


def _fetch(topic: str, partition: int):
    return pb.FetchRequest(topic=topic, partition=partition, offset=0, max_records=10_000)
