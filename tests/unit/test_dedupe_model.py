"""DedupeWindow (IDs held in C, `processors/dedupe_ids.pyx`) against a model of what it means.

The model is the window without its representation: buckets, in the order they were made, of
{lower-cased eventID: digest}, moved and forgotten as `processors/dedupe.py` says, with a digest of 2^64 - 1
taken as unknown. Any sequence of `first_seen` calls and changelog restores must get the same answers and the
same `len` from both: over a small pool of eventIDs (GUIDs in any case, other texts) with buckets moving both
ways and staging tables of one to a few IDs, so that merges, expiry and duplicates in a restore all happen;
over thousands of IDs per bucket, so that runs grow an index; and over 300,000 IDs in one bucket, the size
at which a run indexes two bytes of each key. A live window's changelog restores a window that answers
as the live one does.
"""

from __future__ import annotations

import math
import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from kafkatrail.processors.dedupe import UNKNOWN_DIGEST, DedupeWindow, Seen, changelog_record

ID_A = "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90"
ID_B = "7f3e1c2d-0a4b-4c5d-8e6f-9a0b1c2d3e4f"
POOL = (ID_A, ID_A.upper(), ID_A[:20] + ID_A[20:].upper(), ID_B, str(uuid.UUID(int=0)), ID_A.replace("-", "") + "----",
        "not-a-guid", "NOT-A-GUID", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "", "événement", "ÉVÉNEMENT")
DIGESTS = (0, 1, 2, 2**64 - 2, 2**64 - 1, UNKNOWN_DIGEST)
Record = tuple[int, list[tuple[str, int]]]


class Model:
    """What a dedupe window answers, kept the plainest way."""

    def __init__(self, window_s: int, bucket_s: int) -> None:
        self.span = math.ceil(window_s / bucket_s)
        self.buckets: dict[int, dict[str, int]] = {}
        self.newest = -1

    def __len__(self) -> int:
        return sum(len(ids) for ids in self.buckets.values())

    def advance(self, bucket: int) -> int:
        if bucket > self.newest:
            self.newest = bucket
            self.buckets = {b: ids for b, ids in self.buckets.items() if b > bucket - self.span}
            return bucket
        return max(bucket, self.newest - self.span + 1)

    def first_seen(self, event_id: str, bucket: int, digest: int) -> Seen:
        key, digest = event_id.lower(), known(digest)
        bucket = self.advance(bucket)
        for ids in self.buckets.values():
            if key in ids:
                return Seen.COPY if UNKNOWN_DIGEST in (ids[key], digest) or ids[key] == digest else Seen.CONFLICT
        self.buckets.setdefault(bucket, {})[key] = digest
        return Seen.FIRST

    def restore(self, records: list[Record]) -> None:
        for bucket, first in records:
            bucket = self.advance(bucket)
            for event_id, digest in first:
                self.buckets.setdefault(bucket, {})[event_id.lower()] = known(digest)


def known(digest: int) -> int:
    return UNKNOWN_DIGEST if digest == 2**64 - 1 else digest


def both(model: Model, window: DedupeWindow, operation: tuple[str, object]) -> None:
    """Apply one operation to the model and the window, and hold them to the same answer and length."""
    kind, argument = operation
    if kind == "see":
        event_id, bucket, digest = argument  # type: ignore[misc]
        assert window.first_seen(event_id, bucket, digest) is model.first_seen(event_id, bucket, digest), operation
    else:
        records: list[Record] = argument  # type: ignore[assignment]
        window.restore([changelog_record(bucket, first) for bucket, first in records])
        model.restore(records)
    assert len(window) == len(model), operation


BUCKETS = st.integers(min_value=-3, max_value=12)
SEE = st.tuples(st.just("see"), st.tuples(st.sampled_from(POOL), BUCKETS, st.sampled_from(DIGESTS)))
RESTORE = st.tuples(st.just("restore"), st.lists(st.tuples(BUCKETS, st.lists(
    st.tuples(st.sampled_from(POOL), st.sampled_from(DIGESTS)), max_size=5)), max_size=3))


@settings(max_examples=400, deadline=None)
@given(operations=st.lists(st.one_of(SEE, SEE, SEE, RESTORE), max_size=80),
       window_s=st.sampled_from((1, 2, 3, 5, 8)), staging=st.sampled_from((1, 2, 3, 4, 64)))
def test_the_window_answers_as_the_model(operations: list[tuple[str, object]], window_s: int, staging: int) -> None:
    model, window = Model(window_s, 1), DedupeWindow(window_s, 1, staging=staging)
    for operation in operations:
        both(model, window, operation)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(POOL), st.integers(min_value=0, max_value=2),
                                st.sampled_from(DIGESTS[:4])), max_size=60),
       batch=st.integers(min_value=1, max_value=5), window_s=st.sampled_from((1, 2, 3, 5)),
       staging=st.sampled_from((1, 3, 64)))
def test_a_restored_window_answers_as_the_live_one(steps: list[tuple[str, int, int]], batch: int, window_s: int,
                                                   staging: int) -> None:
    # buckets that never go back, as on a topic the broker stamps; changelog records per batch and bucket, as
    # the processor writes them
    live = DedupeWindow(window_s, 1, staging=staging)
    bucket, records, first = 0, [], dict[int, list[tuple[str, int]]]()
    for count, (event_id, forward, digest) in enumerate(steps[: len(steps) // 2], 1):
        bucket += forward
        if live.first_seen(event_id, bucket, digest) is Seen.FIRST:
            first.setdefault(bucket, []).append((event_id, digest))
        if count % batch == 0:
            records += [changelog_record(b, ids) for b, ids in first.items()]
            first.clear()
    records += [changelog_record(b, ids) for b, ids in first.items()]
    restored = DedupeWindow(window_s, 1, staging=staging)
    restored.restore(records)
    for event_id, forward, digest in steps[len(steps) // 2:]:
        bucket += forward
        assert restored.first_seen(event_id, bucket, digest) is live.first_seen(event_id, bucket, digest)
        assert len(restored) == len(live)


def test_thousands_of_ids_a_bucket_answer_as_the_model() -> None:
    rng = random.Random(5)
    pool = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(12_000)] + [f"id-{i}" for i in range(500)]
    model, window = Model(4, 1), DedupeWindow(4, 1, staging=700)
    for step in range(40_000):
        bucket = (0, 1, 0, 2, 3, 1, 4, 9, 8, 10)[step // 4_000]  # back, forward, and past the window
        if step % 500 == 0:
            records = [(bucket + rng.randint(-3, 0), [(rng.choice(pool), rng.choice(DIGESTS))
                                                      for _ in range(rng.randint(0, 40))])]
            both(model, window, ("restore", records))
        event_id = rng.choice(pool)
        both(model, window, ("see", (rng.choice((event_id, event_id.upper())), bucket, rng.choice(DIGESTS))))
    assert max(len(ids) for ids in model.buckets.values()) > 3_000, "a run indexed by 8 bits or more: one key byte"


def test_a_bucket_of_300000_ids_answers_each_and_holds_it_in_under_23_bytes() -> None:
    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(300_000)]
    window = DedupeWindow(7200, 3600, staging=40_000)
    for i, event_id in enumerate(ids):
        assert window.first_seen(event_id, 0, i) is Seen.FIRST
    assert window.first_seen(ids[0], 1, 0) is Seen.COPY  # a newer bucket: bucket 0 is sealed
    assert window.resident_bytes() / len(ids) < 23
    for i, event_id in enumerate(ids):
        assert window.first_seen(event_id.upper(), 1, i) is Seen.COPY
        assert window.first_seen(event_id, 1, i + 1) is Seen.CONFLICT
    assert len(window) == len(ids)
    assert window.first_seen(ids[0], 2, 0) is Seen.FIRST  # bucket 0 forgotten whole
    assert len(window) == 1
    assert window.resident_bytes() < 2_000
