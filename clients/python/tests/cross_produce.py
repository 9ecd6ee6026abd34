"""Cross-language check, producer side: produces a fixed set of records (binary keys and values,
headers, explicit timestamps beyond 2^53) with the Python client, and writes what was stored to a
JSON file that the TypeScript and Rust consumers compare against.

    python3 cross_produce.py --addr 127.0.0.1:50051 --topic cross --out expected.json

The JSON: {"topic": T, "records": [{"partition", "offset", "timestamp_ns" (a decimal string),
"key", "value" (base64), "headers": {name: base64}}]}, in send order.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obelisk_client import Client  # noqa: E402


def records() -> list[dict]:
    """The records to send: each a dict of Producer.send keyword arguments."""
    base = 1_700_000_000_123_456_789  # not representable as a float64: catches lossy clients
    out = [
        dict(key=b"user-123", value=b"first", headers={"trace": b"\x01\x02"}, timestamp_ns=base),
        dict(key=b"\x00\xff\xfe", value=bytes(range(256)), headers={}, timestamp_ns=base + 1),
        dict(key=b"", value=b"explicit partition, empty key", headers={"a": b"", "b": b"\xff"},
             timestamp_ns=base + 2, partition=1),
        dict(key=b"k", value=b"", headers={"h\u00e9ader-\u65e5\u672c": "v\u00e9".encode()},
             timestamp_ns=1),
        dict(key="clé".encode(), value=b"x" * 100_000, headers={"big": b"y" * 1000},
             timestamp_ns=base + 4),
    ]
    out += [dict(key=f"key-{i % 3}".encode(), value=f"value-{i}".encode(),
                 headers={"i": str(i).encode()}, timestamp_ns=base + 100 + i) for i in range(20)]
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def main() -> int:
    parser = argparse.ArgumentParser(description="Produce the cross-language records.")
    parser.add_argument("--addr", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True, help="where to write the expected records (JSON)")
    args = parser.parse_args()

    sent = records()
    with Client(args.addr) as client:
        client.wait_ready(timeout=10)
        with client.producer(batch_records=8, linger_ms=5) as producer:
            futures = [producer.send(args.topic, **r) for r in sent]
            acks = [f.result(timeout=30) for f in futures]
    expected = [{
        "partition": ack.partition,
        "offset": ack.offset,
        "timestamp_ns": str(r["timestamp_ns"]),
        "key": b64(r["key"]),
        "value": b64(r["value"]),
        "headers": {k: b64(v) for k, v in r["headers"].items()},
    } for r, ack in zip(sent, acks)]
    Path(args.out).write_text(json.dumps({"topic": args.topic, "records": expected}, indent=1))
    print(f"produced {len(expected)} records to {args.topic}; expected records in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
