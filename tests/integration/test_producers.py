"""Producers against the real broker: simulated traffic and replayed log files arrive whole, keyed by eventID."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import REGISTRY

from kafkatrail.core.settings import Settings
from kafkatrail.producers.event_producer import EventProducer, InvalidEventError
from kafkatrail.producers.replay import replay
from kafkatrail.producers.simulate import simulate_to_files, simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.codec import decode_event
from kafkatrail.stack import Endpoints

REAL_DATA = Path(__file__).parents[1] / "data" / "real"


@pytest.fixture
def settings(stack: Endpoints) -> Settings:
    """Settings whose events topic is fresh for each test."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=prefix)
    topic = settings.topics.events
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(30)
    return settings


def read_back(settings: Settings, expected: int) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer(settings.kafka_config(**{"group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}))
    consumer.subscribe([settings.topics.events])
    messages: list[tuple[bytes, bytes, int]] = []
    for _ in range(120):
        if len(messages) >= expected:
            break
        for message in consumer.consume(1000, timeout=0.5):
            assert message.error() is None
            messages.append((message.key(), message.value(), message.partition()))
    consumer.close()
    return messages


def test_simulated_traffic_with_duplicates_arrives_whole_and_keyed(settings: Settings) -> None:
    model = TrafficModel(rate=500, seed=7, start=datetime(2026, 3, 2, 9, tzinfo=UTC), duplicate_rate=0.05)
    simulator = TrafficSimulator(model)
    sent = list(TrafficSimulator(dataclasses.replace(model)).records(Limit(count=20_000)))

    with EventProducer(settings) as producer:
        emitted = simulate_to_kafka(simulator, producer, Limit(count=20_000), paced=False)
    assert emitted == 20_000
    assert 800 < simulator.duplicates < 1200, "about 5% of records repeat an eventID"

    messages = read_back(settings, emitted)
    assert len(messages) == emitted
    decoded = [decode_event(value) for _, value, _ in messages]
    assert all(key.decode() == event["eventID"] for (key, _, _), event in zip(messages, decoded, strict=True))
    assert sorted(e["eventID"] for e in decoded) == sorted(r["eventID"] for r in sent)
    partition_of: dict[bytes, set[int]] = {}
    for key, _, partition in messages:
        partition_of.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partition_of.values()), "copies of an eventID share a partition"
    by_id = {r["eventID"]: r for r in sent}
    assert all(event == by_id[event["eventID"]] for event in decoded), "records survive the Avro trip unchanged"


def test_replay_of_real_cloudtrail_records_and_simulated_log_files(settings: Settings, tmp_path: Path) -> None:
    written = simulate_to_files(
        TrafficSimulator(TrafficModel(rate=3, seed=2, start=datetime(2026, 3, 2, 9, tzinfo=UTC))),
        tmp_path / "bucket", Limit(duration_s=600))
    assert written and all("/AWSLogs/" in str(p) and p.name.endswith(".json.gz") for p in written)
    (tmp_path / "bad.json").write_text('{"Records": [{"eventID": "x"}, 17]}')

    with EventProducer(settings) as producer:
        summary = replay([REAL_DATA / "stratus-detonation-logs", tmp_path], producer, progress=False)

    simulated = sum(1 for _ in TrafficSimulator(TrafficModel(rate=3, seed=2, start=datetime(
        2026, 3, 2, 9, tzinfo=UTC))).records(Limit(duration_s=600)))
    assert summary.published == 310 + simulated
    assert summary.rejected == 2
    assert any(place.endswith("bad.json:0") for places in summary.reasons.values() for place in places)
    assert any(place.endswith("bad.json:1") for places in summary.reasons.values() for place in places)
    assert len(read_back(settings, summary.published)) == summary.published


def test_emit_refuses_an_invalid_record_and_names_the_field(settings: Settings) -> None:
    with EventProducer(settings) as producer, pytest.raises(InvalidEventError, match="eventTime"):
        producer.emit({**_valid_record(), "eventTime": "yesterday"})


def test_producer_defaults_can_be_overridden_and_every_accepted_record_is_counted(settings: Settings) -> None:
    def accepted_total() -> float:
        return REGISTRY.get_sample_value("kafkatrail_producer_events_accepted_total") or 0.0

    before = accepted_total()
    records = list(TrafficSimulator(TrafficModel(seed=3)).records(Limit(count=2500)))
    with EventProducer(settings, **{"linger.ms": 1, "compression.type": "zstd"}) as producer:
        for record in records:
            producer.emit(record)
    assert producer.accepted == 2500
    assert accepted_total() - before == 2500, "the counter is brought up to date by flush()"
    assert len(read_back(settings, 2500)) == 2500


def _valid_record() -> dict:
    return next(iter(TrafficSimulator(TrafficModel(seed=1)).records(Limit(count=1))))
