"""The connection to a broker, with the unary calls wrapped to raise :class:`ObeliskError`."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, TypeVar

import grpc

from ._generated.obelisk.v1 import broker_pb2 as pb
from ._generated.obelisk.v1 import broker_pb2_grpc as pb_grpc
from .errors import ObeliskError
from .records import Ack

T = TypeVar("T")

#: The server's default largest gRPC message (64 MiB).
MAX_MESSAGE_BYTES = 64 << 20


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a stub method, turning ``grpc.RpcError`` into :class:`ObeliskError`."""
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:
        raise ObeliskError.from_rpc(e) from None


class Client:
    """A channel to one broker, e.g. ``Client("127.0.0.1:50051")``.

    ``http://`` in the address is accepted and ignored (plaintext). The channel connects lazily;
    :meth:`wait_ready` waits for it. Use as a context manager, or call :meth:`close`.
    ``stub`` is the generated ``BrokerStub`` for calls this layer does not wrap.
    """

    def __init__(self, addr: str = "127.0.0.1:50051", *, timeout: float = 30.0,
                 options: Optional[List[tuple]] = None, compression: Optional[str] = None):
        target = addr.removeprefix("http://")
        opts = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ] + list(options or [])
        self.addr = target
        self.timeout = timeout
        # Transport compression of every message ("gzip"; the broker also accepts zstd, which
        # grpcio does not offer). None: uncompressed.
        codecs = {None: None, "gzip": grpc.Compression.Gzip}
        if compression not in codecs:
            raise ValueError(f"compression must be None or 'gzip', not {compression!r}")
        self.channel = grpc.insecure_channel(target, options=opts,
                                             compression=codecs[compression])
        self.stub = pb_grpc.BrokerStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; raises ObeliskError(UNAVAILABLE) on timeout."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ObeliskError(grpc.StatusCode.UNAVAILABLE,
                               f"no broker answered at {self.addr} within {timeout}s") from None

    def producer(self, **config: Any) -> "Producer":
        """A batching :class:`~obelisk_client.Producer` on this channel."""
        from .producer import Producer
        return Producer(self, **config)

    def consumer(self, topic: str, group: str, **config: Any) -> "Consumer":
        """A :class:`~obelisk_client.Consumer` of ``topic`` in ``group``."""
        from .consumer import Consumer
        return Consumer(self, topic, group, **config)

    def produce(self, topic: str, records: Iterable["pb.ProducerRecord"]) -> List[Ack]:
        """Appends records in one unary call; returns once all are durable (one ack per record)."""
        resp = call(self.stub.Produce, pb.ProduceRequest(topic=topic, records=list(records)),
                    timeout=self.timeout)
        return [Ack(a.partition, a.offset) for a in resp.acks]

    def create_topic(self, name: str, partitions: int = 0, retention_ms: int = 0,
                     retention_bytes: int = 0) -> "pb.TopicDescription":
        """Creates a topic (0 = the server's default for each setting)."""
        cfg = pb.TopicConfig(partitions=partitions, retention_ms=retention_ms,
                             retention_bytes=retention_bytes)
        return call(self.stub.CreateTopic, pb.CreateTopicRequest(name=name, config=cfg),
                    timeout=self.timeout).topic

    def describe_topic(self, name: str) -> "pb.TopicDescription":
        """A topic's config and its partitions' offsets."""
        return call(self.stub.DescribeTopic, pb.DescribeTopicRequest(name=name),
                    timeout=self.timeout).topic

    def list_topics(self) -> List["pb.TopicDescription"]:
        """Every topic."""
        return list(call(self.stub.ListTopics, pb.ListTopicsRequest(), timeout=self.timeout).topics)

    def delete_topic(self, name: str) -> None:
        """Deletes a topic and its data."""
        call(self.stub.DeleteTopic, pb.DeleteTopicRequest(name=name), timeout=self.timeout)

    def close(self) -> None:
        """Closes the channel (calls in progress are cancelled)."""
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
