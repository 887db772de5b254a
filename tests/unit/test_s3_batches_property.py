"""PartitionBatches under any interleaving of take, expire, journal, store, skip, commit, crash and revoke.

A model of one delivery partition and the S3 sink around `PartitionBatches`: the partition holds records of
three delivery keys and transaction markers (offsets the consumer never returns); the sink takes records in
order, closes batches (at their limits, by age, or early to bound memory), journals each closed batch's
span, stores it under its object key, or skips it as a deleted trail's records. A crash forgets everything
in memory; a revoke commits first, then forgets. After either, a new owner starts at the committed offset
with the journaled spans, as `S3Sink._on_assign` does.

Held at every commit: every record below the committed offset is stored or deliberately skipped. Held at
the end, once everything is drained: every record is in exactly one stored object (a rebuilt file replaces
its journaled object with the same records) or was skipped.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.s3_batches import ClosedBatch, PartitionBatches

KEYS = ("trailA|111122223333|us-east-1", "trailB|111122223333|us-east-1", "trailC|444455556666|eu-west-1")
MARKER = None
OPERATIONS = ("take", "take", "take", "take", "expire", "early", "journal", "store", "skip", "commit", "crash",
              "revoke", "end")


@dataclass
class Sink:
    """One owner of the partition: its batches, its read cursor, and batches closed but not settled."""

    batches: PartitionBatches
    cursor: int
    closed: list[ClosedBatch] = field(default_factory=list)
    journaled: list[tuple[ClosedBatch, FileSpan]] = field(default_factory=list)


@dataclass
class World:
    """The partition, the journal, S3 and the committed offset: what survives a crash."""

    log: list[str | None]
    max_records: int
    committed: int = 0
    journal: list[FileSpan] = field(default_factory=list)
    objects: dict[str, tuple[int, ...]] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    names: int = 0

    def owner(self) -> Sink:
        spans = [span for span in self.journal if span.last_offset >= self.committed]
        batches = PartitionBatches(0, self.committed, spans, max_records=self.max_records, max_bytes=1 << 30,
                                   flush_interval_s=10.0)
        return Sink(batches, self.committed)

    def span(self, batch: ClosedBatch) -> FileSpan:
        self.names += 1
        return FileSpan(partition=0, delivery_key=batch.delivery_key, first_offset=batch.first_offset,
                        last_offset=batch.last_offset, bucket="b", object_key=f"file-{self.names}",
                        records=batch.records, sha256="", compressed_bytes=0, oldest_event_time="",
                        newest_event_time="", delivered_at="")

    def records_below(self, offset: int) -> list[int]:
        return [o for o in range(min(offset, len(self.log))) if self.log[o] is not MARKER]

    def handled(self) -> set[int]:
        return {o for offsets in self.objects.values() for o in offsets} | self.skipped


def offsets_of(batch: ClosedBatch) -> tuple[int, ...]:
    """The offsets a closed batch's log file holds (each record is its offset, as JSON)."""
    return tuple(orjson.loads(gzip.decompress(batch.body))["Records"])


def step(world: World, sink: Sink, operation: str, now: float) -> Sink:
    """Apply one operation; returns the sink that owns the partition afterwards."""
    batches = sink.batches
    if operation == "take":
        if sink.cursor < len(world.log):
            key = world.log[sink.cursor]
            if key is not MARKER and (closed := batches.add(key, sink.cursor, str(sink.cursor).encode(), now)):
                sink.closed.append(closed)
            sink.cursor += 1
    elif operation == "end":
        if sink.cursor == len(world.log):
            batches.reached(len(world.log))
    elif operation == "expire":
        sink.closed.extend(batches.expired(now))
    elif operation == "early":
        closable = [(held, key) for held, key, early in batches.held() if early]
        if closable:
            sink.closed.append(batches.close(max(closable)[1]))
    elif operation == "journal" and sink.closed:
        batch = sink.closed.pop(0)
        span = batch.replaying or world.span(batch)
        if batch.replaying is None:
            world.journal.append(span)
        sink.journaled.append((batch, span))
    elif operation == "store" and sink.journaled:
        batch, span = sink.journaled.pop(0)
        if span.object_key in world.objects:
            assert world.objects[span.object_key] == offsets_of(batch), "a rebuilt file must hold the same records"
        world.objects[span.object_key] = offsets_of(batch)
        batches.settled(batch)
    elif operation == "skip" and sink.closed and sink.closed[0].replaying is None:
        batch = sink.closed.pop(0)
        world.skipped.update(offsets_of(batch))
        batches.settled(batch)
    elif operation in ("commit", "revoke"):
        world.committed = batches.commit_offset()
        unhandled = set(world.records_below(world.committed)) - world.handled()
        assert not unhandled, f"committed {world.committed} passes unstored records {sorted(unhandled)}"
        if operation == "revoke":
            return world.owner()
    elif operation == "crash":
        return world.owner()
    return sink


@settings(max_examples=400, deadline=None)
@given(
    log=st.lists(st.sampled_from((*KEYS, MARKER)), min_size=1, max_size=40),
    operations=st.lists(st.sampled_from(OPERATIONS), max_size=160),
    max_records=st.integers(min_value=1, max_value=5),
)
def test_the_commit_never_passes_an_unstored_record_and_each_record_lands_once(
        log: list[str | None], operations: list[str], max_records: int) -> None:
    world = World(log, max_records)
    sink = world.owner()
    for tick, operation in enumerate(operations):
        sink = step(world, sink, operation, now=float(tick))
    for tick in range(len(operations), len(operations) + 2 * len(log) + 2):
        for operation in ("take", "end"):
            sink = step(world, sink, operation, now=float(tick))
    sink.closed.extend(sink.batches.expired(float("inf")))
    while sink.closed or sink.journaled:
        sink = step(world, sink, "journal", 0.0)
        sink = step(world, sink, "store", 0.0)
    sink = step(world, sink, "commit", 0.0)

    assert world.committed == len(log), "a drained partition commits its end, markers included"
    stored = [o for offsets in world.objects.values() for o in offsets]
    assert len(stored) == len(set(stored)), "no record in two files"
    assert set(stored) | world.skipped == set(world.records_below(len(log))), "every record stored or skipped"
