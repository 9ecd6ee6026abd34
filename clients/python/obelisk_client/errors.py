"""The one exception type of the client: every broker error surfaces as :class:`ObeliskError`."""

from __future__ import annotations

import grpc

_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


class ObeliskError(Exception):
    """An error from the broker (or from talking to it).

    Attributes:
        code: the gRPC status code, e.g. ``grpc.StatusCode.INVALID_ARGUMENT``.
        message: the broker's explanation, meant for a person.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> "ObeliskError":
        """Wraps a ``grpc.RpcError`` raised by a call."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")

    @classmethod
    def from_number(cls, number: int, message: str) -> "ObeliskError":
        """Builds the error from a google.rpc.Code number (as in a ProduceStream ack)."""
        return cls(_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN), message)
