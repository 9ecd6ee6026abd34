"""The one exception type of the client: every broker error surfaces as :class:`ObeliskError`."""

from __future__ import annotations

from typing import Optional

import grpc

_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


class ObeliskError(Exception):
    """An error from the broker (or from talking to it).

    Attributes:
        code: the gRPC status code, e.g. ``grpc.StatusCode.INVALID_ARGUMENT``.
        message: the broker's explanation, meant for a person.
    """

    def __init__(self, code: grpc.StatusCode, message: str, *, not_leader: bool = False,
                 leader: Optional[str] = None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        #: The node is not the cluster leader (it stored nothing): send the call elsewhere.
        self.not_leader = not_leader
        #: The leader's gRPC address (``host:port``) a not-leader error names, when known.
        self.leader = leader

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> "ObeliskError":
        """Wraps a ``grpc.RpcError`` raised by a call."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        trailers = {}
        if hasattr(err, "trailing_metadata"):
            trailers = {k: v for k, v in (err.trailing_metadata() or ())}
        return cls(code or grpc.StatusCode.UNKNOWN, details or "",
                   not_leader="obelisk-not-leader" in trailers,
                   leader=trailers.get("obelisk-leader"))

    def never_sent(self) -> bool:
        """Whether the call never reached a broker (no connection could be made)."""
        m = self.message.lower()
        return self.code == grpc.StatusCode.UNAVAILABLE and (
            "connect" in m or "connection refused" in m)

    @classmethod
    def from_number(cls, number: int, message: str) -> "ObeliskError":
        """Builds the error from a google.rpc.Code number (as in a ProduceStream ack)."""
        return cls(_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN), message)
