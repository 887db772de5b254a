"""Benchmark: one S3 sink (`kafkatrail worker s3`) draining a backlog on the delivery topic: rate and peak memory.

Pre-publishes the delivery records of N simulated events (5% duplicates dropped, the three organization trails
of deploy/trails.demo.yaml selecting, as the processors would write them) to a fresh delivery topic, then
starts one S3 sink and times it until its committed offsets reach the end of every partition and it counts
every record stored. The sink's peak RSS (VmHWM) is the figure that must not grow with the backlog. Ceiling,
in the same run: a plain confluent-kafka consumer reading the same records and gzipping them in batches of
10,000 at the sink's engine and level (no journal, no S3). Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS and
the AWS stand-in in AWS_ENDPOINT_URL, or starts (and stops) a private local stack.

    .venv/bin/python bench/s3_sink.py [--events 1000000] [--flush 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from e2e import create_destinations, measure_baseline
from workers import Worker, committed_to_end, on_stack

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, settings_environment, shipped_file
from kafkatrail.core.topics import create_topics
from kafkatrail.processors.selectors import Selection
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.topic import apply_trails

TRAILS = shipped_file("trails.demo.yaml")
SEED = 7
STORED = "kafkatrail_s3_events_delivered_total"
FILES = "kafkatrail_s3_files_written_total"
EARLY = "kafkatrail_s3_files_closed_early_total"
KAFKA_TIMEOUT_S = 30.0
POLL_S = 0.5


def prepublish(settings: Settings, count: int) -> int:
    """The delivery records of `count` simulated events (first copies only); returns how many were written."""
    selection = Selection(load_trails_for(settings))
    producer = Producer(kafka_config(settings, **{"linger.ms": 50, "compression.type": "lz4"}))
    seen: set[str] = set()
    written = 0
    for record in TrafficSimulator(TrafficModel(rate=1000, seed=SEED, duplicate_rate=0.05)).records(
            Limit(count=count)):
        if record["eventID"] in seen:
            continue
        seen.add(record["eventID"])
        body = orjson.dumps(record)
        for trail in selection.select(record):
            while True:
                try:
                    producer.produce(settings.topics.delivery, body, DeliveryKey.of_record(trail.arn, record).encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            written += 1
        producer.poll(0)
    if producer.flush(KAFKA_TIMEOUT_S * 4):
        raise RuntimeError("the delivery records were not all acknowledged")
    return written


def load_trails_for(settings: Settings) -> tuple:
    return tuple(replace(trail, s3_bucket_name=f"{settings.topic_prefix}-{trail.s3_bucket_name}")
                 for trail in load_trails(TRAILS))


def run(bootstrap: str, count: int, flush_s: float) -> None:
    prefix = f"benchs3{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                        s3={"group_id": f"{prefix}-s3", "flush_interval_s": flush_s})
    trails = load_trails_for(settings)
    create_topics(settings)
    create_destinations(trails)
    apply_trails(settings, trails)
    began = time.perf_counter()
    records = prepublish(settings, count)
    print(f"pre-published {records:,} delivery records of {count:,} events in {time.perf_counter() - began:.1f} s "
          f"(trails of {TRAILS.name}); sink flush interval {flush_s:g} s, max_open_bytes "
          f"{settings.s3.max_open_bytes / 2**20:.0f} MiB")
    reader = Consumer(kafka_config(settings, **{"group.id": settings.s3.group_id}))
    env = {**os.environ, **settings_environment(settings)}
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-") as scratch:
        started = time.monotonic()
        sink = Worker("s3", env, Path(scratch) / "s3.log")
        try:
            deadline = started + flush_s + 120 + records / 2000
            delivery, partitions = settings.topics.delivery, settings.topic_partitions
            while not (committed_to_end(reader, delivery, partitions) and sink.scrape()[STORED] >= records):
                sink.check(deadline, f"storing {records:,} delivery records")
                time.sleep(POLL_S)
            elapsed = time.monotonic() - started
            metrics = sink.scrape()
            peak, cpu_s = sink.peak_rss_mib(), sink.cpu_seconds()
        finally:
            reader.close()
            ending = sink.stop()
        ceiling = measure_baseline(settings, Path(scratch) / "ceiling.json.gz", 60 + records / 5000)
    rate = records / elapsed
    print(f"S3 sink: {records:,} records in {metrics[FILES]:,.0f} files ({metrics[EARLY]:,.0f} closed early) in "
          f"{elapsed:.1f} s from its start: {rate:,.0f} records/s, {rate / ceiling:.2f}x the ceiling; "
          f"sink CPU {cpu_s / records * 1e6:.1f} us per record; peak RSS {peak:.0f} MiB; sink {ending}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="simulated events whose records are the backlog")
    parser.add_argument("--flush", type=float, default=5.0, help="the sink's flush interval (s3.flush_interval_s)")
    args = parser.parse_args()
    on_stack(parser, lambda bootstrap, aws: run(bootstrap, args.events, args.flush))


if __name__ == "__main__":
    main()
