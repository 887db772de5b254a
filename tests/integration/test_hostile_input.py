"""Valid records crafted to mislead the pipeline, on the real broker and moto's server."""

from __future__ import annotations

import dataclasses
import gzip
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics
from kafkatrail.schemas.codec import decode_event, encode_event
from kafkatrail.schemas.contract import DeliveryFailure
from kafkatrail.sinks.journal import FileSpan
from kafkatrail.stack import Endpoints
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import (
    Workers,
    delivered_pairs,
    expected_pairs,
    fresh_settings,
    publish,
    publish_raw,
    read_topic,
    simulate,
    wait_for_progress,
)
from tests.integration.test_s3_sink import aws_resources, pairs_in_files, stored_files, wait_until_stored


def test_a_nested_event_time_neither_crashes_the_sink_nor_reaches_the_journal(
        workers: Workers, aws_endpoint: str) -> None:
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    records = simulate(600, seed=41, duplicates=0.0)
    for record in records[::3]:  # userIdentity holds a member named eventTime, placed before the real one
        record["userIdentity"] = {"eventTime": "not-a-time", **record["userIdentity"]}
        assert list(record).index("userIdentity") < list(record).index("eventTime")
    publish(workers.settings, records)
    workers.start("processors")
    workers.start("s3")
    wait_until_stored(workers, timeout_s=120)
    workers.assert_alive()

    files = stored_files(aws_endpoint, trails)
    assert set(pairs_in_files(files, trails)) == expected_pairs(records, trails)
    times_by_key = {key: [r["eventTime"] for r in orjson.loads(gzip.decompress(body))["Records"]]
                    for (_, key), body in files.items()}
    spans = [FileSpan.from_journal(m.value()) for m in read_topic(workers.settings, workers.settings.topics.s3_journal)]
    stored = [span for kind, span in spans if kind == "stored"]
    assert len({span.object_key for span in stored}) == len(files)
    for span in stored:
        times = times_by_key[span.object_key]
        assert (span.oldest_event_time, span.newest_event_time) == (min(times), max(times))
        datetime.fromisoformat(span.oldest_event_time).astimezone(UTC)


def test_dedupe_keeps_the_first_record_against_clocks_keys_case_and_forgeries(
        settings: Settings, processors: Workers) -> None:
    """Finding 4 and 5: a record stamped 400 days ahead, copies in upper case, a record keyed otherwise, and a
    forged record published before the real one with its eventID."""
    records = simulate(300, seed=43, duplicates=0.0)
    first, future, real, other_key = records[:200], records[200], records[201], records[202]
    forged = {**real, "eventName": "DescribeTrails", "readOnly": True}
    ahead_ms = int((time.time() + 400 * 86_400) * 1000)
    messages: list[tuple[bytes, bytes, dict[str, Any]]] = []

    def send(record: dict[str, Any], key: str, **options: Any) -> None:
        messages.append((key.encode(), encode_event(record), options))

    for record in first:
        send(record, record["eventID"])
    send(future, future["eventID"], timestamp=ahead_ms)
    send(forged, forged["eventID"])
    send(real, real["eventID"])
    send(other_key, "not-its-event-id")
    upper_keyed = first[0]
    send(upper_keyed, upper_keyed["eventID"].upper())
    for i, record in enumerate(first):  # every record again: half as it was, half with the eventID in upper case
        copy = {**record, "eventID": record["eventID"].upper()} if i % 2 else record
        send(copy, record["eventID"])
    publish_raw(settings, messages)
    processors.start()
    wait_for_progress(settings, processors, 1.0)

    pairs = delivered_pairs(settings)
    assert set(pairs) == expected_pairs([*first, future, forged])
    assert max(pairs.values()) == 1
    dead = {decode_event(m.value())["eventID"]: dict(m.headers())["kafkatrail.reason"]
            for m in read_topic(settings, settings.topics.dlq)}
    assert dead == {real["eventID"]: b"conflict.eventID", other_key["eventID"]: b"invalid.key",
                    upper_keyed["eventID"]: b"invalid.key"}


def delivery_failures(settings: Settings) -> list[DeliveryFailure]:
    return [DeliveryFailure.decode(m.value()) for m in read_topic(settings, settings.topics.delivery_failures)]


def wait_for_failures(settings: Settings, workers: Workers, done: Callable[[list[DeliveryFailure]], bool],
                      timeout_s: float = 120) -> list[DeliveryFailure]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(failures := delivery_failures(settings)):
            return failures
        workers.assert_alive()
        time.sleep(1)
    raise AssertionError(f"delivery failures not as expected in {timeout_s} s: {failures}\n{workers.log_tail()}")


def test_files_a_bucket_refuses_are_parked_while_other_trails_flow_then_stored_or_released(
        stack: Endpoints, aws_endpoint: str, tmp_path: Path) -> None:
    """Finding 2: two trails whose buckets do not exist. Their files are parked (journal, delivery-failures)
    and the other trail's files flow; SIGTERM stops the sink in time; after a restart one trail is moved to a
    bucket that exists (its files are stored, once) and the other is deleted (its files are released)."""
    settings = fresh_settings(stack.bootstrap_servers, s3={"flush_interval_s": 1, "max_file_records": 2_000,
                                                           "parked_retry_interval_s": 3_600})
    create_topics(settings)
    with Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": aws_endpoint}) as workers:
        (management, eu_writes, s3_writes), _, _ = aws_resources(aws_endpoint)
        missing = uuid.uuid4().hex[:8]
        to_fix = dataclasses.replace(eu_writes, s3_bucket_name=f"missing-{missing}")
        to_delete = dataclasses.replace(s3_writes, s3_bucket_name=f"missing-{missing}-2", kms_key_id=None)
        apply_trails(settings, (management, to_fix, to_delete))
        records = simulate(3_000, seed=44, duplicates=0.0)
        publish(settings, records)
        workers.start("processors")
        workers.start("s3")
        wait_until_stored(workers)
        workers.assert_alive()

        pairs = pairs_in_files(stored_files(aws_endpoint, (management,)), (management,))
        assert set(pairs) == expected_pairs(records, (management,)) and max(pairs.values()) == 1
        parked = delivery_failures(settings)
        assert {(f.state, f.trail_arn, f.error_code) for f in parked} == {
            ("parked", to_fix.arn, "NoSuchBucket"), ("parked", to_delete.arn, "NoSuchBucket")}
        workers.terminate("s3", within_s=30)

        restarted = workers.start("s3")  # rebuilds the parked files from the journal and tries each once at once
        deadline = time.monotonic() + 90
        while restarted.log_file.read_text().count("parked log file refused again") < len(parked):
            assert time.monotonic() < deadline, workers.log_tail()
            workers.assert_alive()
            time.sleep(1)
        fixed = dataclasses.replace(to_fix, s3_bucket_name=eu_writes.s3_bucket_name)
        apply_trails(settings, (management, fixed), prune=True)
        ended = wait_for_failures(settings, workers, lambda found: sum(
            f.state in ("stored", "released") for f in found) >= len(parked))
        assert {(f.state, f.trail_arn) for f in ended if f.state != "parked"} == {
            ("stored", fixed.arn), ("released", to_delete.arn)}

        pairs = pairs_in_files(stored_files(aws_endpoint, (management, fixed)), (management, fixed))
        assert set(pairs) == expected_pairs(records, (management, fixed)) and max(pairs.values()) == 1
        journal = [FileSpan.from_journal(m.value()) for m in read_topic(settings, settings.topics.s3_journal)]
        stored_keys = Counter(span.object_key for kind, span in journal if kind == "stored")
        assert max(stored_keys.values()) == 1
        assert {key for _, key in stored_files(aws_endpoint, (management, fixed))} == set(stored_keys)
