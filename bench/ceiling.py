"""Benchmark: the ceiling, the fastest plain program doing the pipeline's essential work on this machine and broker.

Two processes, one per core, as the pipeline has (processors, then the S3 sink), with none of its guarantees:
no transactions, no changelog, no journal, no exactly-once, no metrics.

- Stage 1: batch-consumes the Avro events (`consume(num_messages=...)`), decodes them with kafkatrail's
  compiled codec, validates each record into compact JSON, drops repeated eventIDs with a plain set, runs one
  selector pass over the trails, and produces each selected record to a scratch topic keyed by its delivery key
  (acks=1, lz4).
- Stage 2: batch-consumes the scratch topic and appends each record to its delivery key's log file, gzipped
  with the S3 sink's own writer (engine and level) and cut at PutObject-sized files (`s3.max_file_bytes` of
  JSON), kept in memory and dropped.

Prints events/s from the start of both stages until stage 2 has every selected record compressed: the pipeline's
end-to-end figure is read as a ratio to this one. Pre-publishes N simulated events (5% duplicates) to a fresh
events topic of the broker in KAFKATRAIL_BOOTSTRAP_SERVERS, or of a private local stack it starts and stops.

    .venv/bin/python bench/ceiling.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from e2e import prepublish
from workers import on_stack

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, shipped_file
from kafkatrail.core.topics import create_topics
from kafkatrail.processors.selectors import Selection
from kafkatrail.schemas.codec import default_codec
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.schemas.log_files import LogFileWriter
from kafkatrail.schemas.validation import validated_json
from kafkatrail.trails.definitions import load_trails

TRAILS = shipped_file("trails.demo.yaml")
CONSUME_BATCH = 10_000


def _consumer(settings: Settings, topic: str, group: str) -> Consumer:
    consumer = Consumer(kafka_config(settings, **{"group.id": group, "enable.auto.commit": False,
                                                  "auto.offset.reset": "earliest"}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    return consumer


def stage_one(settings: Settings, scratch_topic: str, events: int, selected: Any) -> None:
    """Decode, validate, dedupe and select every event; produce the selected records to `scratch_topic`; set
    `selected` to their number at the end."""
    consumer = _consumer(settings, settings.topics.events, f"{settings.topic_prefix}-ceiling-1")
    producer = Producer(kafka_config(settings, **{"acks": 1, "linger.ms": 20, "compression.type": "lz4",
                                                  "enable.idempotence": False}))
    decode, select = default_codec().decode, Selection(load_trails(TRAILS)).select
    seen: set[str] = set()
    taken = produced = 0
    while taken < events:
        for message in consumer.consume(CONSUME_BATCH, timeout=1.0):
            if message.error() is not None:
                continue
            taken += 1
            record = decode(message.value())
            body = validated_json(record)
            event_id = record["eventID"]
            if event_id in seen:
                continue
            seen.add(event_id)
            for trail in select(record):
                while True:
                    try:
                        producer.produce(scratch_topic, body, DeliveryKey.of_record(trail.arn, record).encode())
                        break
                    except BufferError:
                        producer.poll(0.05)
                produced += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    selected.value = produced


def stage_two(settings: Settings, scratch_topic: str, selected: Any, finished: Any) -> None:
    """Gzip every record of `scratch_topic` into its delivery key's log file, cut at `s3.max_file_bytes` of JSON;
    set `finished` to the monotonic time the last selected record was compressed."""
    consumer = _consumer(settings, scratch_topic, f"{settings.topic_prefix}-ceiling-2")
    engine, level, cut = settings.s3.gzip_engine, settings.s3.gzip_level, settings.s3.max_file_bytes
    files: dict[bytes, tuple[LogFileWriter, int]] = {}
    taken = 0
    while selected.value < 0 or taken < selected.value:
        for message in consumer.consume(CONSUME_BATCH, timeout=0.5):
            if message.error() is not None:
                continue
            taken += 1
            key, value = message.key(), message.value()
            writer, size = files.get(key) or (LogFileWriter(level, engine), 0)
            writer.add(value)
            size += len(value) + 1
            if size >= cut:
                writer.finish()
                writer, size = LogFileWriter(level, engine), 0
            files[key] = (writer, size)
    for writer, _ in files.values():
        writer.finish()
    finished.value = time.monotonic()
    consumer.close()


def run(bootstrap: str, count: int) -> None:
    prefix = f"benchceil{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    create_topics(settings)
    scratch_topic = f"{prefix}.ceiling-scratch"
    admin = AdminClient(kafka_config(settings))
    admin.create_topics([NewTopic(scratch_topic, settings.topic_partitions, 1)])[scratch_topic].result(30)
    began = time.perf_counter()
    simulator = prepublish(settings, count)
    print(f"pre-published {count:,} events ({simulator.duplicates:,} repeated eventIDs) in "
          f"{time.perf_counter() - began:.1f} s")
    context = multiprocessing.get_context("fork")
    selected, finished = context.Value("q", -1), context.Value("d", 0.0)
    started = time.monotonic()
    stages = [context.Process(target=stage_one, args=(settings, scratch_topic, count, selected)),
              context.Process(target=stage_two, args=(settings, scratch_topic, selected, finished))]
    for stage in stages:
        stage.start()
    for stage in stages:
        stage.join(timeout=120 + count / 2000)
        if stage.exitcode != 0:
            raise RuntimeError(f"a ceiling stage ended with {stage.exitcode}")
    elapsed = finished.value - started
    print(f"ceiling: {count / elapsed:,.0f} events/s ({count:,} events, {selected.value:,} selected records "
          f"gzipped ({settings.s3.gzip_engine} level {settings.s3.gzip_level}) in {elapsed:.1f} s; two processes, "
          "no transactions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events pre-published")
    args = parser.parse_args()
    on_stack(parser, lambda bootstrap, aws: run(bootstrap, args.events))


if __name__ == "__main__":
    main()
