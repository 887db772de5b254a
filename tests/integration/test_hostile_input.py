"""Valid records crafted to mislead the pipeline, on the real broker and moto's server."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Producer

from kafkatrail.schemas.codec import decode_event, encode_event
from kafkatrail.sinks.journal import FileSpan
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import (
    TRAILS,
    Workers,
    delivered_pairs,
    expected_pairs,
    publish,
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


def test_dedupe_keeps_the_first_record_against_clocks_keys_case_and_forgeries(workers: Workers) -> None:
    """Finding 4 and 5: a record stamped 400 days ahead, copies in upper case, a record keyed otherwise, and a
    forged record published before the real one with its eventID."""
    settings = workers.settings
    apply_trails(settings, TRAILS)
    records = simulate(300, seed=43, duplicates=0.0)
    first, future, real, other_key = records[:200], records[200], records[201], records[202]
    forged = {**real, "eventName": "DescribeTrails", "readOnly": True}
    ahead_ms = int((time.time() + 400 * 86_400) * 1000)
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True}))

    def send(record: dict[str, Any], key: str, **options: Any) -> None:
        producer.produce(settings.topics.events, encode_event(record), key.encode(), **options)

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
    assert producer.flush(30) == 0
    workers.start("processors")
    wait_for_progress(settings, workers, 1.0)

    pairs = delivered_pairs(settings)
    assert set(pairs) == expected_pairs([*first, future, forged])
    assert max(pairs.values()) == 1
    dead = {decode_event(m.value())["eventID"]: dict(m.headers())["kafkatrail.reason"]
            for m in read_topic(settings, settings.topics.dlq)}
    assert dead == {real["eventID"]: b"conflict.eventID", other_key["eventID"]: b"invalid.key",
                    upper_keyed["eventID"]: b"invalid.key"}
