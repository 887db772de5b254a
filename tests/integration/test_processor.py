"""The processor against the real broker: exactly once under SIGKILL, dead letters, dedupe across restarts,
trail changes without a restart. The processor runs as `kafkatrail worker processors` in a subprocess."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafkatrail.settings import Settings
from kafkatrail.stack import Endpoints
from kafkatrail.topics import create_topics
from processors.selectors import Selection
from producers.event_producer import EventProducer
from producers.simulator import Limit, TrafficModel, TrafficSimulator
from schemas.codec import encode_event
from trails.definitions import load_trails
from trails.topic import apply_trails

TRAILS_FILE = Path(__file__).parents[2] / "deploy" / "trails.demo.yaml"
TRAILS = load_trails(TRAILS_FILE)
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def settings(stack: Endpoints) -> Settings:
    """Fresh topics and consumer group per test, with the three organization trails applied."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=prefix,
                        processors={"group_id": f"{prefix}-processors", "session_timeout_s": 6,
                                    "metrics_port": 0})
    create_topics(settings)
    apply_trails(settings, TRAILS)
    return settings


class Processors:
    """Starts and kills `kafkatrail worker processors` subprocesses; stops whatever is left at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "KAFKATRAIL_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKATRAIL_TOPIC_PREFIX": settings.topic_prefix,
            "KAFKATRAIL_PROCESSORS__GROUP_ID": settings.processors.group_id,
            "KAFKATRAIL_PROCESSORS__SESSION_TIMEOUT_S": str(settings.processors.session_timeout_s),
        }

    def start(self, instance_id: str = "p0") -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"processor-{instance_id}-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "kafkatrail.cli", "worker", "processors", "--instance-id", instance_id,
             "--metrics-port", "0"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def log_tail(self) -> str:
        return "\n".join(path.read_text()[-2000:] for path in sorted(self.log_dir.glob("processor-*.log")))


@pytest.fixture
def processors(settings: Settings, tmp_path: Path) -> Iterator[Processors]:
    runner = Processors(settings, tmp_path)
    try:
        yield runner
    finally:
        runner.stop_all()


def committed_and_end(settings: Settings) -> tuple[int, int]:
    """(offsets the processors' group has committed, messages in the events topic), summed over partitions."""
    consumer = Consumer(settings.kafka_config(**{"group.id": settings.processors.group_id}))
    try:
        topic = settings.topics.events
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=30))
        end = sum(consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps)
        return committed, end
    finally:
        consumer.close()


def wait_for_progress(settings: Settings, processors: Processors, share: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        committed, end = committed_and_end(settings)
        if committed >= share * end:
            return
        assert all(p.poll() is None for p in processors.running[-1:]), processors.log_tail()
        time.sleep(0.2)
    raise AssertionError(f"processors did not reach {share:.0%} of the input in {timeout_s} s:\n"
                         f"{processors.log_tail()}")


def read_committed(settings: Settings, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every message a read_committed reader sees in `topic`, read to the end of each partition."""
    consumer = Consumer(settings.kafka_config(**{
        "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "enable.partition.eof": True,
        "isolation.level": isolation, "enable.auto.commit": False}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    pending, messages = set(partitions), []
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(10_000, timeout=0.5):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            else:
                raise AssertionError(error.str())
    consumer.close()
    assert not pending, f"{topic}: partitions {sorted(pending)} not read to their end"
    return messages


def delivered_pairs(settings: Settings) -> Counter[tuple[str, str]]:
    """(trail ARN, eventID) -> copies in the delivery topic."""
    pairs: Counter[tuple[str, str]] = Counter()
    for message in read_committed(settings, settings.topics.delivery):
        trail_arn = message.key().decode().split("|")[0]
        pairs[trail_arn, orjson.loads(message.value())["eventID"]] += 1
    return pairs


def expected_pairs(records: list[dict[str, Any]], trails: Any = TRAILS) -> set[tuple[str, str]]:
    selection = Selection(trails)
    return {(trail.arn, record["eventID"]) for record in records for trail in selection.select(record)}


def simulate(count: int, seed: int, duplicates: float = 0.05) -> list[dict[str, Any]]:
    model = TrafficModel(rate=2_000, seed=seed, start=START, duplicate_rate=duplicates)
    return list(TrafficSimulator(model).records(Limit(count=count)))


def publish(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings) as producer:
        for record in records:
            producer.emit(record)


def test_sigkill_twice_mid_stream_loses_nothing_and_doubles_nothing(settings: Settings,
                                                                    processors: Processors) -> None:
    records = simulate(200_000, seed=11)
    repeats = len(records) - len({r["eventID"] for r in records})
    assert 8_000 < repeats < 12_000, "about 5% of the input repeats an eventID"
    publish(settings, records)

    began = time.monotonic()
    processors.start()
    for share in (0.3, 0.65):
        wait_for_progress(settings, processors, share)
        processors.running[-1].kill()
        processors.running[-1].wait(10)
        processors.start()
    wait_for_progress(settings, processors, 1.0)
    elapsed = time.monotonic() - began
    processors.stop_all()

    delivered = delivered_pairs(settings)
    expected = expected_pairs(records)
    doubled = {pair: n for pair, n in delivered.items() if n > 1}
    assert not doubled, f"{len(doubled)} (trail, eventID) pairs delivered more than once, e.g. {list(doubled)[:3]}"
    assert set(delivered) == expected, (f"missing {len(expected - set(delivered))}, "
                                        f"unexpected {len(set(delivered) - expected)}")
    assert len({trail for trail, _ in expected}) == 3
    aborted = len(read_committed(settings, settings.topics.delivery, "read_uncommitted")) - sum(delivered.values())
    print(f"\nkill test: {len(records):,} events ({repeats:,} repeats), 2 SIGKILLs, {len(expected):,} "
          f"(trail, eventID) pairs delivered exactly once in {elapsed:.1f} s; {aborted:,} records of "
          "transactions the kills interrupted stay invisible")


MALFORMED_KINDS = (
    lambda i, record: f"not avro {i}".encode(),                            # bad marker
    lambda i, record: orjson.dumps(record),                                # JSON instead of Avro
    lambda i, record: b"\xc3\x01" + i.to_bytes(8, "little"),               # unknown schema fingerprint
    lambda i, record: encode_event(record)[:60],                           # truncated body
    lambda i, record: encode_event({**record, "eventTime": "soon"}),       # valid Avro, invalid record
)


def test_malformed_input_goes_to_the_dead_letter_topic_and_no_valid_event_is_lost(
        settings: Settings, processors: Processors) -> None:
    records = simulate(5_000, seed=12, duplicates=0.0)
    valid = [(r["eventID"].encode(), encode_event(r)) for r in records]
    malformed = [(f"bad-{i}".encode(), MALFORMED_KINDS[i % len(MALFORMED_KINDS)](i, records[i]))
                 for i in range(1_000)]
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True}))
    for i, (key, value) in enumerate(valid):
        producer.produce(settings.topics.events, value, key)
        if i % 5 == 0:
            bad_key, bad_value = malformed[i // 5]
            producer.produce(settings.topics.events, bad_value, bad_key)
    assert producer.flush(30) == 0

    processors.start()
    wait_for_progress(settings, processors, 1.0)

    dead = read_committed(settings, settings.topics.dlq)
    assert sorted((m.key(), m.value()) for m in dead) == sorted(malformed)
    reasons = Counter(dict(m.headers())["kafkatrail.reason"].decode() for m in dead)
    assert reasons == {"undecodable.bad_marker": 400, "undecodable.unknown_fingerprint": 200,
                       "undecodable.truncated_body": 200, "invalid.eventTime.format": 200}
    details = {dict(m.headers())["kafkatrail.detail"].decode() for m in dead}
    assert any("eventTime" in text and "ISO-8601" in text for text in details)
    assert all(dict(m.headers())["kafkatrail.source"].startswith(settings.topics.events.encode()) for m in dead)
    assert set(delivered_pairs(settings)) == expected_pairs(records)


def test_a_duplicate_arriving_after_a_restart_is_still_dropped(settings: Settings, processors: Processors) -> None:
    first = simulate(2_000, seed=13, duplicates=0.0)
    publish(settings, first)
    processors.start()
    wait_for_progress(settings, processors, 1.0)
    processors.stop_all()

    later = simulate(1_000, seed=14, duplicates=0.0)
    publish(settings, first[:500] + later)
    processors.start()
    wait_for_progress(settings, processors, 1.0)

    delivered = delivered_pairs(settings)
    assert max(delivered.values()) == 1
    assert set(delivered) == expected_pairs(first + later)


def test_a_changed_trail_takes_effect_without_a_restart(settings: Settings, processors: Processors) -> None:
    processors.start()
    before = simulate(1_000, seed=15, duplicates=0.0)
    publish(settings, before)
    wait_for_progress(settings, processors, 1.0)

    everything_read = dataclasses.replace(TRAILS[0], name="org-everything", advanced_event_selectors=(
        {"Name": "all S3 data", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]},
                                                    {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]},
        {"Name": "all management", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
    ))
    new_trails = (*TRAILS[1:], everything_read)
    assert apply_trails(settings, new_trails)[TRAILS[0].arn] == "deleted"
    deadline = time.monotonic() + 30
    while f'"message":"trail removed","trail_arn":"{TRAILS[0].arn}"' not in processors.log_tail():
        assert time.monotonic() < deadline, f"the processor did not pick up the change:\n{processors.log_tail()}"
        time.sleep(0.1)
    after = simulate(1_000, seed=16, duplicates=0.0)
    publish(settings, after)
    wait_for_progress(settings, processors, 1.0)

    assert set(delivered_pairs(settings)) == expected_pairs(before) | expected_pairs(after, new_trails)
