"""Benchmark: one Insights worker (`kafkatrail worker insights`) on a backlog of delivery records.

Five trails with both InsightSelectors; 10,000 distinct units (50 APIs x 20 accounts x 10 regions, each
(API, account, region) logged by one of the trails), N write management events in event-time order over two
simulated days, 2 % of them failing with one of three error codes. The records are pre-published to a fresh
delivery topic as the processors would write them; then one Insights worker is started and timed until its
committed offsets reach the end of every partition. Prints records/s, the worker's peak RSS, and the state
size per unit (the latest changelog value of each unit key). Ceiling, in the same run: a plain
confluent-kafka consumer reading the same records, parsing each with orjson and counting it per unit and
minute. Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS, or starts (and stops) a private local stack.

    .venv/bin/python bench/insights.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from workers import Worker, committed_to_end, on_stack

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, settings_environment
from kafkatrail.core.topics import create_topics, reader, until_end
from kafkatrail.processors.insights_state import CLOCK_KEY
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails

SEED = 11
TRAILS = tuple(Trail(name=f"insights-{n}", home_region="eu-west-1", account_id="111122223333",
                     s3_bucket_name=f"insights-{n}", insight_selectors=(
                         {"InsightType": "ApiCallRateInsight"}, {"InsightType": "ApiErrorRateInsight"}))
               for n in range(1, 6))
APIS = tuple((f"service{n % 10}.amazonaws.com", f"Operation{n}") for n in range(50))
ACCOUNTS = tuple(f"{100000000000 + n}" for n in range(20))
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1",
           "ap-southeast-1", "ap-northeast-1", "sa-east-1")
ERROR_CODES = ("AccessDenied", "ThrottlingException", "ValidationException")
START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 2
TARGET_RECORDS_S = 50_000
KAFKA_TIMEOUT_S = 30.0


def units() -> list[tuple[Trail, str, str, str, str]]:
    """(trail, eventSource, eventName, account, region) of the 10,000 units, each (API, account, region) under one
    trail."""
    return [(TRAILS[(a * 31 + r * 7 + i) % len(TRAILS)], source, name, account, region)
            for i, (source, name) in enumerate(APIS) for a, account in enumerate(ACCOUNTS)
            for r, region in enumerate(REGIONS)]


def prepublish(settings: Settings, count: int) -> None:
    """`count` delivery records in event-time order over `DAYS` days, spread over every unit."""
    rng = random.Random(SEED)
    every = units()
    producer = Producer(kafka_config(settings, **{"linger.ms": 50, "compression.type": "lz4"}))
    span_s = DAYS * 86_400
    for n in range(count):
        trail, source, name, account, region = rng.choice(every)
        at = START + timedelta(seconds=n * span_s / count)
        record = {"eventVersion": "1.11", "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source,
                  "eventName": name, "awsRegion": region, "recipientAccountId": account, "readOnly": False,
                  "managementEvent": True, "eventCategory": "Management", "eventType": "AwsApiCall",
                  "userAgent": "aws-cli/2.15.0", "eventID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                  "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{account}:user/u{n % 7}"}}
        if rng.random() < 0.02:
            record["errorCode"] = rng.choice(ERROR_CODES)
        while True:
            try:
                producer.produce(settings.topics.delivery, orjson.dumps(record),
                                 f"{trail.arn}|{account}|{region}".encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(KAFKA_TIMEOUT_S * 4):
        raise RuntimeError("the delivery records were not all acknowledged")


def state_bytes(settings: Settings) -> tuple[int, int]:
    """(unit keys, bytes of their latest changelog values) in the Insights changelog."""
    latest: dict[tuple[int, bytes], int] = {}
    consumer = reader(settings, "bench-insights-state")
    topic = settings.topics.insights_changelog
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    try:
        for message in until_end(consumer, range(settings.topic_partitions), 120, f"reading {topic}"):
            if message.key() != CLOCK_KEY:
                latest[(message.partition(), message.key())] = len(message.value() or b"")
    finally:
        consumer.close()
    return len(latest), sum(latest.values())


def ceiling(settings: Settings, count: int) -> float:
    """Records/s of a plain consumer that parses every record and counts it per unit and minute."""
    consumer = reader(settings, "bench-insights-ceiling")
    topic = settings.topics.delivery
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    began = time.perf_counter()
    try:
        for message in until_end(consumer, range(settings.topic_partitions), 60 + count / 5000, f"reading {topic}"):
            record = orjson.loads(message.value())
            counts[(record["eventSource"], record["eventName"], record["recipientAccountId"], record["awsRegion"],
                    record["eventTime"][:16])] += 1
    finally:
        consumer.close()
    return sum(counts.values()) / (time.perf_counter() - began)


def run(bootstrap: str, count: int) -> None:
    prefix = f"benchins{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, insights={"group_id": f"{prefix}-insights"})
    create_topics(settings)
    apply_trails(settings, TRAILS)
    began = time.perf_counter()
    prepublish(settings, count)
    print(f"pre-published {count:,} delivery records of {len(units()):,} units ({len(TRAILS)} trails with "
          f"InsightSelectors, {DAYS} days of event time) in {time.perf_counter() - began:.1f} s")
    progress = Consumer(kafka_config(settings, **{"group.id": settings.insights.group_id}))
    env = {**os.environ, **settings_environment(settings)}
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-") as scratch:
        started = time.monotonic()
        worker = Worker("insights", env, Path(scratch) / "insights.log")
        try:
            deadline = started + 120 + count / 2000
            while not committed_to_end(progress, settings.topics.delivery, settings.topic_partitions):
                worker.check(deadline, f"reading {count:,} delivery records")
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            peak = worker.peak_rss_mib()
        finally:
            progress.close()
            ending = worker.stop()
    keys, size = state_bytes(settings)
    top = ceiling(settings, count)
    rate = count / elapsed
    verdict = "met" if rate >= TARGET_RECORDS_S else "missed"
    print(f"Insights worker: {rate:,.0f} records/s ({count:,} in {elapsed:.1f} s from its start; target >= "
          f"{TARGET_RECORDS_S:,}: {verdict}); ceiling {top:,.0f} records/s ({rate / top:.2f}x); "
          f"peak RSS {peak:.0f} MiB; state {size / max(keys, 1):,.0f} B per unit ({keys:,} unit keys, "
          f"{size / 2**20:.1f} MiB); worker {ending}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="delivery records pre-published")
    args = parser.parse_args()
    on_stack(parser, lambda bootstrap, aws: run(bootstrap, args.events))


if __name__ == "__main__":
    main()
