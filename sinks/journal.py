"""The S3 sink's journal: which delivery records each log file holds, written before the file is stored.

One journal partition per delivery partition. A `FileSpan` says: log file `object_key` in `bucket` holds
exactly the records with delivery key `delivery_key` at offsets `first_offset`..`last_offset` of
delivery partition `partition`. Because that range, filtered by key, always yields the same records in
the same order, the file can be rebuilt byte for byte from Kafka. A second record, `stored`, follows
once S3 has the object; the digest writer lists stored files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson


@dataclass(frozen=True)
class FileSpan:
    """One log file and the delivery records it holds."""

    partition: int
    delivery_key: str
    first_offset: int
    last_offset: int
    bucket: str
    object_key: str
    records: int
    sha256: str
    compressed_bytes: int
    oldest_event_time: str
    newest_event_time: str
    delivered_at: str

    @property
    def trail_arn(self) -> str:
        return self.delivery_key.split("|", 1)[0]

    def to_journal(self, kind: str = "file") -> bytes:
        """The journal value: kind `file` (before the PutObject) or `stored` (after it)."""
        return orjson.dumps({"type": kind, **asdict(self)})

    @classmethod
    def from_journal(cls, value: bytes) -> tuple[str, FileSpan]:
        """(kind, span) of a journal value."""
        document = orjson.loads(value)
        kind = document.pop("type")
        return kind, cls(**document)
