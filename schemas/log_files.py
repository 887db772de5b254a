"""CloudTrail log files as they are laid out in S3 (docs/cloudtrail.md §2): key and gzip body."""

from __future__ import annotations

import gzip
import random
import string
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


def compress(content: bytes, compresslevel: int = 6) -> bytes:
    """One gzip member with a fixed header (mtime 0), so the same content always gives the same bytes."""
    return gzip.compress(content, compresslevel=compresslevel, mtime=0)


def log_file_body(records: Iterable[dict[str, Any]], compresslevel: int = 6) -> bytes:
    """One gzip member holding compact `{"Records":[...]}`; refuses an empty file as CloudTrail never writes one."""
    return compress(log_file_content(orjson.dumps(r) for r in records), compresslevel)
