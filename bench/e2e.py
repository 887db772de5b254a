"""Benchmark: the pipeline end to end, events topic to CloudTrail log files in S3 (processors + S3 sink).

Throughput: pre-publishes N simulated events (5% duplicates) to a fresh events topic, applies the three
organization trails of deploy/trails.demo.yaml (their buckets renamed under the run's prefix and created in
the AWS stand-in, with the SNS topic they notify), then starts one `kafkatrail worker processors` and one
`kafkatrail worker s3` (5 s flush) together and times them until every event is stored: the processors'
committed offsets reach the end of the events topic, then the sink's reach the end of the delivery topic
(it commits past a record only once the file holding it is stored). Baseline, in the same run: a plain
confluent-kafka consumer reads the same delivery records, parses each with orjson and gzips
`{"Records":[...]}` batches of 10,000 to a local file; prints end to end / baseline. Latency: with both
workers running, publishes at a fixed rate and times each event from `emit()` to the moment the sink
announces (on the notifications topic, right after PutObject) the first file holding it; the new objects
are then listed and read from S3, so an event counts only if S3 has it. Uses the broker in
KAFKATRAIL_BOOTSTRAP_SERVERS and the AWS stand-in in AWS_ENDPOINT_URL (topics and buckets are left there),
or starts (and stops) a private local stack.

    .venv/bin/python bench/e2e.py [--events 200000] [--rate 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import orjson
from confluent_kafka import Consumer, TopicPartition
from workers import Worker, on_stack

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, settings_environment, shipped_file
from kafkatrail.core.topics import create_topics, reader, until_end
from kafkatrail.processors.selectors import Selection
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulate import simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.log_files import LogFileWriter
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails

TRAILS = shipped_file("trails.demo.yaml")
ROLES = ("processors", "s3")
FLUSH_INTERVAL_S = 5.0
TARGET_EVENTS_S = 20_000
TARGET_P99_OVER_FLUSH_S = 2.0
BASELINE_BATCH = 10_000
EVENTS_IN = "kafkatrail_processor_events_in_total"
SELECTED = "kafkatrail_processor_selected_events_total"
DUPLICATES = "kafkatrail_processor_duplicates_dropped_total"
INVALID = "kafkatrail_processor_invalid_events_total"
FILES = "kafkatrail_s3_files_written_total"
STORED = "kafkatrail_s3_events_delivered_total"
SKIPPED = "kafkatrail_s3_events_skipped_total"
SEED = 7
POLL_S = 0.2
KAFKA_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 60.0


class Offsets:
    """The processors' and the S3 sink's committed offsets against the ends of the topics they read."""

    def __init__(self, settings: Settings) -> None:
        self.groups = ((settings.processors.group_id, settings.topics.events),
                       (settings.s3.group_id, settings.topics.delivery))
        self.partitions = settings.topic_partitions
        self.readers = {group: Consumer(kafka_config(settings, **{"group.id": group})) for group, _ in self.groups}

    def at_ends(self) -> bool:
        """Processors first: once they are at the end, the delivery topic has its final end."""
        return all(self._caught_up(group, topic) for group, topic in self.groups)

    def _caught_up(self, group: str, topic: str) -> bool:
        reader = self.readers[group]
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        committed = reader.committed(tps, timeout=KAFKA_TIMEOUT_S)
        return all(max(tp.offset, 0) >= reader.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT_S)[1]
                   for tp in committed)

    def close(self) -> None:
        for consumer in self.readers.values():
            consumer.close()


def all_stored(workers: dict[str, Worker], offsets: Offsets) -> bool:
    """Both groups committed to the ends of their topics, and the sink counts every selected pair as stored.

    The second test is needed: when several batches of one delivery partition close together, the sink commits
    past those it has not written yet as soon as it has written the first.
    """
    if not offsets.at_ends():
        return False
    sink = workers["s3"].scrape()
    return sink[STORED] + sink[SKIPPED] >= workers["processors"].scrape()[SELECTED]


def wait_stored(workers: dict[str, Worker], offsets: Offsets, timeout_s: float, waiting_for: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not all_stored(workers, offsets):
        for worker in workers.values():
            worker.check(deadline, waiting_for)
        time.sleep(POLL_S)


def list_objects(s3: Any, buckets: list[str]) -> list[tuple[str, str]]:
    pages = s3.get_paginator("list_objects_v2")
    return [(bucket, item["Key"]) for bucket in buckets
            for page in pages.paginate(Bucket=bucket) for item in page.get("Contents", [])]


class Announcements:
    """When the S3 sink announced each file on the notifications topic, read in a thread from the topic's end.

    The sink announces a file right after PutObject succeeded, so the time it is read here bounds from above
    when the file was stored, within milliseconds. Listing the buckets every 100 ms instead (about 130 objects
    by the end) costs some 30% of a core in the AWS stand-in plus as much again parsing the listings here, on
    the cores the pipeline runs on.
    """

    def __init__(self, settings: Settings) -> None:
        topic = settings.topics.notifications
        self.consumer = Consumer(kafka_config(settings, **{"group.id": f"{settings.topic_prefix}-latency",
                                                          "enable.auto.commit": False}))
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        self.consumer.assign([TopicPartition(topic, tp.partition, self.consumer.get_watermark_offsets(
            tp, timeout=KAFKA_TIMEOUT_S)[1]) for tp in tps])
        self.files: dict[tuple[str, str], float] = {}
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._listen)
        self._thread.start()

    def _listen(self) -> None:
        while self._running.is_set():
            for message in self.consumer.consume(1000, timeout=POLL_S):
                if message.error() is None:
                    now = time.monotonic()
                    notice = orjson.loads(message.value())
                    for key in notice["s3ObjectKey"]:
                        self.files.setdefault((notice["s3Bucket"], key), now)

    def wait_for(self, files: set[tuple[str, str]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not files <= self.files.keys() and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def stop(self) -> None:
        self._running.clear()
        self._thread.join()
        self.consumer.close()


def create_destinations(trails: tuple[Trail, ...]) -> None:
    """The trails' buckets and SNS topics in the AWS stand-in (the S3 sink notifies after each file)."""
    s3, sns = boto3.client("s3"), boto3.client("sns")
    for trail in trails:
        s3.create_bucket(Bucket=trail.s3_bucket_name)
        if trail.sns_topic_name:
            sns.create_topic(Name=trail.sns_topic_name)


def prepublish(settings: Settings, count: int) -> TrafficSimulator:
    simulator = TrafficSimulator(TrafficModel(rate=1000, seed=SEED, duplicate_rate=0.05))
    with EventProducer(settings) as producer:
        simulate_to_kafka(simulator, producer, Limit(count=count), paced=False)
    return simulator


def measure_throughput(workers: dict[str, Worker], offsets: Offsets, started: float, count: int, duplicates: int,
                       buckets: list[str]) -> float:
    """Time the backlog from the workers' start until it is all stored; returns stored records/s."""
    deadline = started + START_TIMEOUT_S + count / 1000
    first = last = None
    while True:
        events_in = workers["processors"].scrape()[EVENTS_IN]
        now = time.monotonic()
        if first is None and events_in > 0:
            first = now
        if last is None and events_in >= count:
            last = now
        if last is not None and all_stored(workers, offsets):
            break
        for worker in workers.values():
            worker.check(deadline, f"storing {count:,} events (processed: {events_in:,.0f})")
        time.sleep(POLL_S)
    stored = time.monotonic()
    if first is None or last is None or first == last:
        raise RuntimeError("the whole backlog went in one scrape interval: raise --events")
    processor, sink = workers["processors"].scrape(), workers["s3"].scrape()
    elapsed = stored - started
    verdict = "met" if count / elapsed >= TARGET_EVENTS_S else "missed"
    print(f"workers started to all stored: {elapsed:.1f} s (first event processed after {first - started:.1f} s, "
          f"last after {last - started:.1f} s)")
    print(f"end to end: {count / elapsed:,.0f} events/s from the workers' start, "
          f"{count / (stored - first):,.0f} events/s from the first processed event "
          f"(target >= {TARGET_EVENTS_S:,}: {verdict}); processors alone {count / (last - first):,.0f} events/s")
    print(f"delivered: {processor[SELECTED]:,.0f} (trail, event) pairs, {processor[SELECTED] / elapsed:,.0f} pairs/s "
          f"end to end; S3 sink stored {sink[STORED]:,.0f} records ({sink[SKIPPED]:,.0f} skipped) in "
          f"{sink[FILES]:,.0f} files ({len(list_objects(boto3.client('s3'), buckets)):,} objects listed)")
    print(f"backlog: {processor[DUPLICATES]:,.0f} duplicates dropped of {duplicates:,} sent, "
          f"{processor[INVALID]:,.0f} dead-lettered")
    print("peak RSS (VmHWM): " + ", ".join(f"{w.role} {w.peak_rss_mib():.0f} MiB" for w in workers.values()))
    return sink[STORED] / elapsed


def gzipped(records: list[Any], settings: Settings) -> bytes:
    """A log file of `records` as the S3 sink writes it (its gzip engine and level)."""
    writer = LogFileWriter(settings.s3.gzip_level, settings.s3.gzip_engine)
    for record in records:
        writer.add(orjson.dumps(record))
    return writer.finish()[0]


def measure_baseline(settings: Settings, out_file: Path, timeout_s: float) -> float:
    """Consume the delivery topic, orjson.loads each record, gzip `{"Records":[...]}` batches to a file; records/s."""
    topic = settings.topics.delivery
    began = time.perf_counter()
    consumer = reader(settings, "baseline")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    batch: list[Any] = []
    written = 0
    try:
        with out_file.open("wb") as out:
            for message in until_end(consumer, range(settings.topic_partitions), timeout_s, f"baseline on {topic}"):
                batch.append(orjson.loads(message.value()))
                if len(batch) == BASELINE_BATCH:
                    out.write(gzipped(batch, settings))
                    written += len(batch)
                    batch = []
            if batch:
                out.write(gzipped(batch, settings))
                written += len(batch)
    finally:
        consumer.close()
    elapsed = time.perf_counter() - began
    print(f"baseline (confluent-kafka consume + orjson + the sink's gzip ({settings.s3.gzip_engine}) to a local file, "
          f"batches of {BASELINE_BATCH:,}): "
          f"{written / elapsed:,.0f} records/s ({written:,} delivery records in {elapsed:.2f} s, "
          f"{out_file.stat().st_size / 2**20:.1f} MiB written)")
    return written / elapsed


def measure_latency(workers: dict[str, Worker], offsets: Offsets, settings: Settings, trails: tuple[Trail, ...],
                    rate: int, seconds: float) -> None:
    """Publish `rate` events/s for `seconds`; time each from emit() to the announcement of the first file with it."""
    count = int(rate * seconds)
    records = list(TrafficSimulator(TrafficModel(rate=rate, seed=SEED + 1)).records(Limit(count=count)))
    selection = Selection(trails)
    expected = sum(1 for record in records if selection.select(record))
    buckets = sorted({trail.s3_bucket_name for trail in trails})
    s3 = boto3.client("s3")
    before = set(list_objects(s3, buckets))
    sent: dict[str, float] = {}
    announcements = Announcements(settings)
    try:
        with EventProducer(settings, **{"linger.ms": 1}) as producer:
            began = time.monotonic()
            emitted = 0
            while emitted < count:
                due = min(count, int((time.monotonic() - began) * rate) + 1)
                for record in records[emitted:due]:
                    now = time.monotonic()
                    sent[producer.emit(record)] = now
                emitted = due
                time.sleep(0.001)
            achieved = count / (time.monotonic() - began)
        wait_stored(workers, offsets, FLUSH_INTERVAL_S + CATCH_UP_TIMEOUT_S, f"storing the {count:,} paced events")
        new_files = set(list_objects(s3, buckets)) - before
        announcements.wait_for(new_files, CATCH_UP_TIMEOUT_S)
    finally:
        announcements.stop()
    arrived: dict[str, float] = {}
    for bucket, key in new_files & announcements.files.keys():
        stored = announcements.files[bucket, key]
        for record in orjson.loads(gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))["Records"]:
            event_id = record["eventID"]
            if event_id in sent:
                arrived[event_id] = min(arrived.get(event_id, stored), stored)
    latencies = sorted(arrived[event_id] - sent[event_id] for event_id in arrived)
    if len(latencies) < 2:
        raise RuntimeError(f"only {len(latencies)} paced event(s) were found in S3")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    target = FLUSH_INTERVAL_S + TARGET_P99_OVER_FLUSH_S
    print(f"latency at {achieved:,.0f} events/s for {seconds:g} s, flush {FLUSH_INTERVAL_S:g} s (emit() to the sink's "
          f"announcement of the first file holding the event): p50 {cuts[49]:.2f} s, p99 {cuts[98]:.2f} s, "
          f"max {latencies[-1]:.2f} s")
    print(f"  {len(latencies):,} of {expected:,} events a trail selects measured ({count:,} sent); "
          f"{len(new_files):,} new files listed, {len(new_files - announcements.files.keys())} never announced; "
          f"target p99 <= {target:g} s: {'met' if cuts[98] <= target else 'missed'}")


def run(bootstrap: str, count: int, rate: int, seconds: float) -> None:
    prefix = f"benche2e{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                        processors={"group_id": f"{prefix}-processors"},
                        s3={"group_id": f"{prefix}-s3", "flush_interval_s": FLUSH_INTERVAL_S})
    trails = tuple(replace(trail, s3_bucket_name=f"{prefix}-{trail.s3_bucket_name}") for trail in load_trails(TRAILS))
    buckets = sorted({trail.s3_bucket_name for trail in trails})
    create_topics(settings)
    create_destinations(trails)
    apply_trails(settings, trails)
    began = time.perf_counter()
    simulator = prepublish(settings, count)
    print(f"pre-published {count:,} events ({simulator.duplicates:,} repeated eventIDs) in "
          f"{time.perf_counter() - began:.1f} s; trails of {TRAILS.name} into s3://{', s3://'.join(buckets)}")

    env = {**os.environ, **settings_environment(settings)}
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-") as scratch:
        offsets = Offsets(settings)
        workers: dict[str, Worker] = {}
        try:
            started = time.monotonic()
            for role in ROLES:
                workers[role] = Worker(role, env, Path(scratch) / f"{role}.log")
            end_to_end = measure_throughput(workers, offsets, started, count, simulator.duplicates, buckets)
            baseline = measure_baseline(settings, Path(scratch) / "baseline.json.gz", START_TIMEOUT_S + count / 5000)
            print(f"end to end / baseline: {end_to_end / baseline:.2f} (records stored in S3 per second over the "
                  "throughput run, against the baseline's records per second)")
            measure_latency(workers, offsets, settings, trails, rate, seconds)
        finally:
            offsets.close()
            for worker in workers.values():
                ending = worker.stop()
                problems = worker.problems()
                print(f"{worker.role} worker {ending}; {len(problems)} log line(s) above info level")
                for line in problems[:3]:
                    print(f"    {line[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="backlog for the throughput phase")
    parser.add_argument("--rate", type=int, default=2_000, help="events/s of the latency phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency phase")
    args = parser.parse_args()
    on_stack(parser, lambda bootstrap, aws: run(bootstrap, args.events, args.rate, args.seconds))


if __name__ == "__main__":
    main()
