"""librdkafka's lines through kafkatrail's logs (`kafkatrail.core.kafka_clients`), and the `kafka` dependency."""

from __future__ import annotations

import json
import logging
import time

import pytest
from confluent_kafka import KafkaError, Producer
from prometheus_client import CollectorRegistry, Gauge

from kafkatrail.core.dependencies import Dependencies
from kafkatrail.core.kafka_clients import BrokerWarnings, ConnectionStates, LibrdkafkaLog, kafka_config, statistics
from kafkatrail.core.settings import load_settings

REFUSED = ("[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
           "Connection refused (after 0ms in state CONNECT)")
LOADING = ("[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: Broker: Coordinator "
           "load in progress: retrying")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fresh_dependencies() -> Dependencies:
    return Dependencies(Gauge("up", "test", ["dependency"], registry=CollectorRegistry()))


def router(clock: Clock, dependencies: Dependencies) -> tuple[LibrdkafkaLog, list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    target = logging.getLogger(f"test.kafka.{id(records)}")
    target.setLevel(logging.DEBUG)
    target.propagate = False
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    target.addHandler(handler)
    states = ConnectionStates(dependencies, clock)
    return LibrdkafkaLog("broker.example:9092", BrokerWarnings(60.0, clock), states, target), records


@pytest.mark.parametrize(("level", "facility", "text", "expected_level", "broker"), [
    (logging.ERROR, "FAIL", REFUSED, logging.WARNING, "127.0.0.1:1"),
    (logging.ERROR, "FAIL", "[thrd:b:9092/bootstrap]: b:9092/bootstrap: Failed to resolve 'b:9092': Name or "
                            "service not known", logging.WARNING, "b:9092"),
    (logging.WARNING, "GETPID", LOADING, logging.DEBUG, None),
    (logging.ERROR, "FAIL", "[thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Disconnected (after 600001ms in state UP)",
     logging.DEBUG, None),
    (logging.WARNING, "COORDINATOR", "Group coordinator not available: retrying", logging.DEBUG, None),
    (logging.ERROR, "AUTH", "SASL authentication error: Authentication failed during authentication due to "
                            "invalid credentials with SASL mechanism SCRAM-SHA-512", logging.ERROR, None),
    (logging.INFO, "CONFWARN", "Configuration property x is a producer property", logging.INFO, None),
])
def test_each_librdkafka_line_gets_its_level(level: int, facility: str, text: str, expected_level: int,
                                             broker: str | None) -> None:
    route, records = router(Clock(), fresh_dependencies())
    route.log(level, "%s [%s] %s", facility, "rdkafka#producer-1", text)
    [record] = records
    assert record.levelno == expected_level
    assert getattr(record, "broker", None) == broker
    assert record.facility == facility and record.client == "rdkafka#producer-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "text", "expected_level"), [
    (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down", logging.WARNING),
    (KafkaError._TRANSPORT, REFUSED, logging.WARNING),
    (KafkaError._TRANSPORT, "127.0.0.1:9092/1: Disconnected (after 10ms in state UP)", logging.DEBUG),
    (KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed", logging.WARNING),
])
def test_each_client_error_gets_its_level(code: int, text: str, expected_level: int) -> None:
    route, records = router(Clock(), fresh_dependencies())
    route.error(KafkaError(code, text))
    assert [record.levelno for record in records] == [expected_level]


def test_an_unreachable_broker_is_warned_about_once_then_at_a_bounded_rate() -> None:
    clock, dependencies = Clock(), fresh_dependencies()
    route, records = router(clock, dependencies)
    for second in range(0, 125):  # one failed connection a second for two minutes
        clock.now = float(second)
        route.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-2", REFUSED)
    warnings = [record for record in records if record.levelno == logging.WARNING]
    assert [record.created for record in warnings] == sorted(record.created for record in warnings)
    assert [(record.broker, record.repeated) for record in warnings] == [  # type: ignore[attr-defined]
        ("127.0.0.1:1", 0), ("127.0.0.1:1", 59), ("127.0.0.1:1", 59)]
    assert "kafkatrail stack up" in warnings[0].hint  # type: ignore[attr-defined]
    assert dependencies.down() == ["kafka"]


@pytest.mark.parametrize(("events", "down"), [
    ([], []),
    ([("fail", "c1", 0)], ["kafka"]),
    ([("fail", "c1", 0), ("stats", "c1", 5, "UP")], []),
    ([("fail", "c1", 0), ("stats", "c1", 5, "INIT")], ["kafka"]),
    ([("fail", "c1", 0), ("stats", "c2", 5, "UP")], ["kafka"]),  # another client's connection says nothing of c1
    ([("fail", "c1", 0), ("stats", "c2", 31, "UP")], []),  # c1 closed: no failure for longer than STALE_AFTER_S
])
def test_the_kafka_dependency_follows_failures_and_statistics(events: list[tuple], down: list[str]) -> None:
    clock, dependencies = Clock(), fresh_dependencies()
    states = ConnectionStates(dependencies, clock, stale_after_s=30.0)
    for kind, client, at, *state in events:
        clock.now = at
        if kind == "fail":
            states.failing(client)
        else:
            states.stats(json.dumps({"name": client, "brokers": {"b:9092/1": {"state": state[0]}}}))
    assert dependencies.down() == down


def test_the_callers_error_cb_still_runs_after_the_routing() -> None:
    seen: list[str] = []
    config = kafka_config(load_settings(), error_cb=lambda error: seen.append(error.name()))
    config["error_cb"](KafkaError(KafkaError._AUTHENTICATION, "refused"))
    assert seen == ["_AUTHENTICATION"]
    assert "stats_cb" not in config and "stats_cb" in kafka_config(load_settings(), **statistics())


def test_a_real_client_writes_no_raw_librdkafka_line(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("KAFKATRAIL_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    caplog.set_level(logging.DEBUG, logger="kafkatrail.kafka")
    producer = Producer(kafka_config(load_settings()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(r.levelno == logging.WARNING for r in caplog.records):
        producer.poll(0.2)
    producer.flush(0)
    out, err = capfd.readouterr()
    assert "%3|" not in err + out and "%4|" not in err + out
    assert any(r.levelno <= logging.WARNING and getattr(r, "broker", None) == "127.0.0.1:1" for r in caplog.records)
