"""Which producer may write for which account, on a real broker with SASL/SCRAM-SHA-512 and the StandardAuthorizer.

The module starts its own local broker in SASL mode (`kafkatrail/stack/kafka_sasl.py`; no AWS stand-in, the
processor calls no AWS API). Producer principals `team-a` and `team-b` each may write only their own events
topic; the processor runs as the admin with `processors.sources` allowing team-a account 111111111111 and
team-b account 333333333333.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from kafkatrail.core.settings import Settings, StackSettings
from kafkatrail.core.topics import create_topics, group_progress
from kafkatrail.processors.selectors import Selection
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.schemas.codec import default_codec
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.stack import Endpoints, LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.topic import apply_trails
from kafkatrail.worker_process import WorkerProcess
from tests.integration.pipeline import TRAILS, Workers, read_topic, simulate

SASL_STACK_DIR = Path(".cache/test-stack-sasl")
TEAM_A, TEAM_B = "team-a", "team-b"
ALLOWED = {TEAM_A: "111111111111", TEAM_B: "333333333333"}
FOREIGN = "222222222222"  # an account neither source may write for


@pytest.fixture(scope="module")
def sasl_stack() -> Iterator[LocalStack]:
    """A broker with SASL_PLAINTEXT (SCRAM-SHA-512 only) and ACLs, on free ports; stopped after the module."""
    shutil.rmtree(SASL_STACK_DIR, ignore_errors=True)
    stack = LocalStack(StackSettings(data_dir=SASL_STACK_DIR, kafka_port=free_port(), aws_port=free_port(), sasl=True))
    try:
        stack.up(aws=False)
        yield stack
    finally:
        stack.down()


class Sources:
    """Fresh topics for one test: settings for the processor (admin) and the client config of each producer."""

    def __init__(self, stack: LocalStack) -> None:
        prefix = f"t{uuid.uuid4().hex[:10]}"
        endpoints: Endpoints = stack.endpoints()
        self.settings = Settings(
            bootstrap_servers=endpoints.bootstrap_servers, topic_prefix=prefix,
            kafka_client_config=endpoints.client_config(),
            processors={"group_id": f"{prefix}-processors", "session_timeout_s": 6, "metrics_port": 0,
                        "batch_max_events": 500,
                        "sources": [{"name": name, "accounts": [account]} for name, account in ALLOWED.items()]})
        self.topics = {name: self.settings.topics.source(name) for name in ALLOWED}
        # `up` on the running broker only adds what is missing: the principals' credentials and their ACLs.
        granted = LocalStack(stack.settings, producers=self.topics, say=lambda line: None).up(aws=False)
        assert granted.bootstrap_servers == endpoints.bootstrap_servers
        self.client_configs = {name: json.loads(stack.broker.sasl.client_config_file(name).read_text())
                               for name in ALLOWED}
        create_topics(self.settings)
        apply_trails(self.settings, TRAILS)

    def producer_settings(self, principal: str, **client_config: str) -> Settings:
        return self.settings.model_copy(update={"kafka_client_config": {**self.client_configs[principal],
                                                                        **client_config}})

    def publish(self, principal: str, records: list[dict[str, Any]]) -> None:
        with EventProducer(self.producer_settings(principal), topic=self.topics[principal]) as producer:
            for record in records:
                producer.emit(record)

    def progress(self) -> tuple[int, int]:
        """(offsets the processors committed, end offsets), summed over every source topic."""
        each = [group_progress(self.settings, self.settings.processors.group_id, t) for t in self.topics.values()]
        return sum(committed for committed, _ in each), sum(end for _, end in each)

    def wait_for_progress(self, workers: Workers, share: float, timeout_s: float = 45) -> tuple[int, int]:
        """Wait until the processors committed `share` of the sources; return that (committed, end)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed, end = self.progress()
            if end and committed >= share * end:
                return committed, end
            workers.assert_alive()
            time.sleep(0.2)
        raise AssertionError(f"the processors did not reach {share:.0%} of the sources:\n{workers.log_tail()}")


@pytest.fixture
def sources(sasl_stack: LocalStack) -> Sources:
    return Sources(sasl_stack)


@pytest.fixture
def processors(sources: Sources, tmp_path: Path) -> Iterator[Workers]:
    workers = Workers(sources.settings, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


def owned_by(records: list[dict[str, Any]], account_of: Any) -> list[dict[str, Any]]:
    """Copies of `records` with recipientAccountId set by `account_of(eventID)` (so every copy of an eventID
    belongs to the same account)."""
    return [{**record, "recipientAccountId": account_of(record["eventID"])} for record in records]


def delivered_triples(settings: Settings) -> Counter[tuple[str, str, str]]:
    """(trail ARN, account, eventID) -> copies in the delivery topic."""
    triples: Counter[tuple[str, str, str]] = Counter()
    for message in read_topic(settings, settings.topics.delivery):
        key = DeliveryKey.decode(message.key())
        triples[key.trail_arn, key.account, json.loads(message.value())["eventID"]] += 1
    return triples


def expected_triples(records: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    selection = Selection(TRAILS)
    return {(trail.arn, r["recipientAccountId"], r["eventID"]) for r in records for trail in selection.select(r)}


def headers(message: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in message.headers()}


@pytest.mark.parametrize("target", ["team-b's topic", "the shared events topic", "the delivery topic"])
def test_a_producer_can_write_only_its_own_topic(sources: Sources, target: str) -> None:
    topic = {"team-b's topic": sources.topics[TEAM_B], "the shared events topic": sources.settings.topics.events,
             "the delivery topic": sources.settings.topics.delivery}[target]
    record = simulate(1, seed=51, duplicates=0.0)[0]
    refused: list[int] = []
    with EventProducer(sources.producer_settings(TEAM_A), topic=topic,
                       on_error=lambda event_id, error: refused.append(error.code())) as producer:
        producer.emit(record)
    assert refused == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert read_topic(sources.settings, topic) == []

    sources.publish(TEAM_A, [record])  # its own topic: accepted
    assert len(read_topic(sources.settings, sources.topics[TEAM_A])) == 1


@pytest.mark.parametrize("client", ["no credentials", "wrong password", "unknown user", "PLAIN mechanism"])
def test_a_client_without_valid_scram_credentials_is_refused(sources: Sources, client: str) -> None:
    config = {
        "no credentials": {"security.protocol": "PLAINTEXT"},
        "wrong password": {**sources.client_configs[TEAM_A], "sasl.password": "not-the-password"},
        "unknown user": {**sources.client_configs[TEAM_A], "sasl.username": "mallory"},
        "PLAIN mechanism": {**sources.client_configs[TEAM_A], "sasl.mechanism": "PLAIN"},
    }[client]
    errors: list[KafkaError] = []
    failed: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": sources.settings.bootstrap_servers, **config, "log_level": 0,
                         "message.timeout.ms": 3000, "error_cb": errors.append,
                         "on_delivery": lambda error, message: failed.append(error)})
    producer.produce(sources.topics[TEAM_A], b"not even a record", b"key")
    assert producer.flush(15) == 0
    assert [error.code() for error in failed] == [KafkaError._MSG_TIMED_OUT]
    codes = {error.code() for error in errors}
    if client == "no credentials":
        assert KafkaError._ALL_BROKERS_DOWN in codes  # the broker hangs up on a client that skips SASL
    else:
        assert KafkaError._AUTHENTICATION in codes
    assert read_topic(sources.settings, sources.topics[TEAM_A]) == []


def test_records_for_an_account_the_source_may_not_write_for_are_dead_lettered(
        sources: Sources, tmp_path: Path) -> None:
    records = owned_by(simulate(2_000, seed=52, duplicates=0.0),
                       lambda event_id: FOREIGN if int(event_id[-1], 16) % 4 == 0 else ALLOWED[TEAM_A])
    foreign = [r for r in records if r["recipientAccountId"] == FOREIGN]
    allowed = [r for r in records if r["recipientAccountId"] == ALLOWED[TEAM_A]]
    assert 350 < len(foreign) < 650
    sources.publish(TEAM_A, records)

    workers = Workers(sources.settings, tmp_path)
    worker = WorkerProcess("processors", tmp_path / "processors.log", workers.env, ["--instance-id", "p0"])
    try:
        workers.running["processors"] = [worker]
        sources.wait_for_progress(workers, 1.0)
        label = 'kafkatrail_processor_invalid_events_total{reason="unauthorized.account"}'
        deadline = time.monotonic() + 10
        while worker.samples().get(label) != len(foreign):
            assert time.monotonic() < deadline, f"{label} is {worker.samples().get(label)}, not {len(foreign)}"
            time.sleep(0.2)
    finally:
        workers.stop_all()

    dead = read_topic(sources.settings, sources.settings.topics.dlq)
    decode = default_codec().decode
    assert sorted(decode(m.value())["eventID"] for m in dead) == sorted(r["eventID"] for r in foreign)
    for message in dead:
        assert message.key() == decode(message.value())["eventID"].lower().encode()
        found = headers(message)
        assert found["kafkatrail.reason"] == "unauthorized.account"
        assert found["kafkatrail.detail"] == (f"recipientAccountId: account {FOREIGN} is not on the allow-list of "
                                              f"source topic {sources.topics[TEAM_A]}")
        assert found["kafkatrail.source"].startswith(f"{sources.topics[TEAM_A]}/")
    delivered = delivered_triples(sources.settings)
    assert max(delivered.values()) == 1
    assert set(delivered) == expected_triples(allowed)
    assert not any(account == FOREIGN for _, account, _ in delivered)


def test_two_sources_killed_processor_exactly_once_and_one_dedupe_window_per_topic(
        sources: Sources, processors: Workers) -> None:
    team_a = owned_by(simulate(24_000, seed=53, duplicates=0.05),
                      lambda event_id: FOREIGN if int(event_id[-1], 16) % 4 == 0 else ALLOWED[TEAM_A])
    # team-b writes, first, records with eventIDs that team-a writes later, landing in the same partition
    # number of its own topic: one window per partition number would drop team-a's copies as duplicates.
    first_allowed = list({r["eventID"]: r for r in team_a if r["recipientAccountId"] == ALLOWED[TEAM_A]}.values())
    team_b = owned_by(first_allowed[:3_000], lambda event_id: ALLOWED[TEAM_B])
    sources.publish(TEAM_B, team_b)
    sources.publish(TEAM_A, team_a)

    began = time.monotonic()
    processors.start()
    # Progress is read just before the kill: after it, the killed process's open transaction holds the group's
    # offsets unstable until its successor fences it, so they cannot be read then.
    at_kill, end = sources.wait_for_progress(processors, 0.35)
    processors.kill()
    assert at_kill < end, "the processor had finished before the kill"
    processors.start()
    sources.wait_for_progress(processors, 1.0)
    elapsed = time.monotonic() - began
    processors.stop_all()

    delivered = delivered_triples(sources.settings)
    doubled = {triple: n for triple, n in delivered.items() if n > 1}
    assert not doubled, f"{len(doubled)} (trail, account, eventID) delivered more than once, e.g. {list(doubled)[:3]}"
    expected = expected_triples([r for r in team_a if r["recipientAccountId"] != FOREIGN] + team_b)
    assert set(delivered) == expected, (f"missing {len(expected - set(delivered))}, "
                                        f"unexpected {len(set(delivered) - expected)}")
    shared = {event_id for _, account, event_id in delivered if account == ALLOWED[TEAM_B]}
    assert shared and shared <= {event_id for _, account, event_id in delivered if account == ALLOWED[TEAM_A]}

    dead = read_topic(sources.settings, sources.settings.topics.dlq)
    decode = default_codec().decode
    assert Counter(decode(m.value())["eventID"] for m in dead) == Counter(
        r["eventID"] for r in team_a if r["recipientAccountId"] == FOREIGN)  # every copy, each once
    assert {headers(m)["kafkatrail.reason"] for m in dead} == {"unauthorized.account"}
    print(f"\nsources test: {len(team_a):,} team-a records ({len(dead):,} dead-lettered), {len(team_b):,} team-b, "
          f"1 SIGKILL at {at_kill / end:.0%} committed, {len(expected):,} (trail, account, eventID) delivered "
          f"exactly once in {elapsed:.1f} s")


def test_sasl_files_are_private_and_the_password_is_printed_nowhere(sasl_stack: LocalStack) -> None:
    sasl_folder = sasl_stack.broker.sasl.folder
    assert sasl_folder.stat().st_mode & 0o777 == 0o700
    private = [sasl_stack.broker.config, *sasl_folder.iterdir()]
    assert {path.stat().st_mode & 0o777 for path in private} == {0o600}
    assert not (sasl_folder / "format.args").exists()
    password = sasl_stack.broker.sasl.client_config()["sasl.password"]
    exports = sasl_stack.endpoints().shell_exports()
    assert password not in exports and "KAFKATRAIL_KAFKA_CLIENT_CONFIG" in exports
    for log in sasl_stack.broker.server_logs.iterdir():
        assert password not in log.read_text(errors="replace"), log
