"""kafkatrail.downstream on the real broker: the confluent-kafka generators (read_committed, skipping what does
not decode, committing only what the caller took, resuming in the group) and a real faust worker subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Producer

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics, group_progress
from kafkatrail.downstream import CloudTrailEvent, LogFileNotification, events, notifications
from kafkatrail.schemas.contract import DeliveryKey, Notification
from kafkatrail.stack import Endpoints
from kafkatrail.stack.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real" / "stratus-detonation-logs"
TEMPLATES = [record for path in sorted(REAL.glob("*.json"))[:3] for record in json.loads(path.read_text())]
TRAILS = ("arn:aws:cloudtrail:us-east-1:111122223333:trail/audit",
          "arn:aws:cloudtrail:eu-west-1:111122223333:trail/org")
IDLE_S = 6.0
FAUST_WAIT_S = 120.0

Message = tuple[bytes, bytes]


def _fresh(stack: Endpoints) -> Settings:
    settings = Settings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    create_topics(settings)
    return settings


def _notices(count: int) -> list[Message]:
    return [(TRAILS[i % 2].encode(), Notification("audit-bucket", (f"AWSLogs/{i}.json.gz",)).encode())
            for i in range(count)]


def _events(count: int) -> list[Message]:
    """Real CloudTrail records, each with a new eventID, keyed for the trail that alternates by index."""
    messages = []
    for i in range(count):
        record = {**TEMPLATES[i % len(TEMPLATES)], "eventID": str(uuid.uuid4())}
        messages.append((DeliveryKey.of_record(TRAILS[i % 2], record).encode(), orjson.dumps(record)))
    return messages


BAD_NOTICES: list[Message] = [(b"", Notification("b", ("k",)).encode()), (TRAILS[0].encode(), b"[]")]
BAD_EVENTS: list[Message] = [(b"no-bars", _events(1)[0][1]), (_events(1)[0][0], b"{not json")]


def _publish(settings: Settings, topic: str, messages: list[Message]) -> None:
    producer = Producer(settings.kafka_config())
    for key, value in messages:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _publish_transactions(settings: Settings, *batches: tuple[list[Message], bool]) -> None:
    """Each batch in its own transaction of a transactional producer, committed or (flushed, then) aborted."""
    producer = Producer(settings.kafka_config(**{"transactional.id": f"test-downstream-{uuid.uuid4()}"}))
    producer.init_transactions(30)
    for messages, commit in batches:
        producer.begin_transaction()
        for key, value in messages:
            producer.produce(settings.topics.delivery, value, key)
        if commit:
            producer.commit_transaction(30)
        else:
            assert producer.flush(30) == 0, "the aborted records must reach the broker before the abort"
            producer.abort_transaction(30)
    assert producer.flush(30) == 0


def test_notifications_commit_what_was_taken_and_a_second_reader_resumes(stack: Endpoints) -> None:
    settings = _fresh(stack)
    good = _notices(6)
    _publish(settings, settings.topics.notifications, good[:3] + BAD_NOTICES + good[3:])
    expected = [LogFileNotification.from_message(k, v) for k, v in good]
    group = f"{settings.topic_prefix}-readers"

    first = notifications(settings, group, from_beginning=True, timeout_s=30)
    taken = [next(first) for _ in range(3)]
    first.close()
    rest = list(notifications(settings, group, from_beginning=True, timeout_s=IDLE_S))

    assert taken[2] in rest, "the record in hand when the first reader closed was not done: it comes again"
    assert not set(taken[:2]) & set(rest), "records the first reader moved past are committed"
    assert sorted(taken[:2] + rest, key=lambda notice: notice.object_keys) == expected
    committed, end = group_progress(settings, group, settings.topics.notifications)
    assert committed == end, "running to the timeout commits every record, the skipped ones too"


def test_events_are_read_committed_and_undecodable_ones_skipped(stack: Endpoints) -> None:
    settings = _fresh(stack)
    committed_before, aborted, committed_after = _events(4), _events(3), _events(3)
    _publish_transactions(settings, (committed_before, True), (aborted, False), (committed_after + BAD_EVENTS, True))
    expected = sorted((CloudTrailEvent.from_message(k, v) for k, v in committed_before + committed_after),
                      key=lambda event: event.event_id)

    seen = sorted(events(settings, f"{settings.topic_prefix}-readers", from_beginning=True, timeout_s=IDLE_S),
                  key=lambda event: event.event_id)

    assert seen == expected, "every field equal, the raw bytes too"
    assert not {orjson.loads(value)["eventID"] for _, value in aborted} & {event.event_id for event in seen}


def test_a_faust_worker_receives_exactly_the_committed_records_as_models(stack: Endpoints, tmp_path: Path) -> None:
    from kafkatrail.downstream.faust import CloudTrailEventModel, DeliveryKeyModel, LogFileNotificationModel

    settings = _fresh(stack)
    notices, aborted, committed = _notices(4), _events(3), _events(5)
    # The aborted records precede the committed ones in the same partitions (same keys), so a reader that
    # saw them would have written them before the last committed record.
    _publish(settings, settings.topics.notifications, BAD_NOTICES + notices)
    _publish_transactions(settings, (aborted, False), (BAD_EVENTS + committed, True))
    expected_notices = [(n.trail_arn, LogFileNotificationModel(bucket=n.bucket, object_keys=list(n.object_keys)))
                        for n in (LogFileNotification.from_message(k, v) for k, v in notices)]
    expected_events = [
        (DeliveryKeyModel(trail_arn=e.trail_arn, account=e.account, region=e.region),
         CloudTrailEventModel(event_id=e.event_id, event_time=e.event_time, event_time_ms=e.event_time_ms,
                              event_source=e.event_source, event_name=e.event_name, record=e.record))
        for e in (CloudTrailEvent.from_message(k, v) for k, v in committed)]

    out, log_path = tmp_path / "received.jsonl", tmp_path / "faust-worker.log"
    env = {**os.environ, "KAFKATRAIL_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "KAFKATRAIL_TOPIC_PREFIX": settings.topic_prefix, "DOWNSTREAM_APP_ID": f"{settings.topic_prefix}-faust",
           "DOWNSTREAM_OUT": str(out)}
    command = [sys.executable, "-m", "faust", "-A", "tests.integration.faust_app", "worker", "-l", "warn",
               "--web-port", str(free_port())]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + FAUST_WAIT_S
        while _lines(out) < len(notices) + len(committed) and time.monotonic() < deadline:
            assert worker.poll() is None, f"the faust worker exited with {worker.returncode}:\n{_tail(log_path)}"
            time.sleep(0.5)
        time.sleep(1.0)  # room for anything extra to arrive
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)

    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    types = {(line["topic"], line["key_type"], line["value_type"]) for line in lines}
    assert types == {("notifications", "str", "LogFileNotificationModel"),
                     ("delivery", "DeliveryKeyModel", "CloudTrailEventModel")}, _tail(log_path)
    received_notices = [(line["key"], LogFileNotificationModel(**line["value"]))
                        for line in lines if line["topic"] == "notifications"]
    received_events = [(DeliveryKeyModel(**line["key"]), CloudTrailEventModel(**line["value"]))
                       for line in lines if line["topic"] == "delivery"]
    assert sorted(received_notices, key=lambda pair: pair[1].object_keys) == expected_notices
    assert sorted(received_events, key=lambda pair: pair[1].event_id) == sorted(
        expected_events, key=lambda pair: pair[1].event_id), "the committed records only, once each"
    worker_log = log_path.read_text(errors="replace")
    assert worker_log.count("skipped a record that does not decode") == len(BAD_NOTICES) + len(BAD_EVENTS), worker_log
    assert "Crashed" not in worker_log, worker_log


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
