"""Helpers for the pipeline's integration tests: worker subprocesses, progress, reading topics, expectations."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message, Producer, TopicPartition

from kafkatrail.core.settings import Settings, settings_environment
from kafkatrail.core.topics import create_topics, group_progress, reader, until_end
from kafkatrail.processors.selectors import Selection
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.stack import Endpoints
from kafkatrail.trails.definitions import load_trails
from kafkatrail.worker_process import WorkerProcess

TRAILS = load_trails(Path(__file__).parents[2] / "deploy" / "trails.demo.yaml")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def fresh_settings(bootstrap_servers: str, **sections: Any) -> Settings:
    """Settings with a fresh topic prefix and consumer groups, fast timeouts and no /metrics ports."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    fast = {"session_timeout_s": 6, "metrics_port": 0}
    return Settings(
        bootstrap_servers=bootstrap_servers, topic_prefix=prefix,
        processors={"group_id": f"{prefix}-processors", **fast},
        s3={"group_id": f"{prefix}-s3", **fast, **sections.get("s3", {})},
        s3_insights={"group_id": f"{prefix}-s3-insights", **fast},
        cloudwatch={"group_id": f"{prefix}-cloudwatch", "flush_interval_s": 1, **fast,
                    **sections.get("cloudwatch", {})},
        cloudwatch_insights={"group_id": f"{prefix}-cloudwatch-insights", **fast},
        digests={"group_id": f"{prefix}-digests", **fast, **sections.get("digests", {})},
        insights={"group_id": f"{prefix}-insights", **fast, **sections.get("insights", {})},
        **sections.get("top", {}))


def pipeline_settings(stack: Endpoints) -> Settings:
    """Fresh settings with 1 s S3 flushes and files of at most 2,000 records; their topics created."""
    settings = fresh_settings(stack.bootstrap_servers, s3={"flush_interval_s": 1, "max_file_records": 2_000})
    create_topics(settings)
    return settings


class Workers:
    """Starts, stops and kills `kafkatrail worker <role>` child processes; stops whatever is left at the end (of a
    `with` block, or on `stop_all()`)."""

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.running: dict[str, list[WorkerProcess]] = {}
        self.env = {**os.environ, **settings_environment(settings), **(env or {})}

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(self, role: str = "processors", instance: str = "p0", metrics: bool = False) -> WorkerProcess:
        """Start a worker of `role`; a transactional one as `instance` (the same id fences its predecessor);
        with `metrics`, serving /metrics on a free port (`WorkerProcess.totals`)."""
        started = self.running.setdefault(role, [])
        args = ["--instance-id", instance] if role in ("processors", "insights") else []
        worker = WorkerProcess(role, self.log_dir / f"{role}-{len(started)}.log", self.env, args,
                               metrics_port=None if metrics else 0)
        started.append(worker)
        return worker

    def latest(self, role: str = "processors") -> WorkerProcess:
        return self.running[role][-1]

    def kill(self, role: str = "processors", index: int = -1) -> None:
        self.running[role][index].kill()

    def terminate(self, role: str = "processors", within_s: float = 30, index: int = -1) -> None:
        """SIGTERM the `index`th (default: latest) worker of `role` and require a clean exit (status 0) within
        `within_s`."""
        worker = self.running[role][index]
        ended = worker.stop(within_s)
        assert not ended.startswith("killed"), f"the {role} worker ignored SIGTERM for {within_s} s:\n{self.log_tail()}"
        status = worker.process.returncode
        assert status == 0, f"the {role} worker exited with {status} on SIGTERM:\n{self.log_tail()}"

    def stop_all(self) -> None:
        workers = [w for started in self.running.values() for w in started if w.alive()]
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.stop()

    def log_tail(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.log_dir.glob("*.log")))

    def assert_alive(self) -> None:
        for role, started in self.running.items():
            assert started[-1].alive(), f"the {role} worker exited:\n{self.log_tail()}"


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


def publish_raw(settings: Settings, messages: Iterable[tuple[bytes, bytes, dict[str, Any]]]) -> None:
    """Put each (key, value, options of `produce`) on the events topic as it is, past the SDK's checks."""
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True}))
    for key, value, options in messages:
        producer.produce(settings.topics.events, value, key, **options)
    assert producer.flush(30) == 0


def stop_process(process: subprocess.Popen[Any], within_s: float = 20) -> None:
    """SIGTERM a server the test started, and SIGKILL it if it is still there after `within_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(within_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
