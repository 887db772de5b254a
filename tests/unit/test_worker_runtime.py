"""The worker runtime's loop: records reach the role before the end-of-partition events consumed with them,
errors are sorted out, and a stop raised as WorkerStopping still closes everything; readiness follows commits."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError

from kafkatrail.core.dependencies import Dependencies
from kafkatrail.core.metrics import Health
from kafkatrail.runtime.worker import CommitWatch, Worker, WorkerStopping


class FakeMessage:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def topic(self) -> str:
        return "cloudtrail.delivery"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


def end(partition: int, offset: int) -> FakeMessage:
    return FakeMessage(partition, offset, KafkaError(KafkaError._PARTITION_EOF))


class FakeConsumer:
    """Hands out prepared batches, then empty ones."""

    def __init__(self, batches: list[list[FakeMessage]]) -> None:
        self.batches = batches
        self.closed = False

    def consume(self, count: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics

    def close(self) -> None:
        self.closed = True


class FakeFeed:
    def catch_up(self) -> None: ...
    def poll(self) -> None: ...
    def close(self) -> None: ...


class Recorder(Worker):
    """A role that writes down what the runtime hands it, and stops after `rounds` batches."""

    def __init__(self, batches: list[list[FakeMessage]], rounds: int, fail_at: int | None = None) -> None:
        self.topic = "t"
        self.health = Health()
        self.trails = {}
        self._stopped = threading.Event()
        self.feed = FakeFeed()  # type: ignore[assignment]
        self.consumer = FakeConsumer(batches)
        self.commit_watch = CommitWatch()
        self.role = type("Role", (), {"group_id": "g"})()  # type: ignore[assignment]
        self.seen: list[tuple[str, int, int]] = []
        self.rounds, self.fail_at, self.finished = rounds, fail_at, False

    def handle_batch(self, records: list[Any]) -> None:
        self.seen.extend(("record", r.partition(), r.offset()) for r in records)
        self.rounds -= 1
        if self.rounds == self.fail_at:
            raise WorkerStopping
        if self.rounds <= 0:
            self.stop()

    def reached_end(self, partition: int, offset: int) -> None:
        self.seen.append(("end", partition, offset))

    def finish(self) -> None:
        self.finished = True


CASES = {
    "an end event after the records of the same batch": (
        [[FakeMessage(2, 7), FakeMessage(2, 8), end(2, 10)]],
        [("record", 2, 7), ("record", 2, 8), ("end", 2, 10)]),
    "an end event first in the batch still follows the batch's records": (
        [[end(1, 5), FakeMessage(2, 8)]],
        [("record", 2, 8), ("end", 1, 5)]),
    "errors that are not fatal are logged and dropped": (
        [[FakeMessage(0, 1, KafkaError(KafkaError._TRANSPORT)), FakeMessage(0, 1)]],
        [("record", 0, 1)]),
}


@pytest.mark.parametrize(("batches", "expected"), CASES.values(), ids=CASES.keys())
def test_records_reach_the_role_before_the_end_events_consumed_with_them(batches: list, expected: list) -> None:
    worker = Recorder(batches, rounds=1)
    worker.run()
    assert worker.seen == expected
    assert worker.finished and worker.consumer.closed and not worker.health.ready


def test_a_role_that_abandons_its_work_skips_finish_but_closes() -> None:
    worker = Recorder([[FakeMessage(0, 1)]], rounds=1, fail_at=0)
    worker.run()
    assert not worker.finished and worker.consumer.closed


def test_a_fatal_consumer_error_is_raised_and_the_consumer_closed() -> None:
    fatal = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    worker = Recorder([[FakeMessage(0, 1, fatal)]], rounds=3)
    with pytest.raises(Exception, match="fenced"):
        worker.run()
    assert worker.consumer.closed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_commits_keep_up_while_nothing_fetched_waits_or_an_offset_moves() -> None:
    clock = Clock()
    watch = CommitWatch(clock)
    where = ("cloudtrail.delivery", 0)
    watch.last_fetched[where] = 99  # records 0..99 fetched
    assert watch.verdict({where: 50}, due_s=120) is None
    clock.now += 100
    assert watch.verdict({where: 80}, due_s=120) is None  # moved
    clock.now += 100
    assert watch.verdict({where: 80}, due_s=120) is None  # 100 s without a move: within 120 s
    clock.now += 30
    assert watch.verdict({where: 80}, due_s=120) == "no commit for 130 s with 20 records waiting"
    clock.now += 10
    assert watch.verdict({where: 100}, due_s=120) is None  # everything fetched is committed


def test_an_idle_worker_with_nothing_waiting_stays_ready() -> None:
    clock = Clock()
    watch = CommitWatch(clock)
    where = ("cloudtrail.delivery", 3)
    watch.last_fetched[where] = 9
    for _ in range(10):
        clock.now += 600
        assert watch.verdict({where: 10}, due_s=120) is None
    assert watch.verdict({("cloudtrail.delivery", 4): -1001}, due_s=120) is None  # nothing fetched there yet


def test_readyz_names_stalled_commits_once_ready_otherwise() -> None:
    health = Health(dependencies=Dependencies())  # not the process's: other tests report Kafka and AWS down
    health.commits_stalled = "no commit for 130 s with 20 records waiting"
    assert health.not_ready_because() == "not ready"
    health.ready = True
    assert health.not_ready_because() == "no commit for 130 s with 20 records waiting"
    health.commits_stalled = None
    assert health.not_ready_because() is None
