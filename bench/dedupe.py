"""Benchmark: the processor's dedupe window at 10,000,000 eventIDs, the compact window against the dict window.

For each window, in one process and one run: fill it with N random GUIDs spread evenly over 24 one-hour
buckets (each with its own 64-bit content digest, made per ID as the processor makes it) and measure the
memory it holds per eventID: the growth of the process's resident set (/proc/self/statm) over the fill, and
for the compact window also the bytes tracemalloc traces (it allocates with PyMem_RawMalloc, which
tracemalloc sees). Then time `first_seen` on the full window for IDs it does not hold (new, filed in the
newest bucket) and IDs it holds (repeated: a copy, found in a random bucket), and `restore` of a fresh window
from the N IDs' changelog records (2,000 IDs a record, as a batch of `processors.batch_max_events` writes).
Times are the process's CPU time, so that other jobs on the machine count less. The dict window is a copy of
the one the processor used before `processors/dedupe_ids.pyx`, kept here only to measure against; it is not
traced (tracemalloc would keep a trace of each of its 20 million objects), its RSS growth is its cost.
Prints one summary line.

    .venv/bin/python bench/dedupe.py [--ids 10000000] [--probes 200000]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Protocol

from kafkatrail.processors.dedupe import (
    UNKNOWN_DIGEST,
    DedupeWindow,
    Seen,
    changelog_record,
    parse_changelog_record,
)

SEED = 7
BUCKETS = 24
HOUR = 3_600
RECORD_IDS = 2_000
GOLDEN = 0x9E3779B97F4A7C15
MASK = 2**64 - 1


class Window(Protocol):
    def __len__(self) -> int: ...
    def first_seen(self, event_id: str, bucket: int, digest: int = ...) -> Seen: ...
    def restore(self, changelog_values: Iterable[bytes]) -> None: ...


def dedupe_key(event_id: str) -> bytes | str:
    """The dict window's key: 16 bytes for a GUID, else the lower-cased string."""
    canonical = event_id.lower()
    if len(canonical) == 36:
        try:
            return bytes.fromhex(canonical.replace("-", ""))
        except ValueError:
            return canonical
    return canonical


class DictWindow:
    """The dict window as the processor had it: per bucket a dict {key: digest}."""

    def __init__(self, window_s: int, bucket_s: int) -> None:
        self.bucket_s = bucket_s
        self.span = math.ceil(window_s / bucket_s)
        self._buckets: dict[int, dict[bytes | str, int]] = {}
        self._newest = -1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def first_seen(self, event_id: str, bucket: int, digest: int = UNKNOWN_DIGEST) -> Seen:
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
        for value in changelog_values:
            bucket, first = parse_changelog_record(value)
            bucket = self._advance(bucket)
            for event_id, digest in first:
                self._add(dedupe_key(event_id), digest, bucket)


def guids(rng: random.Random, count: int) -> list[str]:
    """`count` random lower-case GUIDs."""
    made = []
    for _ in range(count):
        h = f"{rng.getrandbits(128):032x}"
        made.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return made


def digest(i: int) -> int:
    """The content digest of the i-th ID: a distinct 64-bit int per ID."""
    return (i * GOLDEN) & MASK


def resident() -> int:
    """The process's resident set, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(window: Window, ids: list[str]) -> None:
    """File ids[i] with digest(i) in bucket 24 * i // len(ids), all FIRST."""
    count = len(ids)
    first_seen = window.first_seen
    for i, event_id in enumerate(ids):
        first_seen(event_id, BUCKETS * i // count, digest(i))
    if len(window) != count:
        raise RuntimeError(f"the window holds {len(window)} of {count} distinct eventIDs")


def per_call_ns(window: Window, calls: list[tuple[str, int]], expected: Seen) -> float:
    """Mean ns of `first_seen(event_id, newest bucket, digest)` over `calls`, each to be answered `expected`
    (checked after the timing: new IDs are all held, and a repeated one is still a copy)."""
    first_seen = window.first_seen
    newest = BUCKETS - 1
    held = len(window)
    began = time.process_time_ns()
    for event_id, d in calls:
        first_seen(event_id, newest, d)
    elapsed = time.process_time_ns() - began
    grew = len(window) - held
    event_id, d = calls[0]
    if grew != (len(calls) if expected is Seen.FIRST else 0) or first_seen(event_id, newest, d) is not Seen.COPY:
        raise RuntimeError(f"first_seen did not answer {expected} to each call")
    return elapsed / len(calls)


def measure(make: Callable[[], Window], ids: list[str], fresh: list[str], rng: random.Random,
            traced: bool) -> dict[str, float]:
    """Memory per ID, first_seen ns for new and repeated IDs, on a window of `ids`."""
    gc.collect()
    before = resident()
    if traced:
        tracemalloc.start()
    window = make()
    fill(window, ids)
    figures = {"rss_b": (resident() - before) / len(ids)}
    if traced:
        figures["traced_b"] = tracemalloc.get_traced_memory()[0] / len(ids)
        tracemalloc.stop()
    held = rng.sample(range(len(ids)), len(fresh))
    figures["repeated_ns"] = per_call_ns(window, [(ids[i], digest(i)) for i in held], Seen.COPY)
    figures["new_ns"] = per_call_ns(window, [(event_id, digest(-1 - i)) for i, event_id in enumerate(fresh)],
                                    Seen.FIRST)
    return figures


def restore_s(make: Callable[[], Window], records: list[bytes], count: int) -> float:
    """Seconds to restore a fresh window from `records`."""
    window = make()
    gc.collect()
    began = time.process_time()
    window.restore(records)
    elapsed = time.process_time() - began
    if len(window) != count:
        raise RuntimeError(f"the restored window holds {len(window)} of {count} eventIDs")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000, help="eventIDs in the window")
    parser.add_argument("--probes", type=int, default=200_000, help="first_seen calls timed per kind")
    args = parser.parse_args()
    rng = random.Random(SEED)
    ids = guids(rng, args.ids)
    fresh = guids(rng, args.probes)

    def compact() -> Window:
        return DedupeWindow(BUCKETS * HOUR, HOUR)

    def dicts() -> Window:
        return DictWindow(BUCKETS * HOUR, HOUR)

    new = measure(compact, ids, fresh, rng, traced=True)
    old = measure(dicts, ids, fresh, rng, traced=False)
    count = len(ids)
    records = [changelog_record(BUCKETS * start // count, [(ids[i], digest(i)) for i in
                                                           range(start, min(start + RECORD_IDS, count))])
               for start in range(0, count, RECORD_IDS)]
    new["restore_s"] = restore_s(compact, records, count)
    old["restore_s"] = restore_s(dicts, records, count)
    print(f"dedupe window, {count:,} eventIDs in {BUCKETS} buckets: compact (dedupe_ids.pyx) "
          f"{new['traced_b']:.1f} B/ID traced, {new['rss_b']:.1f} B/ID RSS growth; first_seen "
          f"{new['new_ns']:,.0f} ns new, {new['repeated_ns']:,.0f} ns repeated; restore {new['restore_s']:.1f} s "
          f"| dict window (before) {old['rss_b']:.1f} B/ID RSS growth; first_seen {old['new_ns']:,.0f} ns new, "
          f"{old['repeated_ns']:,.0f} ns repeated; restore {old['restore_s']:.1f} s | CPU time, {args.probes:,} "
          f"calls each, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
