"""Fixtures: a real broker per test over a fresh temp data dir, and a client connected to it."""

from __future__ import annotations

import pytest

from obelisk_client import Client
from obelisk_server import ObeliskServer


@pytest.fixture
def server(tmp_path):
    """A running ``obelisk serve`` (see obelisk_server.py); its log is printed if the test fails."""
    srv = ObeliskServer(tmp_path / "data", tmp_path / "server.log").start()
    yield srv
    code = srv.stop()
    assert code == 0, f"obelisk exited with {code}; log:\n{srv.log()}"


@pytest.fixture
def client(server):
    """A :class:`Client` connected to ``server``."""
    with Client(server.addr, timeout=10.0) as c:
        c.wait_ready(10.0)
        yield c
