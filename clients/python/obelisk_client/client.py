"""The connection to a broker, with the unary calls wrapped to raise :class:`ObeliskError`."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List, Optional, TypeVar, Union

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


PathOrPem = Union[str, os.PathLike, bytes]


def _pem(value: Optional[PathOrPem]) -> Optional[bytes]:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


class _Token(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
             grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call (plaintext or TLS alike)."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        metadata = list(d.metadata or []) + [self._header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class Client:
    """A channel to one broker, e.g. ``Client("127.0.0.1:50051")``.

    ``http://`` in the address is accepted and ignored (plaintext). The channel connects lazily;
    :meth:`wait_ready` waits for it. Use as a context manager, or call :meth:`close`.
    ``stub`` is the generated ``BrokerStub`` for calls this layer does not wrap.

    Security: ``ca`` (PEM bytes or a path) turns TLS on and is the CA trusted for the broker's
    certificate (``https://`` addresses use TLS with the system roots); ``cert`` and ``key`` are a
    client certificate for brokers that require one (mTLS); ``token`` is sent as
    ``authorization: Bearer <token>``. Each defaults to ``$OBELISK_CA``, ``$OBELISK_CERT``,
    ``$OBELISK_KEY``, ``$OBELISK_TOKEN``. ``server_name`` overrides the name checked in the
    broker's certificate.
    """

    def __init__(self, addr: str = "127.0.0.1:50051", *, timeout: float = 30.0,
                 options: Optional[List[tuple]] = None, ca: Optional[PathOrPem] = None,
                 cert: Optional[PathOrPem] = None, key: Optional[PathOrPem] = None,
                 token: Optional[str] = None, server_name: Optional[str] = None,
                 compression: Optional[str] = None):
        ca = ca if ca is not None else os.environ.get("OBELISK_CA")
        cert = cert if cert is not None else os.environ.get("OBELISK_CERT")
        key = key if key is not None else os.environ.get("OBELISK_KEY")
        token = token if token is not None else os.environ.get("OBELISK_TOKEN")
        tls = addr.startswith("https://") or ca is not None or cert is not None
        target = addr.removeprefix("http://").removeprefix("https://")
        opts = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ] + list(options or [])
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        self.addr = target
        self.timeout = timeout
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its key (cert= with key=)")
        # Transport compression of every message ("gzip"; the broker also accepts zstd, which
        # grpcio does not offer). None: uncompressed.
        codecs = {None: None, "gzip": grpc.Compression.Gzip}
        if compression not in codecs:
            raise ValueError(f"compression must be None or 'gzip', not {compression!r}")
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=_pem(ca),
                                                 private_key=_pem(key),
                                                 certificate_chain=_pem(cert))
            channel = grpc.secure_channel(target, creds, options=opts,
                                          compression=codecs[compression])
        else:
            channel = grpc.insecure_channel(target, options=opts,
                                            compression=codecs[compression])
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, _Token(token)) if token else channel
        self.stub = pb_grpc.BrokerStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; raises ObeliskError(UNAVAILABLE) on timeout."""
        try:
            grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)
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

    def group_consumer(self, group: str, topics: Iterable[str], **config: Any) -> "GroupConsumer":
        """A :class:`~obelisk_client.GroupConsumer`: joins ``group`` as a member consuming
        ``topics`` (the server assigns its partitions)."""
        from .group import GroupConsumer
        return GroupConsumer(self, group, topics, **config)

    def shared_consumer(self, topic: str, group: str, **config: Any) -> "SharedConsumer":
        """A :class:`~obelisk_client.SharedConsumer`: a worker of the shared group ``group``
        on ``topic`` (records locked to it one by one, settled in batches)."""
        from .shared import SharedConsumer
        return SharedConsumer(self, topic, group, **config)

    def shared_stream(self, topic: str, group: str, **config: Any) -> "SharedStream":
        """A :class:`~obelisk_client.SharedStream`: a worker of the shared group ``group`` on
        ``topic`` on one SharedConsume stream (records pushed to it, settled on the stream)."""
        from .shared import SharedStream
        return SharedStream(self, topic, group, **config)

    def describe_group(self, group: str) -> "pb.DescribeGroupResponse":
        """A group's committed offsets, state, epoch and members."""
        return call(self.stub.DescribeGroup, pb.DescribeGroupRequest(group=group),
                    timeout=self.timeout)

    def delete_group(self, group: str) -> None:
        """Deletes a group (refused with FAILED_PRECONDITION while members are connected)."""
        call(self.stub.DeleteGroup, pb.DeleteGroupRequest(group=group), timeout=self.timeout)

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
        self._raw_channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
