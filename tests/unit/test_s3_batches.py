"""PartitionBatches: when files close, where a restart resumes, and how journaled files are rebuilt or skipped."""

from __future__ import annotations

import pytest

from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.s3_batches import PartitionBatches

A, B = "trailA|111122223333|eu-west-1", "trailB|111122223333|eu-west-1"


def batches(committed: int = 0, journaled: tuple[FileSpan, ...] = (), **limits: float) -> PartitionBatches:
    settings = {"max_records": 3, "max_bytes": 10_000, "flush_interval_s": 60.0, **limits}
    return PartitionBatches(0, committed, list(journaled), **settings)


def span(key: str, first: int, last: int, object_key: str = "k") -> FileSpan:
    return FileSpan(partition=0, delivery_key=key, first_offset=first, last_offset=last, bucket="b",
                    object_key=object_key, records=0, sha256="", compressed_bytes=0, oldest_event_time="",
                    newest_event_time="", delivered_at="")


def feed(target: PartitionBatches, records: list[tuple[str, int]], now: float = 0.0) -> list[tuple]:
    closed = []
    for key, offset in records:
        batch = target.add(key, offset, f"{key}@{offset}".encode(), now)
        if batch is not None:
            closed.append((batch.delivery_key, batch.first_offset, batch.last_offset, batch.records,
                           batch.replaying.object_key if batch.replaying else None))
    return closed


LIMIT_CASES = {
    "closes at max_records": ({"max_records": 2}, [(A, 0), (A, 1), (A, 2)], [(A, 0, 1, 2, None)]),
    "keys batch apart": ({"max_records": 2}, [(A, 0), (B, 1), (A, 2), (B, 3)],
                         [(A, 0, 2, 2, None), (B, 1, 3, 2, None)]),
    "closes at max_bytes": ({"max_bytes": 2 * len(b"trailA|111122223333|eu-west-1@0") + 2},
                            [(A, 0), (A, 1), (A, 2)], [(A, 0, 1, 2, None)]),
    "below every limit nothing closes": ({}, [(A, 0), (B, 1)], []),
}


@pytest.mark.parametrize(("limits", "records", "expected"), LIMIT_CASES.values(), ids=LIMIT_CASES.keys())
def test_batches_close_at_their_limits(limits: dict, records: list, expected: list) -> None:
    assert feed(batches(**limits), records) == expected


def test_a_batch_closes_by_age_even_when_nothing_arrives() -> None:
    target = batches(flush_interval_s=5)
    feed(target, [(A, 0)], now=100.0)
    feed(target, [(B, 1)], now=103.0)
    assert target.expired(104.9) == []
    assert [(b.delivery_key, b.first_offset) for b in target.expired(105.0)] == [(A, 0)]
    assert target.oldest_open_age(106.0) == 3.0


def test_the_commit_offset_is_the_first_record_of_the_oldest_open_batch() -> None:
    target = batches(committed=10)
    assert target.commit_offset() == 10
    feed(target, [(A, 10), (B, 11), (A, 12)])
    assert target.commit_offset() == 10
    (a_file,) = [target.add(A, 13, b"A@13", 0.0)]   # A closes at 3 records
    assert target.commit_offset() == 10, "closed is not stored: the commit waits for it"
    target.settled(a_file)
    assert target.commit_offset() == 11
    (b_file,) = target.expired(1_000.0)
    assert target.commit_offset() == 11
    target.settled(b_file)
    assert target.commit_offset() == 14


def test_the_end_of_partition_steps_over_trailing_transaction_markers() -> None:
    target = batches(committed=0, max_records=1)
    target.settled(target.add(A, 0, b"A@0", 0.0))
    assert target.commit_offset() == 1
    target.reached(2)                   # offset 1 is the transaction's commit marker
    assert target.commit_offset() == 2
    target.reached(1)                   # an older end event moves nothing back
    assert target.commit_offset() == 2


RESTART_CASES = {
    "a span begun before the committed offset is skipped to its end": (
        5, [span(A, 2, 8)], [(A, 5), (B, 6), (A, 8), (A, 9), (A, 10), (A, 11)],
        [(A, 9, 11, 3, None)]),
    "a span begun at or after the committed offset is rebuilt to its journaled end": (
        5, [span(A, 5, 9, "journaled")], [(A, 5), (B, 6), (A, 7), (A, 9), (A, 10)],
        [(A, 5, 9, 3, "journaled")]),
    "a rebuilt span ignores max_records, its journaled end decides": (
        0, [span(A, 0, 4, "big")], [(A, 0), (A, 1), (A, 2), (A, 3), (A, 4)], [(A, 0, 4, 5, "big")]),
    "consecutive spans of one key are rebuilt one after the other": (
        0, [span(A, 0, 1, "one"), span(A, 2, 3, "two")], [(A, 0), (A, 1), (A, 2), (A, 3)],
        [(A, 0, 1, 2, "one"), (A, 2, 3, 2, "two")]),
    "spans wholly before the committed offset change nothing": (
        5, [span(A, 0, 4)], [(A, 5), (A, 6), (A, 7)], [(A, 5, 7, 3, None)]),
}


@pytest.mark.parametrize(("committed", "journaled", "records", "expected"), RESTART_CASES.values(),
                         ids=RESTART_CASES.keys())
def test_restart_reproduces_the_journaled_files(committed: int, journaled: list, records: list,
                                                expected: list) -> None:
    assert feed(batches(committed, tuple(journaled)), records) == expected


def test_a_rebuilt_span_does_not_close_by_age() -> None:
    target = batches(0, (span(A, 0, 3, "slow"),), flush_interval_s=1)
    feed(target, [(A, 0)], now=0.0)
    assert target.expired(100.0) == []
    assert target.commit_offset() == 0


def test_a_record_taken_after_the_end_event_never_moves_the_commit_back() -> None:
    target = batches(committed=0, max_records=1)
    target.reached(3)
    target.settled(target.add(A, 1, b"A@1", 0.0))
    assert target.commit_offset() == 3
