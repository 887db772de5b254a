"""Which delivery records go into which log file, per delivery partition: pure, and deterministic on replay.

A delivery partition interleaves many delivery keys (`trailARN|account|region`); each key has at most
one open batch. A batch closes at `max_records`, at `max_bytes` of JSON, or `flush_interval_s` after it
opened (wall clock, checked even when nothing arrives). The closed batch becomes a `ClosedBatch`; the
worker journals it (`sinks.journal`), stores it, and only then may the partition's offset move past it.

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

from collections import deque
from dataclasses import dataclass, field

from sinks.journal import FileSpan


@dataclass
class OpenBatch:
    """Records of one delivery key collecting for one log file."""

    delivery_key: str
    first_offset: int
    opened_at: float
    values: list[bytes] = field(default_factory=list)
    last_offset: int = -1
    size: int = 0
    replaying: FileSpan | None = None


@dataclass(frozen=True)
class ClosedBatch:
    """A batch ready to be written; `replaying` is set when it rebuilds an already journaled file."""

    delivery_key: str
    first_offset: int
    last_offset: int
    values: list[bytes]
    replaying: FileSpan | None


class PartitionBatches:
    """The open batches of one delivery partition and what its journal says is already in files."""

    def __init__(self, partition: int, committed: int, journaled: list[FileSpan], *, max_records: int,
                 max_bytes: int, flush_interval_s: float) -> None:
        self.partition = partition
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.flush_interval_s = flush_interval_s
        self.next_offset = committed
        self.open: dict[str, OpenBatch] = {}
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

    def add(self, delivery_key: str, offset: int, value: bytes, now: float) -> ClosedBatch | None:
        """Take the record at `offset`; returns the batch it completed, if any."""
        self.next_offset = offset + 1
        if offset <= self._skip_through.get(delivery_key, -1):
            return None
        batch = self.open.get(delivery_key)
        if batch is None:
            spans = self._rebuild.get(delivery_key)
            replaying = spans.popleft() if spans and spans[0].first_offset == offset else None
            if spans is not None and not spans:
                del self._rebuild[delivery_key]
            batch = self.open[delivery_key] = OpenBatch(delivery_key, offset, now, replaying=replaying)
        batch.values.append(value)
        batch.last_offset = offset
        batch.size += len(value) + 1
        if batch.replaying is not None:
            return self._close(batch) if offset >= batch.replaying.last_offset else None
        if len(batch.values) >= self.max_records or batch.size >= self.max_bytes:
            return self._close(batch)
        return None

    def expired(self, now: float) -> list[ClosedBatch]:
        """Batches open for `flush_interval_s` or longer (a rebuilt file closes only at its journaled end)."""
        due = [b for b in self.open.values()
               if b.replaying is None and now - b.opened_at >= self.flush_interval_s]
        return [self._close(batch) for batch in due]

    def oldest_open_age(self, now: float) -> float:
        return max((now - b.opened_at for b in self.open.values()), default=0.0)

    def commit_offset(self, position: int | None = None) -> int:
        """Where a restart must resume: the first record of the oldest open batch, else the consumer's position.

        `position` (the consumer's, which steps over transaction markers) is used when given and no batch is
        open; otherwise the offset after the last record taken. Batches already handed out by `add` or
        `expired` are the caller's: commit this offset only once every one of them is stored.
        """
        if self.open:
            return min(b.first_offset for b in self.open.values())
        return max(self.next_offset, position or 0)

    def _close(self, batch: OpenBatch) -> ClosedBatch:
        del self.open[batch.delivery_key]
        return ClosedBatch(batch.delivery_key, batch.first_offset, batch.last_offset, batch.values,
                           batch.replaying)
