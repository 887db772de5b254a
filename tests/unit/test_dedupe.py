"""DedupeWindow: what counts as a repeat or a conflict, when IDs are forgotten, whose clock moves it, and
restoring from the changelog."""

from __future__ import annotations

import pytest

from kafkatrail.processors.dedupe import (
    UNKNOWN_DIGEST,
    DedupeWindow,
    Seen,
    changelog_record,
    content_digest,
    dedupe_time_s,
    parse_changelog_record,
)

ID_A = "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90"
ID_B = "7f3e1c2d-0a4b-4c5d-8e6f-9a0b1c2d3e4f"
HOUR = 3600
FIRST, COPY, CONFLICT = Seen.FIRST, Seen.COPY, Seen.CONFLICT


# (one eventID, another, whether they are the same eventID): the same when their lower-cased texts are
SAME_ID = {
    "a GUID in upper case": (ID_A, ID_A.upper(), True),
    "a GUID in mixed case": (ID_A, ID_A[:18] + ID_A[18:].upper(), True),
    "two GUIDs": (ID_A, ID_B, False),
    "a GUID's digits with its dashes moved": (ID_A, ID_A.replace("-", "") + "----", False),
    "a GUID in braces": (ID_A, "{" + ID_A + "}", False),
    "a GUID-shaped text that is not hex, in upper case": ("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                                                          "ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ", True),
    "a text and its upper case": ("not-a-guid", "Not-A-GUID", True),
    "two texts": ("not-a-guid", "not-a-guid ", False),
    "non-ASCII text and its upper case": ("événement-1", "ÉVÉNEMENT-1", True),
    "the empty text and a space": ("", " ", False),
}


@pytest.mark.parametrize(("one", "other", "same"), SAME_ID.values(), ids=SAME_ID.keys())
def test_which_event_ids_are_the_same(one: str, other: str, same: bool) -> None:
    window = DedupeWindow(24 * HOUR, HOUR)
    assert window.first_seen(one, 0, 1) is FIRST
    assert window.first_seen(other, 0, 1) is (COPY if same else FIRST)


# (arrivals as (eventID, seconds, content), expected first_seen results) with a 24 h window in 1 h buckets
CASES = {
    "a repeat within seconds is dropped": ([(ID_A, 0, 1), (ID_A, 5, 1)], [FIRST, COPY]),
    "distinct IDs both pass": ([(ID_A, 0, 1), (ID_B, 1, 1)], [FIRST, FIRST]),
    "a repeat 22 h later is dropped": ([(ID_A, 0, 1), (ID_A, 22 * HOUR, 1)], [FIRST, COPY]),
    "a repeat 25 h later passes again": ([(ID_A, 0, 1), (ID_A, 25 * HOUR, 1)], [FIRST, FIRST]),
    "a third copy after re-admission is dropped": ([(ID_A, 0, 1), (ID_A, 25 * HOUR, 1), (ID_A, 25 * HOUR + 1, 1)],
                                                    [FIRST, FIRST, COPY]),
    "an out-of-order older copy is still dropped": ([(ID_A, 5 * HOUR, 1), (ID_A, 1 * HOUR, 1)], [FIRST, COPY]),
    "only the case differs: the same eventID, dropped": ([(ID_A, 0, 1), (ID_A.upper(), 1, 1)], [FIRST, COPY]),
    "other content under a seen eventID is a conflict": ([(ID_A, 0, 1), (ID_A, 5, 2)], [FIRST, CONFLICT]),
    "a conflict does not replace the first content": ([(ID_A, 0, 1), (ID_A, 5, 2), (ID_A, 6, 1)],
                                                       [FIRST, CONFLICT, COPY]),
    "a conflict in upper case too": ([(ID_A, 0, 1), (ID_A.upper(), 5, 2)], [FIRST, CONFLICT]),
    "other content 25 h later is a new event": ([(ID_A, 0, 1), (ID_A, 25 * HOUR, 2)], [FIRST, FIRST]),
    "unknown content (restored from an old changelog) is a copy": ([(ID_A, 0, UNKNOWN_DIGEST), (ID_A, 5, 2)],
                                                                   [FIRST, COPY]),
    "a digest of 2^64 - 1 stands for unknown content": ([(ID_A, 0, 2**64 - 1), (ID_A, 5, 2), (ID_B, 6, 2),
                                                         (ID_B, 7, 2**64 - 1)], [FIRST, COPY, FIRST, COPY]),
}


@pytest.mark.parametrize(("arrivals", "expected"), CASES.values(), ids=CASES.keys())
def test_first_seen(arrivals: list[tuple[str, int, int]], expected: list[Seen]) -> None:
    window = DedupeWindow(24 * HOUR, HOUR)
    assert [window.first_seen(eid, window.bucket_of(at), digest) for eid, at, digest in arrivals] == expected


def test_content_digest_tells_records_apart_and_is_stable() -> None:
    assert content_digest(b'{"a":1}') == content_digest(b'{"a":1}')
    assert content_digest(b'{"a":1}') != content_digest(b'{"a":2}')
    assert 0 <= content_digest(b"") < 2 ** 64


NOW = 1_800_000_000.0
# (timestamp ms, stamped by the broker, expected seconds) with a 300 s tolerance at NOW
CLOCKS = {
    "the broker's time is taken as it is, even far ahead": (int((NOW + 400 * 86_400) * 1000), True,
                                                           NOW + 400 * 86_400),
    "a producer's time in the past is kept": (int((NOW - 3600) * 1000), False, NOW - 3600),
    "a producer's time a little ahead is kept": (int((NOW + 200) * 1000), False, NOW + 200),
    "a producer's time 400 days ahead is cut to the tolerance": (int((NOW + 400 * 86_400) * 1000), False,
                                                                 NOW + 300),
    "no timestamp counts as now": (-1, False, NOW),
}


@pytest.mark.parametrize(("timestamp_ms", "broker", "expected"), CLOCKS.values(), ids=CLOCKS.keys())
def test_dedupe_time(timestamp_ms: int, broker: bool, expected: float) -> None:
    assert dedupe_time_s(timestamp_ms, broker, NOW, 300) == pytest.approx(expected)


def test_a_record_from_the_future_cannot_make_the_window_forget() -> None:
    window = DedupeWindow(24 * HOUR, HOUR)
    assert window.first_seen(ID_A, window.bucket_of(NOW), 1) is FIRST
    future = dedupe_time_s(int((NOW + 400 * 86_400) * 1000), False, NOW, 300)
    assert window.first_seen(ID_B, window.bucket_of(future), 1) is FIRST
    assert window.first_seen(ID_A, window.bucket_of(NOW + 1), 1) is COPY


def test_old_buckets_are_forgotten_whole() -> None:
    window = DedupeWindow(3 * HOUR, HOUR)
    for i in range(10):
        window.first_seen(f"id-{i}", window.bucket_of(0), i)
    window.first_seen("late", window.bucket_of(2 * HOUR), 0)
    assert len(window) == 11
    window.first_seen("later", window.bucket_of(3 * HOUR), 0)
    assert len(window) == 2


def test_window_shorter_than_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one bucket"):
        DedupeWindow(60, 3600)


# (first_seen's arguments, the error): digests are 64-bit unsigned or UNKNOWN_DIGEST, eventIDs strings
REFUSED = {
    "a negative digest other than -1": ((ID_A, 0, -2), ValueError),
    "a digest of 2^64": ((ID_A, 0, 2**64), ValueError),
    "a digest that is not an int": ((ID_A, 0, 1.5), TypeError),
    "an eventID that is bytes": ((ID_A.encode(), 0, 1), TypeError),
    "no eventID": ((None, 0, 1), TypeError),
}


@pytest.mark.parametrize(("arguments", "error"), REFUSED.values(), ids=REFUSED.keys())
def test_first_seen_refuses(arguments: tuple[object, int, object], error: type[Exception]) -> None:
    window = DedupeWindow(24 * HOUR, HOUR)
    with pytest.raises(error):
        window.first_seen(*arguments)  # type: ignore[arg-type]
    assert len(window) == 0


def test_restore_rebuilds_the_same_decisions() -> None:
    live = DedupeWindow(24 * HOUR, HOUR)
    records = []
    for bucket, first in ((0, [(ID_A, 11)]), (1, [(ID_B, 2 ** 64 - 1)])):
        assert all(live.first_seen(eid, bucket, digest) is FIRST for eid, digest in first)
        records.append(changelog_record(bucket, first))
    restored = DedupeWindow(24 * HOUR, HOUR)
    restored.restore(records)
    assert len(restored) == len(live) == 2
    assert restored.first_seen(ID_A, 2, 11) is COPY
    assert restored.first_seen(ID_A, 2, 12) is CONFLICT
    assert restored.first_seen(ID_B, 2, 2 ** 64 - 1) is COPY
    assert parse_changelog_record(records[1]) == (1, [(ID_B, 2 ** 64 - 1)])


def test_a_changelog_record_without_digests_restores_ids_of_unknown_content() -> None:
    restored = DedupeWindow(24 * HOUR, HOUR)
    restored.restore([b'{"bucket": 3, "eventIDs": ["%s"]}' % ID_A.encode()])
    assert parse_changelog_record(b'{"bucket": 3, "eventIDs": ["x"]}') == (3, [("x", UNKNOWN_DIGEST)])
    assert restored.first_seen(ID_A, 3, 5) is COPY


def test_restore_forgets_what_the_window_has_left_behind() -> None:
    restored = DedupeWindow(2 * HOUR, HOUR)
    restored.restore([changelog_record(0, [(ID_A, 1)]), changelog_record(5, [(ID_B, 1)])])
    assert restored.first_seen(ID_A, 5, 1) is FIRST
    assert restored.first_seen(ID_B, 5, 1) is COPY
