"""Valid records crafted to mislead the pipeline, on the real broker and moto's server."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson

from kafkatrail.sinks.journal import FileSpan
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, expected_pairs, publish, read_topic, simulate
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
