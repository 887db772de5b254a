"""The S3 sink's journal: which delivery records each log file holds, written before the file is stored.

One journal partition per delivery partition. A `FileSpan` says: log file `object_key` in `bucket` holds
exactly the records with delivery key `delivery_key` at offsets `first_offset`..`last_offset` of
delivery partition `partition`. Because that range, filtered by key, always yields the same records in
the same order, the file can be rebuilt byte for byte from Kafka. A second record, `stored`, follows
once S3 has the object; the digest writer lists stored files. A file S3 refuses for good is `parked`
(with the AWS error) and later `stored` or `released` (`kafkatrail.sinks.s3_parking`).
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

    def to_journal(self, kind: str = "file", error: str | None = None) -> bytes:
        """The journal value: kind `file` (before the PutObject), `stored` (after it), `parked` (refused for
        good, with the AWS `error`) or `released` (a parked file given up)."""
        document: dict[str, object] = {"type": kind, **asdict(self)}
        if error is not None:
            document["error"] = error
        return orjson.dumps(document)

    @classmethod
    def from_journal(cls, value: bytes) -> tuple[str, FileSpan]:
        """(kind, span) of a journal value."""
        kind, span, _ = cls.journal_entry(value)
        return kind, span

    @classmethod
    def journal_entry(cls, value: bytes) -> tuple[str, FileSpan, str]:
        """(kind, span, AWS error or release reason, else "") of a journal value."""
        document = orjson.loads(value)
        kind = document.pop("type")
        error = document.pop("error", "")
        return kind, cls(**document), error
