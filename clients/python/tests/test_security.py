"""The Python client over TLS with a bearer token, against a real broker with authentication on:
certificates from ``obelisk dev-certs``, the token from ``obelisk token new``."""

from __future__ import annotations

import subprocess

import grpc
import pytest

from obelisk_client import Client, ObeliskError
from obelisk_server import ObeliskServer, obelisk_bin

DEADLINE_S = 10.0


def run(*args: str) -> str:
    return subprocess.run([str(obelisk_bin()), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def secure(tmp_path):
    """A broker with TLS and a token file; ``alice`` may do everything (a super user)."""
    certs = tmp_path / "certs"
    run("dev-certs", "--out", str(certs))
    out = run("token", "new", "alice")
    token = next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("token: "))
    line = next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("token file line: "))
    tokens = tmp_path / "tokens"
    tokens.write_text(line + "\n")
    srv = ObeliskServer(tmp_path / "data", tmp_path / "server.log", extra_args=[
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--auth-token-file", str(tokens), "--super-users", "alice",
    ], ca=certs / "ca.pem").start()
    yield srv, certs / "ca.pem", token
    code = srv.stop()
    assert code == 0, f"obelisk exited with {code}; log:\n{srv.log()}"


def test_produce_and_consume_over_tls_with_a_token(secure):
    srv, ca, token = secure
    with Client(srv.addr, ca=ca, token=token, timeout=DEADLINE_S) as c:
        c.wait_ready(DEADLINE_S)
        with c.producer(batch_records=10) as producer:
            acks = [producer.send("secure", f"v{i}").result(timeout=DEADLINE_S) for i in range(20)]
        assert len(acks) == 20
        consumer = c.consumer("secure", "g")
        got = []
        while len(got) < 20:
            batch = consumer.poll(max_records=100, max_wait_ms=500)
            assert batch, "records went missing"
            got += batch
            consumer.commit(batch)
        assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(20))


def test_without_the_token_the_broker_says_unauthenticated(secure):
    srv, ca, _ = secure
    with Client(srv.addr, ca=ca, timeout=DEADLINE_S) as c:
        with pytest.raises(ObeliskError) as e:
            c.list_topics()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with Client(srv.addr, ca=ca, token="wrong", timeout=DEADLINE_S) as c:
        with pytest.raises(ObeliskError) as e:
            c.produce("secure", [])
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_plaintext_client_cannot_talk_to_a_tls_broker(secure):
    srv, _, token = secure
    with Client(srv.addr, token=token, timeout=2.0) as c:
        with pytest.raises(ObeliskError):
            c.list_topics()
