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

Memory: the window holds its eventIDs in C (`processors/dedupe_ids.pyx`): a GUID as its 16 bytes (case
carries nothing in hex), any other eventID as the 128-bit BLAKE2b digest of its lower-cased text, each beside
its 64-bit content digest, in one sorted array per bucket whose index stands for the keys' top bytes: at most
23.5 bytes an ID once a bucket holds 2,200, 22.6 at 10 million in 24 buckets, plus a staging table of at most
2 MiB for the newest IDs. `bench/dedupe.py` measures it.

The changelog holds, per processed batch and partition, one record with the bucket, the eventIDs first
seen in it and their digests (`changelog_record`; a record without digests, as written before they
existed, restores IDs whose content any copy matches). It is written in the same Kafka transaction as the batch's output
and offsets, so the state restored from it (`DedupeWindow.restore`) is exactly the state that produced
the committed output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import orjson

from kafkatrail.processors.dedupe_ids import UNKNOWN_DIGEST, IdWindow, Seen

__all__ = ["UNKNOWN_DIGEST", "DedupeWindow", "Seen", "changelog_record", "content_digest", "dedupe_time_s",
           "parse_changelog_record"]


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


class DedupeWindow(IdWindow):
    """The eventIDs one events partition has seen within the window: `IdWindow` (held in C), restored from
    its changelog."""

    __slots__ = ()

    def restore(self, changelog_values: Iterable[bytes]) -> None:
        """Add the eventIDs of changelog records (in log order) to this window."""
        for value in changelog_values:
            self.add(*_changelog_fields(value))


def changelog_record(bucket: int, first: list[tuple[str, int]]) -> bytes:
    """The changelog value for the (eventID, digest) pairs first seen in `bucket` by one batch of one partition."""
    return orjson.dumps({"bucket": bucket, "eventIDs": [event_id for event_id, _ in first],
                         "digests": [digest for _, digest in first]})


def parse_changelog_record(value: bytes) -> tuple[int, list[tuple[str, int]]]:
    """(bucket, [(eventID, digest)]) of a changelog value; digests unknown in a value written without them."""
    bucket, event_ids, digests = _changelog_fields(value)
    return bucket, list(zip(event_ids, digests or [UNKNOWN_DIGEST] * len(event_ids), strict=True))


def _changelog_fields(value: bytes) -> tuple[int, list[str], list[int] | None]:
    """The bucket, eventIDs and digests (None if the value has none) of a changelog value."""
    document = orjson.loads(value)
    return document["bucket"], document["eventIDs"], document.get("digests") or None
