"""CloudTrail log files as they are laid out in S3 (docs/cloudtrail.md §2): key and gzip body."""

from __future__ import annotations

import hashlib
import random
import string
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

UNIQUE_ALPHABET = string.ascii_letters + string.digits
KINDS = ("CloudTrail", "CloudTrail-Insight")


def log_file_key(account: str, region: str, delivered_at: datetime, unique: str, prefix: str = "",
                 organization_id: str | None = None, kind: str = "CloudTrail") -> str:
    """`[prefix/]AWSLogs/[orgId/]acct/<kind>/region/YYYY/MM/DD/acct_<kind>_region_YYYYMMDDTHHmmZ_<unique>.json.gz`.

    `kind` is `CloudTrail` for log files, `CloudTrail-Insight` for Insights files (docs/cloudtrail.md §2.4).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)} (got {kind!r})")
    if len(unique) != 16 or any(c not in UNIQUE_ALPHABET for c in unique):
        raise ValueError(f"unique: must be 16 characters of [A-Za-z0-9] (got {unique!r})")
    head = f"{prefix.strip('/')}/AWSLogs/" if prefix.strip("/") else "AWSLogs/"
    if organization_id:
        head += f"{organization_id}/"
    return (f"{head}{account}/{kind}/{region}/{delivered_at:%Y/%m/%d}/"
            f"{account}_{kind}_{region}_{delivered_at:%Y%m%dT%H%M}Z_{unique}.json.gz")


def unique_part(rng: random.Random | None = None) -> str:
    """The 16 random characters that keep file names apart."""
    return "".join((rng or random.SystemRandom()).choices(UNIQUE_ALPHABET, k=16))


def log_file_content(json_records: Iterable[bytes]) -> bytes:
    """The decompressed content of a log file, `{"Records":[...]}`, from records already in JSON."""
    content = b'{"Records":[' + b",".join(json_records) + b"]}"
    if content == b'{"Records":[]}':
        raise ValueError("records: a log file holds at least one record")
    return content


GZIP_WBITS = 31  # zlib's gzip wrapper: a fixed header (mtime 0) and the CRC-32 and size trailer
FEED_BYTES = 256 * 1024  # records are fed to the compressor in runs of about this much JSON


def compress(content: bytes, compresslevel: int = 6) -> bytes:
    """One gzip member with a fixed header (mtime 0), so the same content always gives the same bytes, and the
    same bytes as `LogFileWriter` gives for it."""
    deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, GZIP_WBITS)
    return deflate.compress(content) + deflate.flush()


class LogFileWriter:
    """One log file written as its records arrive: `{"Records":[...]}` streamed into one gzip member.

    Only the compressed bytes and at most `FEED_BYTES` of JSON not yet compressed are held, so an open file
    costs about a tenth of its content. Deflate's output does not depend on how its input was cut, so the body
    is byte for byte `compress(log_file_content(records))`; the SHA-256 of the uncompressed content (what a
    digest file lists) is computed on the way.
    """

    def __init__(self, compresslevel: int = 6) -> None:
        self._deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, GZIP_WBITS)
        self._content_hash = hashlib.sha256()
        self._pending = bytearray(b'{"Records":[')
        self._chunks: list[bytes] = []
        self._compressed = 0
        self.records = 0

    def add(self, json_record: bytes) -> None:
        """Append one record, already compact JSON."""
        if self.records:
            self._pending += b","
        self._pending += json_record
        self.records += 1
        if len(self._pending) >= FEED_BYTES:
            self._feed()

    def held_bytes(self) -> int:
        """Bytes this open file holds: compressed output so far and JSON not yet compressed."""
        return self._compressed + len(self._pending)

    def finish(self) -> tuple[bytes, str]:
        """(the gzip body, the hex SHA-256 of the uncompressed content); the writer is spent afterwards."""
        if not self.records:
            raise ValueError("records: a log file holds at least one record")
        self._pending += b"]}"
        self._feed()
        self._chunks.append(self._deflate.flush())
        body = b"".join(self._chunks)
        self._chunks = []
        return body, self._content_hash.hexdigest()

    def _feed(self) -> None:
        self._content_hash.update(self._pending)
        chunk = self._deflate.compress(self._pending)
        if chunk:
            self._chunks.append(chunk)
            self._compressed += len(chunk)
        self._pending = bytearray()


def log_file_body(records: Iterable[dict[str, Any]], compresslevel: int = 6) -> bytes:
    """One gzip member holding compact `{"Records":[...]}`; refuses an empty file as CloudTrail never writes one."""
    return compress(log_file_content(orjson.dumps(r) for r in records), compresslevel)
