"""Dropping repeated eventIDs: a time window of seen IDs per events partition, and its changelog.

Producers key every record by its eventID in lower case, so all copies of one eventID land in one partition
of the events topic and one `DedupeWindow` (the state of that partition) sees them all.

Time is the Kafka timestamp of the record that carried the eventID, never the wall clock, so a replay
after a crash makes the same decisions as the first run. IDs are kept in buckets of `bucket_s` seconds;
the window keeps the newest `ceil(window_s / bucket_s)` buckets and forgets the oldest bucket whole.
A copy that arrives less than `window_s - bucket_s` after the first is always dropped; one that arrives
more than `window_s` after it is always let through again (CloudTrail itself gives no guarantee there).

Memory: a canonical lower-case GUID is held as its 16 bytes (49 B for the bytes object plus the set
slot), measured by `bench/process.py`; other spellings are kept as the string itself.

The changelog holds, per processed batch and partition, one record with the bucket and the eventIDs
first seen in it (`changelog_record`). It is written in the same Kafka transaction as the batch's output
and offsets, so the state restored from it (`DedupeWindow.restore`) is exactly the state that produced
the committed output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import orjson


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
        self._buckets: dict[int, set[bytes | str]] = {}
        self._newest = -1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def bucket_of(self, timestamp_s: float) -> int:
        """The bucket a record with this Kafka timestamp belongs to."""
        return int(timestamp_s // self.bucket_s)

    def first_seen(self, event_id: str, bucket: int) -> bool:
        """Remember `event_id`; True if no copy was seen within the window (keep it), False for a duplicate."""
        key = dedupe_key(event_id)
        bucket = self._advance(bucket)
        for ids in self._buckets.values():
            if key in ids:
                return False
        self._add(key, bucket)
        return True

    def _advance(self, bucket: int) -> int:
        """Move the window forward to `bucket` if it is newer; returns the bucket to file an ID under."""
        if bucket > self._newest:
            self._newest = bucket
            self._forget_before(bucket - self.span + 1)
            return bucket
        return max(bucket, self._newest - self.span + 1)

    def _add(self, key: bytes | str, bucket: int) -> None:
        ids = self._buckets.get(bucket)
        if ids is None:
            ids = self._buckets[bucket] = set()
        ids.add(key)
        self._size += 1

    def _forget_before(self, oldest_kept: int) -> None:
        for bucket in [b for b in self._buckets if b < oldest_kept]:
            self._size -= len(self._buckets.pop(bucket))

    def restore(self, changelog_values: Iterable[bytes]) -> None:
        """Add the eventIDs of changelog records (in log order) to this window."""
        for value in changelog_values:
            bucket, event_ids = parse_changelog_record(value)
            bucket = self._advance(bucket)
            for event_id in event_ids:
                self._add(dedupe_key(event_id), bucket)


def changelog_record(bucket: int, event_ids: list[str]) -> bytes:
    """The changelog value for eventIDs first seen in `bucket` by one batch of one partition."""
    return orjson.dumps({"bucket": bucket, "eventIDs": event_ids})


def parse_changelog_record(value: bytes) -> tuple[int, list[str]]:
    """(bucket, eventIDs) of a changelog value written by `changelog_record`."""
    document = orjson.loads(value)
    return document["bucket"], document["eventIDs"]
