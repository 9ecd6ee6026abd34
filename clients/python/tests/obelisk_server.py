"""Starts a real ``obelisk serve`` for tests: a free loopback port, a given data dir, readiness by
gRPC health check (bounded to ~10 s), and a clean SIGTERM stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
HEALTH_SERVICE = "obelisk.v1.Broker"


def obelisk_bin() -> Path:
    """``$OBELISK_BIN``, else ``<repo>/target/debug/obelisk``."""
    return Path(os.environ.get("OBELISK_BIN") or REPO / "target" / "debug" / "obelisk")


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (closed again; may race, so callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ObeliskServer:
    """One ``obelisk serve`` process over ``data_dir``; its log goes to ``data_dir/../<name>.log``."""

    def __init__(self, data_dir: Path, log_path: Path, extra_args: Sequence[str] = (),
                 ca: Optional[Path] = None):
        """``extra_args`` go to ``obelisk serve``; ``ca``: the server has TLS, trust this CA."""
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.ca = ca
        self.proc: Optional[subprocess.Popen] = None
        self.addr = ""

    def start(self, ready_timeout: float = 10.0, attempts: int = 3,
              addr: Optional[str] = None) -> "ObeliskServer":
        """Starts on a fresh port (or on ``addr``, e.g. the one it had before a restart); retries
        (on another fresh port) if the process exits early."""
        binary = obelisk_bin()
        if not binary.exists():
            raise RuntimeError(f"{binary} not found: build it with `cargo build --bin obelisk` "
                               "or set OBELISK_BIN")
        for _ in range(attempts):
            self.addr = addr or f"127.0.0.1:{free_port()}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(binary), "serve", "--data-dir", str(self.data_dir),
                     "--grpc-addr", self.addr, "--tcp-addr", "off", "--http-addr", "off",
                     *self.extra_args],
                    stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "OBELISK_LOG_LEVEL": "info"})
            if self._wait_ready(ready_timeout):
                return self
            self.stop()
        raise RuntimeError(f"obelisk did not become ready; log:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        """Health-checks until SERVING, the process exits, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        fast_retry = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                      ("grpc.max_reconnect_backoff_ms", 200)]
        if self.ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
            channel = grpc.secure_channel(self.addr, creds, options=fast_retry)
        else:
            channel = grpc.insecure_channel(self.addr, options=fast_retry)
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE),
                                      timeout=0.5, wait_for_ready=True)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass  # not listening yet: wait_for_ready already waited up to 0.5 s
        return False

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM and wait for the exit; SIGKILL (and raise) past ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"obelisk did not stop within {timeout}s of SIGTERM")
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or closed cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
