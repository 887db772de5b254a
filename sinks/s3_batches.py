"""Which delivery records go into which log file, per delivery partition: pure, and deterministic on replay.

A delivery partition interleaves many delivery keys (`trailARN|account|region`); each key has at most
one open batch, its records compressed as they arrive (`LogFileWriter`). A batch closes at `max_records`, at
`max_bytes` of JSON, or `flush_interval_s` after it opened (wall clock, checked even when nothing arrives),
or earlier when the worker closes it to bound the memory its open files hold (`close`). The closed batch
becomes a `ClosedBatch`; the worker journals it (`kafkatrail.sinks.journal`), stores it, and reports it
`settled`; only then may the partition's offset move past it.

Where a commit may go (`commit_offset`) is derived only from what this object was handed: the first record
of the oldest batch that is open or closed-but-unsettled, else the offset after the last record taken.
The consumer's `position()` is never consulted: it says where librdkafka fetches next, and during a
rebalance or `close()` it can stand at the end of the partition although the records before it were never
handed to the sink. The delivery topic is written in transactions, so its partitions end with commit
markers the consumer never returns; `reached(offset)` steps over them with the end-of-partition event,
which librdkafka queues behind every record it fetched before that offset, so by the time it is handed
over, every record below `offset` has been handed over too (aborted records and markers have no record to
hand).

After a restart the consumer resumes at the committed offset C, and `PartitionBatches` is built with the
journaled spans of the partition whose last offset is >= C:

- a span that began before C was stored before C was committed (the worker commits only when no
  journaled file is unstored), so its remaining records are skipped;
- a span that began at or after C may not be stored yet, so its records are gathered again and the file
  rebuilt under its journaled object key: the same bytes, overwriting itself if it was stored;
- records of a key past its journaled spans are batched afresh.

So no record is in two files and none is left out, whatever moment the sink was killed at.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafkatrail.schemas.log_files import LogFileWriter
from kafkatrail.sinks.journal import FileSpan


@dataclass
class OpenBatch:
    """Records of one delivery key collecting for one log file, compressed as they arrive."""

    delivery_key: str
    first_offset: int
    opened_at: float
    file: LogFileWriter
    event_times: Counter[str] = field(default_factory=Counter)
    last_offset: int = -1
    size: int = 0
    replaying: FileSpan | None = None


@dataclass(frozen=True)
class ClosedBatch:
    """A log file ready to be stored; `replaying` is set when it rebuilds an already journaled file.

    `event_times` counts the records per `eventTime` text (oldest and newest for the journal, the latency
    histogram per record) without holding the records.
    """

    delivery_key: str
    first_offset: int
    last_offset: int
    records: int
    body: bytes
    sha256: str
    event_times: Counter[str]
    replaying: FileSpan | None


def closed_batch(delivery_key: str, first_offset: int, last_offset: int, values: Iterable[tuple[bytes, str]],
                 gzip: tuple[str, int | None] = ("zlib", None)) -> ClosedBatch:
    """A closed batch of the (record, eventTime) pairs `values`, for a file built outside `PartitionBatches`;
    `gzip` is the (engine, level) of its body."""
    file, event_times = LogFileWriter(gzip[1], gzip[0]), Counter[str]()
    for value, event_time in values:
        file.add(value)
        event_times[event_time] += 1
    body, sha256 = file.finish()
    return ClosedBatch(delivery_key, first_offset, last_offset, file.records, body, sha256, event_times, None)


class PartitionBatches:
    """The open batches of one delivery partition and what its journal says is already in files."""

    def __init__(self, partition: int, committed: int, journaled: list[FileSpan], *, max_records: int,
                 max_bytes: int, flush_interval_s: float, gzip: tuple[str, int | None] = ("zlib", None)) -> None:
        self.partition = partition
        self.gzip = gzip
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.flush_interval_s = flush_interval_s
        self.next_offset = committed
        self.open: dict[str, OpenBatch] = {}
        self.unsettled: dict[int, ClosedBatch] = {}  # first offset -> closed batch not yet stored or skipped
        self._skip_through: dict[str, int] = {}
        self._rebuild: dict[str, deque[FileSpan]] = {}
        for span in sorted(journaled, key=lambda s: s.first_offset):
            if span.last_offset < committed:
                continue
            if span.first_offset < committed:
                self._skip_through[span.delivery_key] = max(self._skip_through.get(span.delivery_key, -1),
                                                            span.last_offset)
            else:
                self._rebuild.setdefault(span.delivery_key, deque()).append(span)

    def add(self, delivery_key: str, offset: int, value: bytes, now: float, event_time: str = "") -> ClosedBatch | None:
        """Take the record at `offset` (its `eventTime` text beside it); returns the batch it completed, if any."""
        self.next_offset = max(self.next_offset, offset + 1)
        if offset <= self._skip_through.get(delivery_key, -1):
            return None
        batch = self.open.get(delivery_key)
        if batch is None:
            spans = self._rebuild.get(delivery_key)
            replaying = spans.popleft() if spans and spans[0].first_offset == offset else None
            if spans is not None and not spans:
                del self._rebuild[delivery_key]
            file = LogFileWriter(self.gzip[1], self.gzip[0])
            batch = self.open[delivery_key] = OpenBatch(delivery_key, offset, now, file, replaying=replaying)
        batch.file.add(value)
        batch.event_times[event_time] += 1
        batch.last_offset = offset
        batch.size += len(value) + 1
        if batch.replaying is not None:
            return self._close(batch) if offset >= batch.replaying.last_offset else None
        if batch.file.records >= self.max_records or batch.size >= self.max_bytes:
            return self._close(batch)
        return None

    def expired(self, now: float) -> list[ClosedBatch]:
        """Batches open for `flush_interval_s` or longer (a rebuilt file closes only at its journaled end)."""
        due = [b for b in self.open.values()
               if b.replaying is None and now - b.opened_at >= self.flush_interval_s]
        return [self._close(batch) for batch in due]

    def held(self) -> list[tuple[int, str, bool]]:
        """(bytes held, delivery key, closable early) of each open batch; a rebuilt file closes only at its
        journaled end, so it is not closable early."""
        return [(b.file.held_bytes(), key, b.replaying is None) for key, b in self.open.items()]

    def close(self, delivery_key: str) -> ClosedBatch:
        """Close the open batch of `delivery_key` now, before any of its limits (to bound the memory held)."""
        batch = self.open[delivery_key]
        if batch.replaying is not None:
            raise ValueError(f"{delivery_key}: a rebuilt file closes only at its journaled end")
        return self._close(batch)

    def oldest_open_age(self, now: float) -> float:
        return max((now - b.opened_at for b in self.open.values()), default=0.0)

    def reached(self, end_offset: int) -> None:
        """The consumer reported the end of the partition at `end_offset`: every record below it was taken."""
        self.next_offset = max(self.next_offset, end_offset)

    def settled(self, batch: ClosedBatch) -> None:
        """`batch` (handed out by `add` or `expired`) is stored, or deliberately not written."""
        self.unsettled.pop(batch.first_offset, None)

    def commit_offset(self) -> int:
        """Where a restart must resume: the first record of the oldest open or unsettled batch, else the offset
        after the last record taken (or the end of the partition, once `reached`)."""
        firsts = [b.first_offset for b in self.open.values()]
        firsts.extend(self.unsettled)
        return min(firsts, default=self.next_offset)

    def _close(self, batch: OpenBatch) -> ClosedBatch:
        del self.open[batch.delivery_key]
        body, sha256 = batch.file.finish()
        closed = ClosedBatch(batch.delivery_key, batch.first_offset, batch.last_offset, batch.file.records, body,
                             sha256, batch.event_times, batch.replaying)
        self.unsettled[closed.first_offset] = closed
        return closed
