"""A tiny TCP proxy for fault tests: forwards a loopback port to the broker, can swallow what the
broker sends on the connections open now (``hold``: an ack is stored but never arrives), and can
cut those connections (``cut``); connections made afterwards pass through."""

from __future__ import annotations

import socket
import threading
from typing import List


class _Conn:
    def __init__(self, downstream: socket.socket, upstream: socket.socket):
        self.downstream = downstream
        self.upstream = upstream
        self.held = False

    def close(self) -> None:
        for s in (self.downstream, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class CutProxy:
    """``CutProxy("127.0.0.1:port")``; ``addr`` is where clients connect. A context manager."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._conns: List[_Conn] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:  # the broker is down (restarting): refuse this one
                downstream.close()
                continue
            conn = _Conn(downstream, upstream)
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(conn, downstream, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(conn, upstream, downstream, True),
                             daemon=True).start()

    @staticmethod
    def _pipe(conn: _Conn, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_broker and conn.held:
                    continue  # swallowed: the client never sees it
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def hold(self) -> None:
        """From now on, what the broker sends on the open connections is dropped."""
        with self._lock:
            for c in self._conns:
                c.held = True

    def cut(self) -> None:
        """Closes every open connection (both sides); new connections pass through."""
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def __enter__(self) -> "CutProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
