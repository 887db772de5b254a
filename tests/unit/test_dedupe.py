"""DedupeWindow: what counts as a repeat, when IDs are forgotten, and restoring from the changelog."""

from __future__ import annotations

import pytest

from kafkatrail.processors.dedupe import DedupeWindow, changelog_record, dedupe_key, parse_changelog_record

ID_A = "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90"
ID_B = "7f3e1c2d-0a4b-4c5d-8e6f-9a0b1c2d3e4f"
HOUR = 3600


@pytest.mark.parametrize(("event_id", "expected"), [
    (ID_A, bytes.fromhex(ID_A.replace("-", ""))),
    (ID_A.upper(), bytes.fromhex(ID_A.replace("-", ""))),  # the same GUID in upper case is the same eventID
    ("not-a-guid", "not-a-guid"),
    ("Not-A-GUID", "not-a-guid"),
    ("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"),
])
def test_dedupe_key(event_id: str, expected: bytes | str) -> None:
    assert dedupe_key(event_id) == expected


# (arrivals as (eventID, seconds), expected first_seen results) with a 24 h window in 1 h buckets
CASES = {
    "a repeat within seconds is dropped": ([(ID_A, 0), (ID_A, 5)], [True, False]),
    "distinct IDs both pass": ([(ID_A, 0), (ID_B, 1)], [True, True]),
    "a repeat 22 h later is dropped": ([(ID_A, 0), (ID_A, 22 * HOUR)], [True, False]),
    "a repeat 25 h later passes again": ([(ID_A, 0), (ID_A, 25 * HOUR)], [True, True]),
    "a third copy after re-admission is dropped": ([(ID_A, 0), (ID_A, 25 * HOUR), (ID_A, 25 * HOUR + 1)],
                                                    [True, True, False]),
    "an out-of-order older copy is still dropped": ([(ID_A, 5 * HOUR), (ID_A, 1 * HOUR)], [True, False]),
    "only the case differs: the same eventID, dropped": ([(ID_A, 0), (ID_A.upper(), 1)], [True, False]),
}


@pytest.mark.parametrize(("arrivals", "expected"), CASES.values(), ids=CASES.keys())
def test_first_seen(arrivals: list[tuple[str, int]], expected: list[bool]) -> None:
    window = DedupeWindow(24 * HOUR, HOUR)
    assert [window.first_seen(eid, window.bucket_of(at)) for eid, at in arrivals] == expected


def test_old_buckets_are_forgotten_whole() -> None:
    window = DedupeWindow(3 * HOUR, HOUR)
    for i in range(10):
        window.first_seen(f"id-{i}", window.bucket_of(0))
    window.first_seen("late", window.bucket_of(2 * HOUR))
    assert len(window) == 11
    window.first_seen("later", window.bucket_of(3 * HOUR))
    assert len(window) == 2


def test_window_shorter_than_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one bucket"):
        DedupeWindow(60, 3600)


def test_restore_rebuilds_the_same_decisions() -> None:
    live = DedupeWindow(24 * HOUR, HOUR)
    records = []
    for bucket, ids in ((0, [ID_A]), (1, [ID_B])):
        assert all(live.first_seen(eid, bucket) for eid in ids)
        records.append(changelog_record(bucket, ids))
    restored = DedupeWindow(24 * HOUR, HOUR)
    restored.restore(records)
    assert len(restored) == len(live) == 2
    assert not restored.first_seen(ID_A, 2)
    assert not restored.first_seen(ID_B, 2)
    assert parse_changelog_record(records[1]) == (1, [ID_B])


def test_restore_forgets_what_the_window_has_left_behind() -> None:
    restored = DedupeWindow(2 * HOUR, HOUR)
    restored.restore([changelog_record(0, [ID_A]), changelog_record(5, [ID_B])])
    assert restored.first_seen(ID_A, 5)
    assert not restored.first_seen(ID_B, 5)
