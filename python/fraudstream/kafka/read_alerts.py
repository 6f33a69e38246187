"""Prints the committed alerts of a topic, as a ``read_committed`` consumer sees them.

python -m fraudstream.kafka.read_alerts --topic alerts [--bootstrap 127.0.0.1:9092] [--follow]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from confluent_kafka import Consumer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="alerts")
    ap.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    args = ap.parse_args(argv)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"read-alerts-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    idle = 0
    try:
        while args.follow or idle < 5:
            msgs = consumer.consume(500, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                value = m.value()
                if m.error() is None and value is not None:
                    print(json.dumps(json.loads(value)), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or piped into `head`
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
