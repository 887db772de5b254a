"""Dropping repeated eventIDs: a time window of seen IDs per events partition, and its changelog.

Producers key every record by its eventID in lower case, so all copies of one eventID land in one partition
of the events topic and one `DedupeWindow` (the state of that partition) sees them all; the pipeline
dead-letters a record whose key is not its eventID (`invalid.key`), since it could land in another partition.

A copy is dropped only when its content is the same as the first one's (the first 64 bits of the SHA-256 of
the record's CloudTrail JSON are remembered beside each ID: 1.6 us for a 1.6 KB record here, where BLAKE2b
took 2.6 us, and a second preimage costs 2^64 hashes). The same eventID with different content is a
conflict: the first record stays, and the caller dead-letters the other (`conflict.eventID`), so a forged
record published first cannot silently replace the real one.

Time is the Kafka timestamp of the record that carried the eventID, as the broker stamped it
(`LogAppendTime` on the events topic), never the processor's wall clock, so a replay after a crash makes
the same decisions as the first run; `dedupe_time_s` bounds a producer's timestamp on a topic that keeps
the producer's own (`CreateTime`). IDs are kept in buckets of `bucket_s` seconds;
the window keeps the newest `ceil(window_s / bucket_s)` buckets and forgets the oldest bucket whole.
A copy that arrives less than `window_s - bucket_s` after the first is always dropped; one that arrives
more than `window_s` after it is always let through again (CloudTrail itself gives no guarantee there).

Memory: a canonical lower-case GUID is held as its 16 bytes, its digest as an int (measured per ID by
`bench/process.py`); other spellings are kept as the lower-cased string itself.

The changelog holds, per processed batch and partition, one record with the bucket, the eventIDs first
seen in it and their digests (`changelog_record`; a record without digests, as written before they
existed, restores IDs whose content any copy matches). It is written in the same Kafka transaction as the batch's output
and offsets, so the state restored from it (`DedupeWindow.restore`) is exactly the state that produced
the committed output.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from enum import Enum

import orjson

UNKNOWN_DIGEST = -1


class Seen(Enum):
    """What the window says of a record: the first with its eventID, a copy of it, or a conflicting one."""

    FIRST = "first"
    COPY = "copy"
    CONFLICT = "conflict"


def content_digest(body: bytes) -> int:
    """The 64-bit digest a record's content is compared by (SHA-256 of its CloudTrail JSON, cut to 8 bytes)."""
    return int.from_bytes(hashlib.sha256(body).digest()[:8], "big")


def dedupe_time_s(timestamp_ms: int, broker_stamped: bool, now_s: float, tolerance_s: float) -> float:
    """The time a record counts at in the window: the broker's timestamp as it is; a producer's timestamp
    (`CreateTime`, or none) at most `tolerance_s` ahead of `now_s`, so one record stamped in the future
    cannot move the window forward and make it forget every ID it holds."""
    timestamp_s = timestamp_ms / 1000
    if broker_stamped:
        return timestamp_s
    if timestamp_ms < 0:
        return now_s
    return min(timestamp_s, now_s + tolerance_s)


def dedupe_key(event_id: str) -> bytes | str:
    """The compact form an eventID is remembered by, in canonical (lower-case) form, since a GUID's hex digits
    carry no case: 16 bytes for a GUID, else the lower-cased string."""
    canonical = event_id.lower()
    if len(canonical) == 36:
        try:
            return bytes.fromhex(canonical.replace("-", ""))
        except ValueError:
            return canonical
    return canonical


class DedupeWindow:
    """The eventIDs one events partition has seen within the window."""

    def __init__(self, window_s: int, bucket_s: int) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError(f"dedupe window {window_s}s must be at least one bucket ({bucket_s}s)")
        self.bucket_s = bucket_s
        self.span = math.ceil(window_s / bucket_s)
        self._buckets: dict[int, dict[bytes | str, int]] = {}
        self._newest = -1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def bucket_of(self, timestamp_s: float) -> int:
        """The bucket a record with this Kafka timestamp belongs to."""
        return int(timestamp_s // self.bucket_s)

    def first_seen(self, event_id: str, bucket: int, digest: int = UNKNOWN_DIGEST) -> Seen:
        """Remember `event_id` with its content digest unless the window holds it: FIRST (keep the record),
        COPY (same content, or content unknown on either side: drop it) or CONFLICT (different content)."""
        key = dedupe_key(event_id)
        bucket = self._advance(bucket)
        for ids in self._buckets.values():
            seen = ids.get(key)
            if seen is not None:
                if seen == digest or UNKNOWN_DIGEST in (seen, digest):
                    return Seen.COPY
                return Seen.CONFLICT
        self._add(key, digest, bucket)
        return Seen.FIRST

    def _advance(self, bucket: int) -> int:
        """Move the window forward to `bucket` if it is newer; returns the bucket to file an ID under."""
        if bucket > self._newest:
            self._newest = bucket
            self._forget_before(bucket - self.span + 1)
            return bucket
        return max(bucket, self._newest - self.span + 1)

    def _add(self, key: bytes | str, digest: int, bucket: int) -> None:
        ids = self._buckets.get(bucket)
        if ids is None:
            ids = self._buckets[bucket] = {}
        if key not in ids:
            self._size += 1
        ids[key] = digest

    def _forget_before(self, oldest_kept: int) -> None:
        for bucket in [b for b in self._buckets if b < oldest_kept]:
            self._size -= len(self._buckets.pop(bucket))

    def restore(self, changelog_values: Iterable[bytes]) -> None:
        """Add the eventIDs of changelog records (in log order) to this window."""
        for value in changelog_values:
            bucket, first = parse_changelog_record(value)
            bucket = self._advance(bucket)
            for event_id, digest in first:
                self._add(dedupe_key(event_id), digest, bucket)


def changelog_record(bucket: int, first: list[tuple[str, int]]) -> bytes:
    """The changelog value for the (eventID, digest) pairs first seen in `bucket` by one batch of one partition."""
    return orjson.dumps({"bucket": bucket, "eventIDs": [event_id for event_id, _ in first],
                         "digests": [digest for _, digest in first]})


def parse_changelog_record(value: bytes) -> tuple[int, list[tuple[str, int]]]:
    """(bucket, [(eventID, digest)]) of a changelog value; digests unknown in a value written without them."""
    document = orjson.loads(value)
    event_ids = document["eventIDs"]
    digests = document.get("digests") or [UNKNOWN_DIGEST] * len(event_ids)
    return document["bucket"], list(zip(event_ids, digests, strict=True))
