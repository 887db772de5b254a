"""Supervisor: which failures rebuild a worker, which end the process, back-off, and one set of metrics."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from kafkatrail.runtime import supervisor as supervision
from kafkatrail.runtime.supervisor import Supervisor, SupervisorMetrics, recoverable


def kafka(code: int) -> KafkaException:
    return KafkaException(KafkaError(code, "test"))


RECOVERABLE = {
    "all brokers down": (kafka(KafkaError._ALL_BROKERS_DOWN), True),
    "transport": (kafka(KafkaError._TRANSPORT), True),
    "a request timed out": (kafka(KafkaError._TIMED_OUT), True),
    "no coordinator": (kafka(KafkaError.COORDINATOR_NOT_AVAILABLE), True),
    "leader moved": (kafka(KafkaError.NOT_LEADER_FOR_PARTITION), True),
    "a topic read not finished in time": (TimeoutError("journal: partitions [0] not read to their end"), True),
    "fenced by a newer instance": (kafka(KafkaError._FENCED), False),
    "producer fenced": (kafka(KafkaError.PRODUCER_FENCED), False),
    "bad password": (kafka(KafkaError.SASL_AUTHENTICATION_FAILED), False),
    "no right to the topic": (kafka(KafkaError.TOPIC_AUTHORIZATION_FAILED), False),
    "a bug": (ValueError("bug"), False),
}


@pytest.mark.parametrize(("exc", "expected"), RECOVERABLE.values(), ids=RECOVERABLE.keys())
def test_recoverable(exc: BaseException, expected: bool) -> None:
    assert recoverable(exc) is expected


class FakeWorker:
    """Fails with the next planned exception, or runs until stopped."""

    def __init__(self, failure: BaseException | None, metrics: Any, health: Any) -> None:
        self.failure = failure
        self.metrics = metrics if metrics is not None else object()
        self.health = health
        self.stopped = threading.Event()

    def run(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.stopped.wait(5)

    def stop(self) -> None:
        self.stopped.set()


def supervise(failures: list[BaseException | None]) -> tuple[Supervisor, list[FakeWorker]]:
    built: list[FakeWorker] = []

    def build(metrics: Any, health: Any) -> Any:
        built.append(FakeWorker(failures.pop(0) if failures else None, metrics, health))
        return built[-1]

    return Supervisor(build, SupervisorMetrics(CollectorRegistry())), built


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "FIRST_BACKOFF_S", 0.01)


def test_a_worker_failing_on_an_outage_is_rebuilt_with_the_same_metrics_and_health() -> None:
    supervisor, built = supervise([kafka(KafkaError._TRANSPORT), TimeoutError("slow"), None])
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    while len(built) < 3:
        runner.join(0.01)
    supervisor.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert len({id(worker.metrics) for worker in built}) == 1
    assert all(worker.health is supervisor.health for worker in built)
    assert supervisor.metrics.restarts.labels("_TRANSPORT")._value.get() == 1
    assert supervisor.metrics.restarts.labels("TimeoutError")._value.get() == 1


@pytest.mark.parametrize("failure", [kafka(KafkaError._FENCED), ValueError("bug")], ids=["fenced", "a bug"])
def test_a_failure_no_outage_explains_ends_the_run(failure: BaseException) -> None:
    supervisor, built = supervise([failure])
    with pytest.raises(type(failure)):
        supervisor.run()
    assert len(built) == 1


def test_a_stop_during_the_back_off_ends_the_run_without_another_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "FIRST_BACKOFF_S", 30.0)
    supervisor, built = supervise([kafka(KafkaError._ALL_BROKERS_DOWN)])
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    while not built:
        runner.join(0.01)
    supervisor.stop()
    runner.join(5)
    assert not runner.is_alive() and len(built) == 1
