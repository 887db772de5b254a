"""Benchmark: EventProducer.emit() throughput into a real local broker, one process.

Publishes N copies of a real ~1.7 KB CloudTrail record (each with its own eventID) with validation and
Avro single-object encoding, then waits for every acknowledgement. Prints events/s, the per-event cost
of validation and encoding alone, and peak RSS. Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS, or
starts (and stops) a private local stack.

    .venv/bin/python bench/produce.py [--events 200000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import uuid
from pathlib import Path

import orjson

from kafkatrail.settings import Settings, StackSettings
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.topics import create_topics
from producers.event_producer import EventProducer
from schemas.codec import encode_event
from schemas.validation import validate_event

SAMPLE = (Path(__file__).parents[1] / "tests/data/real/stratus-detonation-logs"
          / "aws.credential-access.ssm-retrieve-securestring-parameters.json")


def sample_records(count: int) -> list[dict]:
    template = min(orjson.loads(SAMPLE.read_bytes()), key=lambda r: abs(len(orjson.dumps(r)) - 1700))
    return [{**template, "eventID": str(uuid.UUID(int=i, version=4))} for i in range(count)]


def run(bootstrap: str, count: int) -> None:
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
    create_topics(settings)
    records = sample_records(count)
    size = len(orjson.dumps(records[0]))

    began = time.perf_counter()
    for record in records[:20_000]:
        encode_event(validate_event(record))
    cpu_us = (time.perf_counter() - began) / 20_000 * 1e6

    with EventProducer(settings) as producer:
        began = time.perf_counter()
        for record in records:
            producer.emit(record)
        producer.flush()
        elapsed = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events: {count} x {size} B (JSON), Avro single-object, lz4, acks=all, idempotent")
    print(f"throughput: {count / elapsed:,.0f} events/s ({elapsed:.2f} s, all acknowledged)")
    print(f"validate + encode alone: {cpu_us:.1f} us/event (ceiling {1e6 / cpu_us:,.0f} events/s)")
    print(f"peak RSS: {peak_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
        run(bootstrap, args.events)
        return
    stack = LocalStack(StackSettings(data_dir=Path(".cache/bench-stack"), kafka_port=free_port(),
                                     aws_port=free_port()))
    try:
        run(stack.up().bootstrap_servers, args.events)
    finally:
        stack.down()


if __name__ == "__main__":
    main()
