"""CloudTrail digest files as the validator reads them (docs/cloudtrail.md §4): key, document, signed string.

Pure functions: no I/O. One chain per (trail, account, source region); each digest names its predecessor
(`Previous`) and folds the predecessor's signature into its own signed string.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SIGNATURE_ALGORITHM = "SHA256withRSA"
HASH_ALGORITHM = "SHA-256"
KEY_TIME = "%Y%m%dT%H%M%SZ"
JSON_TIME = "%Y-%m-%dT%H:%M:%SZ"


def accounts_folder(prefix: str, organization_id: str | None) -> str:
    """`[prefix/]AWSLogs/[orgId/]`: the folder of a trail's account folders."""
    head = f"{prefix.strip('/')}/AWSLogs/" if prefix.strip("/") else "AWSLogs/"
    return f"{head}{organization_id}/" if organization_id else head


@dataclass(frozen=True)
class ChainId:
    """Where one digest chain lives: the trail's bucket and layout, the account and the source region."""

    trail_name: str
    home_region: str
    bucket: str
    prefix: str
    organization_id: str | None
    account: str
    region: str

    @property
    def folder(self) -> str:
        """`[prefix/]AWSLogs/[orgId/]account/CloudTrail-Digest/region/`: every digest of the chain is below it."""
        return f"{accounts_folder(self.prefix, self.organization_id)}{self.account}/CloudTrail-Digest/{self.region}/"

    def key(self, end: datetime) -> str:
        """The digest key for a digest ending at `end` (UTC, whole seconds)."""
        return (f"{self.folder}{end:%Y/%m/%d}/{self.account}_CloudTrail-Digest_{self.region}_{self.trail_name}_"
                f"{self.home_region}_{end.strftime(KEY_TIME)}.json.gz")

    def day_folder(self, day: datetime) -> str:
        return f"{self.folder}{day:%Y/%m/%d}/"

    def owns(self, key: str) -> bool:
        """Whether `key` is a (non-backfill) digest of this chain, as the validator's pattern matches it."""
        return re.fullmatch(re.escape(self.folder) + r"\d+/\d+/\d+/" + re.escape(
            f"{self.account}_CloudTrail-Digest_{self.region}_{self.trail_name}_{self.home_region}_") +
            r"\d{8}T\d{6}Z\.json\.gz", key) is not None


@dataclass(frozen=True)
class Previous:
    """What the next digest of a chain needs of the one before it."""

    bucket: str
    key: str
    sha256: str
    signature: str
    end: datetime


@dataclass(frozen=True)
class LogFileEntry:
    """One stored log file as a digest lists it."""

    bucket: str
    key: str
    sha256: str
    oldest_event_time: str
    newest_event_time: str

    def to_json(self) -> dict[str, str]:
        return {"s3Bucket": self.bucket, "s3Object": self.key, "hashValue": self.sha256,
                "hashAlgorithm": HASH_ALGORITHM, "newestEventTime": self.newest_event_time,
                "oldestEventTime": self.oldest_event_time}


def time_text(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC."""
    return moment.astimezone(UTC).strftime(JSON_TIME)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, JSON_TIME).replace(tzinfo=UTC)


def period_end_after(moment: float, period_s: int) -> datetime:
    """The first period boundary (a multiple of `period_s` since the epoch) strictly after `moment`."""
    return datetime.fromtimestamp((int(moment) // period_s + 1) * period_s, UTC)


def key_time(key: str) -> datetime:
    """The end time a (non-backfill) digest key carries in its last 16 characters before `.json.gz`."""
    return datetime.strptime(key[-24:-8], KEY_TIME).replace(tzinfo=UTC)


def digest_document(chain: ChainId, start: datetime, end: datetime, files: list[LogFileEntry],
                    previous: Previous | None, key_fingerprint: str) -> dict[str, Any]:
    """The digest JSON object for the window [start, end) of `chain`."""
    return {
        "awsAccountId": chain.account,
        "digestStartTime": time_text(start),
        "digestEndTime": time_text(end),
        "digestS3Bucket": chain.bucket,
        "digestS3Object": chain.key(end),
        "digestPublicKeyFingerprint": key_fingerprint,
        "digestSignatureAlgorithm": SIGNATURE_ALGORITHM,
        "newestEventTime": max((f.newest_event_time for f in files), default=None),
        "oldestEventTime": min((f.oldest_event_time for f in files), default=None),
        "previousDigestS3Bucket": previous.bucket if previous else None,
        "previousDigestS3Object": previous.key if previous else None,
        "previousDigestHashValue": previous.sha256 if previous else None,
        "previousDigestHashAlgorithm": HASH_ALGORITHM if previous else None,
        "previousDigestSignature": previous.signature if previous else None,
        "logFiles": [f.to_json() for f in files],
    }


def document_bytes(document: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed, signed and gzipped."""
    return json.dumps(document, separators=(",", ":")).encode()


def string_to_sign(document: dict[str, Any], content_sha256: str) -> bytes:
    """`endTime\\nbucket/key\\nsha256(content)\\nprevious signature or null`, UTF-8, no trailing newline."""
    return "\n".join([document["digestEndTime"], f"{document['digestS3Bucket']}/{document['digestS3Object']}",
                      content_sha256, document.get("previousDigestSignature") or "null"]).encode()


@dataclass(frozen=True)
class SignedDigest:
    """A digest ready to store: gzipped body, S3 user metadata, and what its successor needs."""

    body: bytes
    metadata: dict[str, str]
    previous_for_next: Previous


def build_digest(document: dict[str, Any], sign: Callable[[bytes], bytes]) -> SignedDigest:
    """Hash the document's bytes, sign the string to sign with `sign`, gzip, and attach the signature as metadata."""
    content = document_bytes(document)
    content_sha256 = hashlib.sha256(content).hexdigest()
    signature_hex = sign(string_to_sign(document, content_sha256)).hex()
    return SignedDigest(
        body=gzip.compress(content, mtime=0),
        metadata={"signature": signature_hex, "signature-algorithm": SIGNATURE_ALGORITHM},
        previous_for_next=Previous(document["digestS3Bucket"], document["digestS3Object"], content_sha256,
                                   signature_hex, parse_time(document["digestEndTime"])))


def previous_from_digest(bucket: str, key: str, content: bytes, signature: str) -> Previous:
    """The chain link a stored digest provides, from its decompressed content and signature metadata."""
    document = json.loads(content)
    return Previous(bucket, key, hashlib.sha256(content).hexdigest(), signature,
                    parse_time(document["digestEndTime"]))
