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
from isal import isal_zlib

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


GZIP_WBITS = 31  # a gzip member: a fixed header (mtime 0), the deflate stream, the CRC-32 and size trailer
FEED_BYTES = 256 * 1024  # records are fed to the compressor in runs of about this much JSON
# The deflate implementations a log file can be written with: (compressobj, lowest level, highest, default).
# ISA-L (Intel's Intelligent Storage Acceleration Library) deflates CloudTrail JSON about 10x faster than zlib
# at level 6 here, for files about 8 % larger; both write standard gzip that every reader takes.
GZIP_ENGINES: dict[str, tuple[Any, int, int, int]] = {
    "isal": (isal_zlib.compressobj, 0, 3, 2),
    "zlib": (zlib.compressobj, 1, 9, 6),
}


def gzip_level(engine: str, level: int | None) -> int:
    """`level`, or the engine's default level when None; ValueError naming the range when it is out of it."""
    if engine not in GZIP_ENGINES:
        raise ValueError(f"gzip_engine: must be one of {', '.join(GZIP_ENGINES)} (got {engine!r})")
    _, lowest, highest, default = GZIP_ENGINES[engine]
    if level is None:
        return default
    if not lowest <= level <= highest:
        raise ValueError(f"gzip_level: {engine} takes {lowest} to {highest} (got {level})")
    return level


def compress(content: bytes, compresslevel: int = 6) -> bytes:
    """One gzip member (zlib) with a fixed header (mtime 0), so the same content always gives the same bytes,
    and the same bytes as a zlib `LogFileWriter` gives for it."""
    deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, GZIP_WBITS)
    return deflate.compress(content) + deflate.flush()


class LogFileWriter:
    """One log file written as its records arrive: `{"Records":[...]}` streamed into one gzip member.

    Only the compressed bytes and at most `FEED_BYTES` of JSON not yet compressed are held, so an open file
    costs a fraction of its content. The JSON is fed to the compressor in runs that depend only on the records,
    so the same records always give the same body, whatever the engine (ISA-L's output depends on how its
    input is cut; zlib's does not, so a zlib body is byte for byte `compress(log_file_content(records))`). The
    SHA-256 of the uncompressed content (what a digest file lists) is computed on the way.
    """

    def __init__(self, level: int | None = None, engine: str = "zlib") -> None:
        compressobj = GZIP_ENGINES[engine][0]
        self._deflate = compressobj(gzip_level(engine, level), zlib.DEFLATED, GZIP_WBITS)
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
