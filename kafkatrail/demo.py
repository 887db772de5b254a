"""`kafkatrail demo`: run kafkatrail on a throwaway local stack and show what happened.

The stack lives in `.cache/demo-stack` on free ports, so it never collides with a stack you run
yourself, and it is brought down however the demo ends.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from kafkatrail.settings import PROJECT_ROOT, Settings
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.topics import create_topics
from processors.metrics import ProcessorMetrics
from processors.worker import ProcessorWorker
from producers.event_producer import EventProducer
from producers.simulate import simulate_to_kafka
from producers.simulator import Limit, TrafficModel, TrafficSimulator
from schemas.codec import encode_event
from trails.definitions import load_trails
from trails.topic import apply_trails

DEMO_STACK_DIR = Path(".cache/demo-stack")
DEMO_RECORDS = 3000
DEMO_DUPLICATE_RATE = 0.05
DEMO_MALFORMED_EACH = 5
DEMO_TRAILS = PROJECT_ROOT / "deploy" / "trails.demo.yaml"


def publish_malformed(settings: Settings) -> int:
    """A few messages the processor must refuse, to show the dead-letter topic at work."""
    valid = next(TrafficSimulator(TrafficModel(rate=1, seed=2)).records(Limit(count=1)))
    bad = [b"{\"eventID\": \"not avro\"}", b"\xc3\x01" + b"\x00" * 8 + b"\x02",
           encode_event({**valid, "eventTime": "yesterday"})] * DEMO_MALFORMED_EACH
    producer = Producer(settings.kafka_config())
    for value in bad:
        producer.produce(settings.topics.events, value)
    producer.flush(30)
    producer.close()
    return len(bad)


def run_processor_until_caught_up(settings: Settings) -> dict[str, float]:
    """Run a processor in this process until the events topic is fully processed; returns its counts."""
    registry = CollectorRegistry()
    worker = ProcessorWorker(settings.model_copy(update={"processors": settings.processors.model_copy(
        update={"group_id": "kafkatrail-demo-processors", "metrics_port": 0})}), ProcessorMetrics(registry))
    events = settings.topics.events
    total = sum(worker.consumer.get_watermark_offsets(TopicPartition(events, p), timeout=30)[1]
                for p in worker.consumer.list_topics(events, timeout=30).topics[events].partitions)
    thread = threading.Thread(target=worker.run, name="processor")
    began = time.monotonic()
    thread.start()
    deadline = began + 120
    while registry.get_sample_value("kafkatrail_processor_events_in_total") < total:
        if time.monotonic() > deadline or not thread.is_alive():
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - began
    worker.stop()
    thread.join(60)
    value = registry.get_sample_value
    invalid = sum(m.value for metric in registry.collect() for m in metric.samples
                  if m.name == "kafkatrail_processor_invalid_events_total")
    return {"in": value("kafkatrail_processor_events_in_total"), "invalid": invalid,
            "duplicates": value("kafkatrail_processor_duplicates_dropped_total"), "seconds": elapsed}


def _read_to_end(settings: Settings, topic: str) -> list[Message]:
    consumer = Consumer(settings.kafka_config(**{
        "group.id": "kafkatrail-demo-reader", "enable.auto.commit": False, "enable.partition.eof": True,
        "isolation.level": "read_committed"}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    pending, messages = set(partitions), []
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(10_000, timeout=0.5):
            if message.error() is None:
                messages.append(message)
            elif message.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
    consumer.close()
    return messages


def read_keys(settings: Settings, topic: str) -> list[str]:
    return [message.key().decode() for message in _read_to_end(settings, topic)]


def read_reasons(settings: Settings) -> list[str]:
    return [dict(message.headers())["kafkatrail.reason"].decode() for message in _read_to_end(settings,
                                                                                            settings.topics.dlq)]


def run_demo(settings: Settings) -> int:
    """Bring a stack up, publish simulated traffic, select it per trail with the processor, bring it down."""
    shutil.rmtree(DEMO_STACK_DIR, ignore_errors=True)
    stack = LocalStack(settings.stack.model_copy(update={
        "data_dir": DEMO_STACK_DIR, "kafka_port": free_port(), "aws_port": free_port()}))
    began = time.monotonic()
    endpoints = stack.up()
    try:
        settings = settings.model_copy(update={"bootstrap_servers": endpoints.bootstrap_servers})
        topics = create_topics(settings)
        print(f"\ntopics: {', '.join(f'{name} ({outcome})' for name, outcome in topics.items())}")

        simulator = TrafficSimulator(TrafficModel(rate=50, seed=1, duplicate_rate=DEMO_DUPLICATE_RATE))
        with EventProducer(settings) as producer:
            produced = simulate_to_kafka(simulator, producer, Limit(count=DEMO_RECORDS), paced=False)
        print(f"produced {produced} simulated CloudTrail records to {settings.topics.events} "
              f"(Avro single-object, keyed by eventID; {simulator.duplicates} repeat an earlier eventID)")

        malformed = publish_malformed(settings)
        print(f"produced {malformed} malformed messages among them (not Avro, unknown schema, bad eventTime)")

        applied = apply_trails(settings, load_trails(DEMO_TRAILS))
        print(f"trails on {settings.topics.trails}: {', '.join(arn.rsplit('/', 1)[1] for arn in sorted(applied))}")

        counts = run_processor_until_caught_up(settings)
        print(f"processor: {counts['in']} in, {counts['duplicates']} duplicates dropped, "
              f"{counts['invalid']} to {settings.topics.dlq}, in {counts['seconds']:.1f} s")

        by_trail = Counter(key.split("|")[0].rsplit("/", 1)[1] for key in read_keys(settings, settings.topics.delivery))
        print(f"{settings.topics.delivery} (read_committed), (trail, event) pairs by trail:")
        for trail, count in by_trail.most_common():
            print(f"  {count:>6}  {trail}")
        reasons = Counter(read_reasons(settings))
        print(f"{settings.topics.dlq}: " + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()))
        print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
        unique = produced - simulator.duplicates
        return 0 if counts["in"] == produced + malformed and counts["in"] - counts["duplicates"] - counts[
            "invalid"] == unique else 1
    finally:
        for line in stack.down():
            print(line)
