"""The broker's standard gRPC services, and the freshness of the checked-in generated code."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from obelisk_client import HEALTH_SERVICE
from obelisk_server import REPO


def test_health_check_serving(server):
    with grpc.insecure_channel(server.addr) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_broker(server):
    with grpc.insecure_channel(server.addr) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = db.get_services()
        assert "obelisk.v1.Broker" in services
        methods = {m.name for m in db.FindFileContainingSymbol("obelisk.v1.Broker").service[0].method}
    assert {"Produce", "ProduceStream", "Poll", "Subscribe", "Commit"} <= methods


def test_generated_code_matches_proto():
    """clients/generate.sh --check regenerates into a temp dir and diffs with the checked-in code."""
    res = subprocess.run(["bash", str(REPO / "clients" / "generate.sh"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def run_script(*args: str) -> str:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_quickstart_example_runs(server):
    out = run_script(str(REPO / "clients/python/examples/quickstart.py"), "--addr", server.addr)
    assert "committed next offsets" in out
    assert "INVALID_ARGUMENT: invalid topic name" in out


def test_cross_produce_writes_what_was_stored(client, server, tmp_path):
    """The producer half of the cross-language check, read back by the Python consumer."""
    out = tmp_path / "expected.json"
    run_script(str(REPO / "clients/python/tests/cross_produce.py"), "--addr", server.addr,
               "--topic", "cross", "--out", str(out))
    expected = json.loads(out.read_text())["records"]
    got = {(r.partition, r.offset): r for r in client.consumer("cross", "g").poll(max_records=1000)}
    assert len(got) == len(expected)
    for e in expected:
        r = got[(e["partition"], e["offset"])]
        assert r.timestamp_ns == int(e["timestamp_ns"])
        assert r.key == base64.b64decode(e["key"]) and r.value == base64.b64decode(e["value"])
        assert r.headers == {k: base64.b64decode(v) for k, v in e["headers"].items()}
