"""The connection to a broker, with the unary calls wrapped to raise :class:`ObeliskError`."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, List, Optional, Sequence, TypeVar, Union

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

    Cluster (issue 17): ``addr`` may name several nodes (``"a:1,b:2,c:3"`` or a list, a follower
    first is fine). Writes then go to the leader: a not-leader answer points the client at the
    leader it names, an unreachable node at the next one (:meth:`follow`), and
    :meth:`produce`, :meth:`create_topic`, :meth:`delete_group` (and :meth:`unary` for any
    call) send the call again; the :class:`~obelisk_client.Producer` reconnects its stream there.
    """

    def __init__(self, addr: Union[str, Sequence[str]] = "127.0.0.1:50051", *,
                 timeout: float = 30.0,
                 options: Optional[List[tuple]] = None, ca: Optional[PathOrPem] = None,
                 cert: Optional[PathOrPem] = None, key: Optional[PathOrPem] = None,
                 token: Optional[str] = None, server_name: Optional[str] = None,
                 compression: Optional[str] = None):
        ca = ca if ca is not None else os.environ.get("OBELISK_CA")
        cert = cert if cert is not None else os.environ.get("OBELISK_CERT")
        key = key if key is not None else os.environ.get("OBELISK_KEY")
        token = token if token is not None else os.environ.get("OBELISK_TOKEN")
        # replication (issue 17): several nodes of a cluster ("a,b,c" or a list): calls go to
        # the leader, following not-leader answers and moving on from unreachable nodes.
        addrs = [a.strip() for a in (addr.split(",") if isinstance(addr, str) else addr)
                 if a.strip()]
        if not addrs:
            raise ValueError("no broker address given")
        tls = any(a.startswith("https://") for a in addrs) or ca is not None or cert is not None
        self.nodes = [a.removeprefix("http://").removeprefix("https://") for a in addrs]
        self._next_node = 1
        opts = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ] + list(options or [])
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        self.timeout = timeout
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its key (cert= with key=)")
        # Transport compression of every message ("gzip"; the broker also accepts zstd, which
        # grpcio does not offer). None: uncompressed.
        codecs = {None: None, "gzip": grpc.Compression.Gzip}
        if compression not in codecs:
            raise ValueError(f"compression must be None or 'gzip', not {compression!r}")
        creds = None
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=_pem(ca),
                                                 private_key=_pem(key),
                                                 certificate_chain=_pem(cert))
        self._channel_args = (creds, opts, codecs[compression], token)
        self._old_channels: List[grpc.Channel] = []
        self._open(self.nodes[0])

    def _open(self, target: str) -> None:
        """Points the client's channel and stub at the node ``target`` (host:port)."""
        creds, opts, compression, token = self._channel_args
        if creds is not None:
            channel = grpc.secure_channel(target, creds, options=opts, compression=compression)
        else:
            channel = grpc.insecure_channel(target, options=opts, compression=compression)
        old = getattr(self, "_raw_channel", None)
        self.addr = target
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, _Token(token)) if token else channel
        self.stub = pb_grpc.BrokerStub(self.channel)
        if old is not None:
            self._old_channels.append(old)  # calls still on it finish; closed with the client

    def follow(self, err: "ObeliskError") -> bool:
        """replication (issue 17): after ``err``, points the client at the cluster's leader (the
        one a not-leader error names) or, when the node could not be reached, at the next node
        given. Returns whether the next call should be sent again (nothing was stored)."""
        if err.not_leader:
            if err.leader and err.leader != self.addr:
                self._open(err.leader)
            return True  # no leader named yet (an election): retry after a pause
        if err.never_sent() and len(self.nodes) > 1:
            self._open(self.nodes[self._next_node % len(self.nodes)])
            self._next_node += 1
            return True
        return False

    def unary(self, method: str, request: Any, patience: Optional[float] = None) -> Any:
        """Calls ``method`` of the stub on the leader: follows not-leader answers and, while no
        node can be reached, tries the others, for up to ``patience`` seconds (default: the
        client's timeout). Any other error is raised at once: a call that reached a broker and
        failed may have been stored."""
        deadline = time.monotonic() + (self.timeout if patience is None else patience)
        pause = 0.02
        while True:
            try:
                return call(getattr(self.stub, method), request, timeout=self.timeout)
            except ObeliskError as e:
                if time.monotonic() + pause > deadline or not self.follow(e):
                    raise
            time.sleep(pause)
            pause = min(0.2, pause * 2)

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
        self.unary("DeleteGroup", pb.DeleteGroupRequest(group=group))

    def produce(self, topic: str, records: Iterable["pb.ProducerRecord"]) -> List[Ack]:
        """Appends records in one unary call; returns once all are durable (one ack per record)."""
        resp = self.unary("Produce", pb.ProduceRequest(topic=topic, records=list(records)))
        return [Ack(a.partition, a.offset) for a in resp.acks]

    def create_topic(self, name: str, partitions: int = 0, retention_ms: int = 0,
                     retention_bytes: int = 0) -> "pb.TopicDescription":
        """Creates a topic (0 = the server's default for each setting)."""
        cfg = pb.TopicConfig(partitions=partitions, retention_ms=retention_ms,
                             retention_bytes=retention_bytes)
        return self.unary("CreateTopic", pb.CreateTopicRequest(name=name, config=cfg)).topic

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
        for c in self._old_channels:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
