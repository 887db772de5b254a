"""`kafkatrail demo`: run kafkatrail on a throwaway local stack and show what happened.

The stack lives in `.cache/demo-stack` on free ports, so it never collides with a stack you run
yourself, and it is brought down however the demo ends.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer

from kafkatrail.settings import Settings
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.topics import create_topics
from producers.event_producer import EventProducer
from producers.simulate import simulate_to_kafka
from producers.simulator import Limit, TrafficModel, TrafficSimulator
from schemas.codec import decode_event

DEMO_STACK_DIR = Path(".cache/demo-stack")
DEMO_RECORDS = 3000
DEMO_DUPLICATE_RATE = 0.05


def run_demo(settings: Settings) -> int:
    """Bring a stack up, publish simulated CloudTrail traffic, read it back, bring it down."""
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

        consumer = Consumer(settings.kafka_config(**{
            "group.id": "kafkatrail-demo", "auto.offset.reset": "earliest", "enable.auto.commit": False}))
        consumer.subscribe([settings.topics.events])
        events = []
        deadline = time.monotonic() + 30
        while len(events) < produced and time.monotonic() < deadline:
            events.extend(decode_event(m.value()) for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
        consumer.commit(asynchronous=False)
        consumer.close()

        unique = len({event["eventID"] for event in events})
        print(f"consumed and decoded {len(events)} records in consumer group kafkatrail-demo "
              f"({unique} distinct eventIDs); by service and category:")
        for (source, category), count in Counter((e["eventSource"], e["eventCategory"]) for e in events).most_common():
            print(f"  {count:>6}  {source:<24} {category}")
        errors = Counter(e["errorCode"] for e in events if "errorCode" in e)
        print(f"errors: {sum(errors.values())} ({', '.join(f'{code} {n}' for code, n in errors.most_common(4))})")
        print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
        return 0 if len(events) == produced else 1
    finally:
        for line in stack.down():
            print(line)
