"""Helpers for the pipeline's integration tests: worker subprocesses, progress, reading topics, expectations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message, TopicPartition

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics, group_progress, reader, until_end
from kafkatrail.processors.selectors import Selection
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.stack import Endpoints
from kafkatrail.trails.definitions import load_trails

TRAILS = load_trails(Path(__file__).parents[2] / "deploy" / "trails.demo.yaml")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def fresh_settings(bootstrap_servers: str, **sections: Any) -> Settings:
    """Settings with a fresh topic prefix and consumer groups, fast timeouts and no /metrics ports."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        bootstrap_servers=bootstrap_servers, topic_prefix=prefix,
        processors={"group_id": f"{prefix}-processors", "session_timeout_s": 6, "metrics_port": 0},
        s3={"group_id": f"{prefix}-s3", "insight_group_id": f"{prefix}-s3-insights", "metrics_port": 0,
            "session_timeout_s": 6, **sections.get("s3", {})},
        cloudwatch={"group_id": f"{prefix}-cloudwatch", "insight_group_id": f"{prefix}-cloudwatch-insights",
                    "metrics_port": 0, "flush_interval_s": 1, **sections.get("cloudwatch", {})},
        insights={"group_id": f"{prefix}-insights", "session_timeout_s": 6, "metrics_port": 0,
                  **sections.get("insights", {})})


def pipeline_settings(stack: Endpoints) -> Settings:
    """Fresh settings with 1 s S3 flushes and files of at most 2,000 records; their topics created."""
    settings = fresh_settings(stack.bootstrap_servers, s3={"flush_interval_s": 1, "max_file_records": 2_000})
    create_topics(settings)
    return settings


class Workers:
    """Starts and kills `kafkatrail worker <role>` subprocesses; stops whatever is left at the end."""

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.running: dict[str, list[subprocess.Popen[bytes]]] = {}
        self.env = {
            **os.environ,
            "KAFKATRAIL_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKATRAIL_TOPIC_PREFIX": settings.topic_prefix,
            "KAFKATRAIL_PROCESSORS__GROUP_ID": settings.processors.group_id,
            "KAFKATRAIL_PROCESSORS__SESSION_TIMEOUT_S": str(settings.processors.session_timeout_s),
            "KAFKATRAIL_S3__GROUP_ID": settings.s3.group_id,
            "KAFKATRAIL_S3__INSIGHT_GROUP_ID": settings.s3.insight_group_id,
            "KAFKATRAIL_CLOUDWATCH__INSIGHT_GROUP_ID": settings.cloudwatch.insight_group_id,
            "KAFKATRAIL_CLOUDWATCH__FLUSH_INTERVAL_S": str(settings.cloudwatch.flush_interval_s),
            "KAFKATRAIL_S3__FLUSH_INTERVAL_S": str(settings.s3.flush_interval_s),
            "KAFKATRAIL_S3__MAX_FILE_RECORDS": str(settings.s3.max_file_records),
            "KAFKATRAIL_S3__SESSION_TIMEOUT_S": str(settings.s3.session_timeout_s),
            "KAFKATRAIL_CLOUDWATCH__GROUP_ID": settings.cloudwatch.group_id,
            "KAFKATRAIL_INSIGHTS__GROUP_ID": settings.insights.group_id,
            "KAFKATRAIL_INSIGHTS__SESSION_TIMEOUT_S": str(settings.insights.session_timeout_s),
            **(env or {}),
        }

    def start(self, role: str = "processors") -> subprocess.Popen[bytes]:
        started = self.running.setdefault(role, [])
        log = (self.log_dir / f"{role}-{len(started)}.log").open("wb")
        command = [sys.executable, "-m", "kafkatrail.cli", "worker", role, "--metrics-port", "0"]
        if role in ("processors", "insights"):
            command += ["--instance-id", "p0"]
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    def latest(self, role: str = "processors") -> subprocess.Popen[bytes]:
        return self.running[role][-1]

    def kill(self, role: str = "processors") -> None:
        process = self.latest(role)
        process.kill()
        process.wait(10)

    def terminate(self, role: str = "processors", within_s: float = 30) -> None:
        """SIGTERM the latest worker of `role` and require a clean exit (status 0) within `within_s`."""
        process = self.latest(role)
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(within_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise AssertionError(f"the {role} worker ignored SIGTERM for {within_s} s:\n{self.log_tail()}") from None
        assert status == 0, f"the {role} worker exited with {status} on SIGTERM:\n{self.log_tail()}"

    def stop_all(self) -> None:
        processes = [p for started in self.running.values() for p in started]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def log_tail(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.log_dir.glob("*.log")))

    def assert_alive(self) -> None:
        for role, started in self.running.items():
            assert started[-1].poll() is None, f"the {role} worker exited:\n{self.log_tail()}"


def wait_for_progress(settings: Settings, workers: Workers, share: float, group_id: str | None = None,
                      topic: str | None = None, timeout_s: float = 180) -> None:
    """Wait until the group has committed `share` of the topic (default: the processors on the events)."""
    group_id = group_id or settings.processors.group_id
    topic = topic or settings.topics.events
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        committed, end = group_progress(settings, group_id, topic)
        if end and committed >= share * end:
            return
        workers.assert_alive()
        time.sleep(0.2)
    raise AssertionError(f"{group_id} did not reach {share:.0%} of {topic} in {timeout_s} s:\n{workers.log_tail()}")


def read_topic(settings: Settings, topic: str, isolation: str = "read_committed") -> list[Message]:
    """Every message a reader with `isolation` sees in `topic`, read to the end of each partition."""
    consumer = reader(settings, "test-reader", isolation)
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        return list(until_end(consumer, partitions, 120, topic))
    finally:
        consumer.close()


def delivered_pairs(settings: Settings) -> Counter[tuple[str, str]]:
    """(trail ARN, eventID) -> copies in the delivery topic."""
    pairs: Counter[tuple[str, str]] = Counter()
    for message in read_topic(settings, settings.topics.delivery):
        trail_arn = DeliveryKey.decode(message.key()).trail_arn
        pairs[trail_arn, orjson.loads(message.value())["eventID"]] += 1
    return pairs


def expected_pairs(records: list[dict[str, Any]], trails: Any = TRAILS) -> set[tuple[str, str]]:
    selection = Selection(trails)
    return {(trail.arn, record["eventID"]) for record in records for trail in selection.select(record)}


def simulate(count: int, seed: int, duplicates: float = 0.05, start: datetime = START) -> list[dict[str, Any]]:
    model = TrafficModel(rate=2_000, seed=seed, start=start, duplicate_rate=duplicates)
    return list(TrafficSimulator(model).records(Limit(count=count)))


def publish(settings: Settings, records: list[dict[str, Any]]) -> None:
    with EventProducer(settings) as producer:
        for record in records:
            producer.emit(record)
