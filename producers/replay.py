"""Replay CloudTrail log files into Kafka.

Accepted inputs: log files as CloudTrail writes them (`{"Records": [...]}`), JSON arrays of records,
single record objects, each as `.json` or `.json.gz`, and directory trees laid out as CloudTrail lays
them out in S3 (digest files under `CloudTrail-Digest/` are skipped: they hold no records).
Every record goes through `EventProducer.emit()`; a rejected one is reported with `file:index` and
the rule it broke, and the replay goes on.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from kafkatrail.producers.event_producer import EventProducer, InvalidEventError

GZIP_MAGIC = b"\x1f\x8b"
EXAMPLES_PER_REASON = 3
MAX_DECOMPRESSED_BYTES = 128 << 20  # far above a real log file; bounds what a gzip bomb can take


def log_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every .json / .json.gz file under the given files and folders, in a stable order."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.name.endswith((".json", ".json.gz")) and \
                        "CloudTrail-Digest" not in found.parts:
                    yield found
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")


def read_records(path: Path) -> list[Any]:
    """The records of one file; raises ValueError naming the file when it is not a log file."""
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        raw = gunzip(raw, path)
    try:
        content = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(content, dict) and isinstance(content.get("Records"), list):
        return content["Records"]
    if isinstance(content, list):
        return content
    if isinstance(content, dict) and "eventID" in content:
        return [content]
    raise ValueError(f'{path}: neither a log file ({{"Records": [...]}}), a JSON array nor a record')


def gunzip(compressed: bytes, path: Path, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """The content of a gzip file (every member), never more than `limit` bytes of it held; ValueError naming
    the file when it is corrupt, truncated or larger than `limit`."""
    parts: list[bytes] = []
    size = 0
    rest = compressed
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            part = inflater.decompress(rest, limit - size + 1)
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                raise ValueError(f"{path}: decompresses to more than {limit:,} bytes; not replayed")
            if not inflater.eof:
                raise ValueError(f"{path}: not a valid gzip file (truncated)")
            parts.append(part)
            rest = inflater.unused_data
    except zlib.error as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
    return b"".join(parts)


@dataclass
class ReplaySummary:
    """What a replay did: counts, and rejections grouped by reason with file:index examples."""

    files: int = 0
    published: int = 0
    rejected: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0

    def reject(self, reason: str, where: str) -> None:
        self.rejected += 1
        self.reasons[reason].append(where)

    def lines(self) -> list[str]:
        rate = self.published / self.seconds if self.seconds else 0.0
        out = [f"published {self.published} records from {self.files} files in {self.seconds:.1f} s "
               f"({rate:,.0f} records/s); rejected {self.rejected}"]
        for reason, places in sorted(self.reasons.items(), key=lambda item: -len(item[1])):
            shown = ", ".join(places[:EXAMPLES_PER_REASON]) + (" ..." if len(places) > EXAMPLES_PER_REASON else "")
            out.append(f"  {len(places)} x {reason}  [{shown}]")
        out.extend(f"  unreadable: {problem}" for problem in self.unreadable_files)
        return out


def replay(paths: Iterable[Path], producer: EventProducer, rate: float | None = None,
           progress: bool = True) -> ReplaySummary:
    """Publish every record of the given files; pace to `rate` records/s when given."""
    files = list(log_files(paths))
    summary = ReplaySummary(files=len(files))
    began = time.monotonic()
    with tqdm(total=len(files), unit="file", disable=not progress, leave=False) as bar:
        for path in files:
            try:
                records = read_records(path)
            except (ValueError, OSError) as exc:
                summary.unreadable_files.append(str(exc))
                bar.update()
                continue
            for index, record in enumerate(records):
                try:
                    producer.emit(record)
                    summary.published += 1
                except InvalidEventError as exc:
                    summary.reject(str(exc), f"{path}:{index}")
                if rate:
                    ahead = summary.published / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            bar.update()
            bar.set_postfix(published=summary.published, rejected=summary.rejected)
    producer.flush()
    summary.seconds = time.monotonic() - began
    return summary
