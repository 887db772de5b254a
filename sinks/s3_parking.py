"""Log files S3 refuses for good: parked so that every other trail keeps flowing, retried until stored or released.

A PutObject can fail for a reason that retrying does not cure: the trail's bucket does not exist or refuses
the trail, its KMS key is disabled, the key is not acceptable (`PERMANENT_S3_ERRORS`). Retrying such a file
the way an outage is retried would hold its partition's commit behind it and stall every trail of the
partition, across restarts. The S3 sink parks it instead:

1. A `parked` journal record (the span and the AWS error) is acknowledged; the batch then counts as settled,
   so the commit moves past it and the other files of the partition flow on.
2. A `parked` record goes to the `delivery-failures` topic (`kafkatrail.schemas.contract.DeliveryFailure`),
   `kafkatrail_s3_parked_files` rises, and an alert rule fires on it.
3. The file is tried again once per `s3.parked_retry_interval_s`, and at once when its trail changes. Its
   records are read again from the delivery topic by the journaled offsets and key, and stored under the
   journaled object key; when the trail now names another bucket or prefix, under a new key that is
   journaled first (a `file` record with the same offsets), so a retry after a crash overwrites that object.
4. It ends `stored` (journal, so the digest worker lists it, and `delivery-failures`), or `released` when its
   trail was deleted or its records have left the delivery topic (retention): then nothing more is tried.

The sink rebuilds the parked set from the journal on assignment (`ParkedFiles.apply`, in journal order); its
commit metadata names a journal offset at or before the oldest parked record of the partition
(`pinned_journal_offset`), so a parked file survives restarts and rebalances until it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafkatrail.sinks.journal import FileSpan

PERMANENT_S3_ERRORS = frozenset({
    "NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidBucketName", "InvalidBucketState",
    "KeyTooLongError", "InvalidArgument", "InvalidRequest", "InvalidObjectState", "InvalidStorageClass",
    "KMS.NotFoundException", "KMS.DisabledException", "KMS.KMSInvalidStateException", "KMS.AccessDeniedException",
    "PermanentRedirect", "AuthorizationHeaderMalformed",
})

FileId = tuple[int, str, int]


def file_id(span: FileSpan) -> FileId:
    """What identifies a log file whatever key it is stored under: its partition, delivery key and first offset."""
    return span.partition, span.delivery_key, span.first_offset


@dataclass
class ParkedFile:
    """A log file waiting for its trail to be fixed: its span, the last AWS error, when to try it again."""

    span: FileSpan
    error: str
    journal_offset: int
    due_at: float
    attempts: int = 1


class ParkedFiles:
    """The parked log files of the partitions one S3 sink owns."""

    def __init__(self, retry_interval_s: float) -> None:
        self.retry_interval_s = retry_interval_s
        self._files: dict[FileId, ParkedFile] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, span: FileSpan) -> bool:
        return file_id(span) in self._files

    def park(self, span: FileSpan, error: str, journal_offset: int, now: float) -> None:
        """`span` was refused for good and its `parked` record is at `journal_offset`."""
        self._files[file_id(span)] = ParkedFile(span, error, journal_offset, now + self.retry_interval_s)

    def apply(self, kind: str, span: FileSpan, journal_offset: int, error: str, now: float) -> None:
        """Take one journal record, in journal order, to rebuild the parked set on assignment (a file found
        parked is due at once)."""
        key = file_id(span)
        if kind == "parked":
            self._files[key] = ParkedFile(span, error, journal_offset, now)
        elif key in self._files:
            if kind == "file":
                self._files[key].span = span
            elif kind in ("stored", "released"):
                del self._files[key]

    def due(self, now: float) -> list[ParkedFile]:
        """The parked files to try now, the longest waiting first."""
        return sorted((f for f in self._files.values() if f.due_at <= now), key=lambda f: f.due_at)

    def moved(self, parked: ParkedFile, span: FileSpan) -> None:
        """The file goes under a new key (its trail names another bucket or prefix)."""
        parked.span = span

    def failed_again(self, parked: ParkedFile, error: str, now: float) -> None:
        parked.error = error
        parked.attempts += 1
        parked.due_at = now + self.retry_interval_s

    def ended(self, span: FileSpan) -> None:
        """`span` was stored or released: nothing more to try."""
        self._files.pop(file_id(span), None)

    def trail_changed(self, trail_arn: str, now: float) -> None:
        """Try the trail's parked files at once: the change may have fixed them (or deleted the trail)."""
        for parked in self._files.values():
            if parked.span.trail_arn == trail_arn:
                parked.due_at = now

    def pinned_journal_offset(self, partition: int) -> int | None:
        """The oldest journal offset the partition's parked files need read again after a restart."""
        return min((f.journal_offset for f in self._files.values() if f.span.partition == partition), default=None)

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions went to another sink, which rebuilds their parked files from the journal."""
        gone = set(partitions)
        for key in [key for key in self._files if key[0] in gone]:
            del self._files[key]
