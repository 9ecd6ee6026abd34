"""Quickstart: produce a few records, read them back as a consumer group, commit.

    obelisk serve &                      # gRPC on 127.0.0.1:50051
    python3 examples/quickstart.py [--addr 127.0.0.1:50051] [--topic quickstart]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from obelisk_client import Client, ObeliskError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--topic", default="quickstart")
    parser.add_argument("--group", default="quickstart-readers")
    args = parser.parse_args()

    with Client(args.addr) as client:
        client.wait_ready(timeout=5)

        # Batched, pipelined produce: send() returns a future of the ack.
        with client.producer(linger_ms=5) as producer:
            futures = [producer.send(args.topic, f"hello {i}", key=f"user-{i % 3}",
                                     headers={"source": "quickstart"}) for i in range(10)]
            for f in futures:
                ack = f.result(timeout=10)  # durable once this returns (fsync mode by default)
                print(f"stored at partition {ack.partition} offset {ack.offset}")

        # Read as a group; commit after processing (at-least-once).
        consumer = client.consumer(args.topic, args.group)
        records = consumer.poll(max_wait_ms=1000)
        for r in records:
            print(f"p{r.partition}@{r.offset} key={r.key.decode()} value={r.value.decode()}")
        committed = consumer.commit(records)
        print(f"committed next offsets {committed}")

        try:
            client.consumer("bad/topic", args.group).poll(max_wait_ms=0)
        except ObeliskError as e:
            print(f"errors carry a code and a message: {e.code.name}: {e.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
