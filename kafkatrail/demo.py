"""`kafkatrail demo`: run kafkatrail on a throwaway local stack and show what happened.

The stack lives in `.cache/demo-stack` on free ports, so it never collides with a stack you run
yourself, and it is brought down however the demo ends.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer

from kafkatrail.settings import Settings
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.topics import create_topics

DEMO_STACK_DIR = Path(".cache/demo-stack")
DEMO_CALLS = [
    ("signin.amazonaws.com", "ConsoleLogin", "IAMUser", False),
    ("ec2.amazonaws.com", "RunInstances", "AssumedRole", False),
    ("ec2.amazonaws.com", "DescribeInstances", "AssumedRole", True),
    ("iam.amazonaws.com", "CreateUser", "Root", False),
    ("sts.amazonaws.com", "GetCallerIdentity", "AWSService", True),
    ("s3.amazonaws.com", "GetObject", "AssumedRole", True),
]


def _event(source: str, name: str, identity: str, read_only: bool) -> dict:
    return {
        "eventVersion": "1.11",
        "userIdentity": {"type": identity, "accountId": "111122223333"},
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "kafkatrail-demo",
        "requestParameters": None,
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": source != "s3.amazonaws.com",
        "recipientAccountId": "111122223333",
        "eventCategory": "Management" if source != "s3.amazonaws.com" else "Data",
    }


def run_demo(settings: Settings) -> int:
    """Bring a stack up, publish a handful of CloudTrail events, read them back, bring it down."""
    shutil.rmtree(DEMO_STACK_DIR, ignore_errors=True)
    stack = LocalStack(settings.stack.model_copy(update={
        "data_dir": DEMO_STACK_DIR, "kafka_port": free_port(), "aws_port": free_port()}))
    began = time.monotonic()
    endpoints = stack.up()
    try:
        settings = settings.model_copy(update={"bootstrap_servers": endpoints.bootstrap_servers})
        topics = create_topics(settings)
        print(f"\ntopics: {', '.join(f'{name} ({outcome})' for name, outcome in topics.items())}")

        events = [_event(*call) for call in DEMO_CALLS]
        producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "compression.type": "zstd"}))
        for event in events:
            producer.produce(settings.topics.events, key=event["eventID"], value=orjson.dumps(event))
        if producer.flush(30):
            raise RuntimeError("the demo's events were not all acknowledged by the broker within 30 s")
        print(f"produced {len(events)} events to {settings.topics.events}")

        consumer = Consumer(settings.kafka_config(**{
            "group.id": "kafkatrail-demo", "auto.offset.reset": "earliest", "enable.auto.commit": False}))
        consumer.subscribe([settings.topics.events])
        received = []
        deadline = time.monotonic() + 30
        while len(received) < len(events) and time.monotonic() < deadline:
            received.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        consumer.commit(asynchronous=False)
        consumer.close()

        print(f"consumed {len(received)} events in consumer group kafkatrail-demo (offsets committed):")
        for message in sorted(received, key=lambda m: (m.partition(), m.offset())):
            event = orjson.loads(message.value())
            print(f"  partition {message.partition()} offset {message.offset()}  {event['eventTime']}  "
                  f"{event['eventSource']:<22} {event['eventName']:<18} {event['userIdentity']['type']}")
        print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
        return 0 if len(received) == len(events) else 1
    finally:
        for line in stack.down():
            print(line)
