"""Obelisk client for Python: a thin layer over the stubs generated from ``proto/``.

    from obelisk_client import Client

    with Client("127.0.0.1:50051") as client:
        with client.producer() as producer:
            ack = producer.send("orders", b"hello", key=b"user-1").result()
        consumer = client.consumer("orders", "billing")
        records = consumer.poll()
        consumer.commit(records)
        # Or as a member of the group: the server assigns this member its partitions.
        with client.group_consumer("billing", ["orders"]) as member:
            records = member.poll()
            member.commit()

The generated messages and stub are ``obelisk_client.pb`` and ``obelisk_client.pb_grpc``.
"""

from ._generated.obelisk.v1 import broker_pb2 as pb
from ._generated.obelisk.v1 import broker_pb2_grpc as pb_grpc
from .client import Client
from .consumer import Consumer, Subscription
from .errors import ObeliskError
from .group import GroupConsumer
from .producer import Producer
from .shared import Delivery, SettleResult, SharedConsumer, SharedStream
from .records import Ack, Record, at_offset, at_timestamp, earliest, latest

#: The gRPC health-check service name of the broker.
HEALTH_SERVICE = "obelisk.v1.Broker"

__all__ = [
    "Ack", "Client", "Consumer", "Delivery", "GroupConsumer", "HEALTH_SERVICE", "ObeliskError",
    "Producer", "Record", "SettleResult", "SharedConsumer", "SharedStream", "Subscription", "at_offset", "at_timestamp", "earliest", "latest", "pb", "pb_grpc",
]
