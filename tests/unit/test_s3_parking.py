"""ParkedFiles: which refused log files wait, when they are due, what the journal rebuilds, what stays pinned."""

from __future__ import annotations

import dataclasses

import pytest

from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.s3_parking import ParkedFiles

TRAIL_A = "arn:aws:cloudtrail:us-east-1:111122223333:trail/a"
TRAIL_B = "arn:aws:cloudtrail:us-east-1:111122223333:trail/b"


def span(first: int, partition: int = 0, trail: str = TRAIL_A, key: str = "old") -> FileSpan:
    return FileSpan(partition=partition, delivery_key=f"{trail}|111122223333|us-east-1", first_offset=first,
                    last_offset=first + 9, bucket="b", object_key=f"{key}/{first}.json.gz", records=10,
                    sha256="0" * 64, compressed_bytes=100, oldest_event_time="2026-01-01T00:00:00Z",
                    newest_event_time="2026-01-01T00:00:01Z", delivered_at="2026-01-01T00:05:00Z")


# journal records in order (kind, first offset, object key folder) -> parked first offsets and their keys afterwards
JOURNALS = {
    "a parked file is parked": ([("file", 0, "old"), ("parked", 0, "old")], {0: "old/0.json.gz"}),
    "stored after parking ends it": ([("parked", 0, "old"), ("stored", 0, "old")], {}),
    "released after parking ends it": ([("parked", 0, "old"), ("released", 0, "old")], {}),
    "a new key journaled for it moves it": ([("parked", 0, "old"), ("file", 0, "new")], {0: "new/0.json.gz"}),
    "moved, then stored under the new key": ([("parked", 0, "old"), ("file", 0, "new"), ("stored", 0, "new")], {}),
    "files never parked are not tracked": ([("file", 0, "old"), ("stored", 0, "old"), ("file", 10, "old")], {}),
    "parked twice (rebuilt after a crash) is one file": ([("parked", 0, "old"), ("parked", 0, "old")],
                                                          {0: "old/0.json.gz"}),
    "two files, one ends": ([("parked", 0, "old"), ("parked", 10, "old"), ("stored", 10, "old")],
                            {0: "old/0.json.gz"}),
}


@pytest.mark.parametrize(("journal", "expected"), JOURNALS.values(), ids=JOURNALS.keys())
def test_the_journal_rebuilds_the_parked_files(journal: list[tuple[str, int, str]], expected: dict[int, str]) -> None:
    parked = ParkedFiles(300)
    for offset, (kind, first, key) in enumerate(journal):
        parked.apply(kind, span(first, key=key), offset, "NoSuchBucket", now=1000)
    due = parked.due(1000)
    assert {f.span.first_offset: f.span.object_key for f in due} == expected
    assert all(f.error == "NoSuchBucket" for f in due)


def test_a_parked_file_is_due_after_the_interval_or_when_its_trail_changes() -> None:
    parked = ParkedFiles(300)
    parked.park(span(0), "AccessDenied", 5, now=1000)
    parked.park(span(10, trail=TRAIL_B), "AccessDenied", 6, now=1000)
    assert parked.due(1299) == []
    assert [f.span.first_offset for f in parked.due(1300)] == [0, 10]
    parked.trail_changed(TRAIL_B, now=1100)
    assert [f.span.first_offset for f in parked.due(1100)] == [10]


def test_a_failed_retry_waits_another_interval_and_counts_attempts() -> None:
    parked = ParkedFiles(300)
    parked.park(span(0), "NoSuchBucket", 5, now=1000)
    (file,) = parked.due(1300)
    parked.failed_again(file, "AccessDenied", now=1300)
    assert parked.due(1599) == []
    assert (file.attempts, file.error) == (2, "AccessDenied")
    parked.moved(file, dataclasses.replace(file.span, object_key="new/0.json.gz"))
    parked.ended(file.span)
    assert len(parked) == 0


def test_the_commit_keeps_the_oldest_parked_record_of_each_partition_readable() -> None:
    parked = ParkedFiles(300)
    parked.park(span(0, partition=1), "NoSuchBucket", 40, now=0)
    parked.park(span(10, partition=1), "NoSuchBucket", 42, now=0)
    parked.park(span(0, partition=2), "NoSuchBucket", 7, now=0)
    assert [parked.pinned_journal_offset(p) for p in (0, 1, 2)] == [None, 40, 7]
    parked.forget([1])
    assert [parked.pinned_journal_offset(p) for p in (0, 1, 2)] == [None, None, 7]
    assert span(0, partition=2) in parked and span(0, partition=1) not in parked


@pytest.mark.parametrize(("kind", "error"), [("file", None), ("stored", None), ("parked", "NoSuchBucket"),
                                             ("released", "TrailDeleted")])
def test_a_journal_value_carries_its_kind_and_error(kind: str, error: str | None) -> None:
    assert FileSpan.journal_entry(span(0).to_journal(kind, error=error)) == (kind, span(0), error or "")
    assert FileSpan.from_journal(span(0).to_journal(kind, error=error)) == (kind, span(0))
