"""The broker's standard gRPC services, and the freshness of the checked-in generated code."""

from __future__ import annotations

import subprocess

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
