"""Replay CloudTrail log files into Kafka.

Accepted inputs: log files as CloudTrail writes them (`{"Records": [...]}`), JSON arrays of records,
single record objects, each as `.json` or `.json.gz`, and directory trees laid out as CloudTrail lays
them out in S3 (digest files under `CloudTrail-Digest/` are skipped: they hold no records).
Every record goes through `EventProducer.emit()`; a rejected one is reported with `file:index` and
the rule it broke, and the replay goes on.

A file is parsed whole (orjson) when it is valid JSON. When it is not, its records are located by a
scan that follows JSON's structure without decoding text, and each is parsed on its own: a record
that is not UTF-8 or not JSON becomes an `UnreadableRecord` in its place (reported as a rejection
with `file:index`, the member's path and the reason), a record holding `NaN`, `Infinity` or a number
too large for a double is read with Python's json module so that validation refuses it by path, and
every other record of the file is replayed. Only a file whose records cannot be told apart (not JSON
around them, truncated, unbalanced) is unreadable as a whole.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from kafkatrail.producers.event_producer import EventProducer, InvalidEventError
from kafkatrail.schemas.validation import find_unrepresentable

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


@dataclass(frozen=True)
class UnreadableRecord:
    """Stands in a file's record list for a record that could not be read; ``reason`` names the member and
    the rule, like a validation error (``requestParameters.roleName: is not valid UTF-8 (byte 0xE9)``)."""

    reason: str


def read_records(path: Path) -> list[Any]:
    """The records of one file, an `UnreadableRecord` in place of each one that could not be read; raises
    ValueError naming the file when it is not a log file or its records cannot be told apart."""
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        raw = gunzip(raw, path)
    try:
        content = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _read_record_by_record(raw, path, exc)
    if isinstance(content, dict) and isinstance(content.get("Records"), list):
        return content["Records"]
    if isinstance(content, list):
        return content
    if isinstance(content, dict) and "eventID" in content:
        return [content]
    raise ValueError(f'{path}: neither a log file ({{"Records": [...]}}), a JSON array nor a record')


# --------------------------------------------------------------------------------------------
# Files that are not JSON as a whole: each record located by a scan over the bytes, then read alone

_WHITESPACE = re.compile(rb"[ \t\n\r]*+")  # JSON's whitespace
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)  # after the opening quote
_BARE = re.compile(rb'[^ \t\n\r,:\[\]{}"]++')  # a number, true, false, null (or NaN, Infinity)
_STRUCTURE = re.compile(rb'["\[\]{}]')
_CLOSER = {ord("["): ord("]"), ord("{"): ord("}")}
MAX_REASON = 300


class _Unlocatable(ValueError):
    """The scan cannot tell where the records are: the file is unreadable as a whole."""


def _read_record_by_record(raw: bytes, path: Path, whole: orjson.JSONDecodeError) -> list[Any]:
    try:
        spans = _record_spans(raw)
    except _Unlocatable:
        raise ValueError(f"{path}: not JSON ({_json_problem(raw, whole)})") from None
    return [_read_record(raw[spans[i]:spans[i + 1]]) for i in range(0, len(spans), 2)]


def _json_problem(raw: bytes, error: orjson.JSONDecodeError) -> str:
    """orjson's complaint, or where the first byte that is not UTF-8 is (orjson then says line 1 column 1)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"byte 0x{raw[bad.start]:02X} at offset {bad.start} is not valid UTF-8"
    return str(error)[:MAX_REASON]


def _record_spans(raw: bytes) -> array[int]:
    """Start and end offsets of each record: the elements of a top-level array or of the top-level object's
    Records array, or the top-level object itself when it has no Records. Raises _Unlocatable unless the
    bytes around the records are JSON."""
    start = _skip_space(raw, 0)
    opener = raw[start:start + 1]
    if opener == b"[":
        spans, end = _element_spans(raw, start)
    elif opener == b"{":
        records, names, end = _records_member(raw, start)
        if records is None:
            if b"eventID" not in names:
                raise _Unlocatable("neither a log file nor a record")
            spans = array("q", (start, end))  # a single record
        else:
            spans, (array_start, array_end) = records
            try:  # everything but the records must be JSON: the file is then JSON with the records as []
                orjson.loads(raw[:array_start] + b"[]" + raw[array_end:])
            except orjson.JSONDecodeError:
                raise _Unlocatable("the bytes around Records are not JSON") from None
    else:
        raise _Unlocatable("neither an object nor an array")
    if _skip_space(raw, end) != len(raw):
        raise _Unlocatable(f"more after the end at offset {end}")
    return spans


def _records_member(raw: bytes, start: int) -> tuple[tuple[array[int], tuple[int, int]] | None, set[bytes], int]:
    """The spans of the Records array of the object at ``start`` and where that array lies (None when the
    object has no member Records), the object's member names (as written), and the offset after it."""
    records = None
    names: set[bytes] = set()
    position = _skip_space(raw, start + 1)
    if raw[position:position + 1] == b"}":
        return None, names, position + 1
    while True:
        if raw[position:position + 1] != b'"':
            raise _Unlocatable(f"expected a member name at offset {position}")
        name_end = _string_end(raw, position)
        name = raw[position + 1:name_end - 1]
        names.add(name)
        position = _skip_space(raw, name_end)
        if raw[position:position + 1] != b":":
            raise _Unlocatable(f"expected ':' at offset {position}")
        position = _skip_space(raw, position + 1)
        if name == b"Records":
            if raw[position:position + 1] != b"[":
                raise _Unlocatable("Records is not an array")
            spans, end = _element_spans(raw, position)
            records = (spans, (position, end))
        else:
            end = _value_end(raw, position)
        position = _skip_space(raw, end)
        separator = raw[position:position + 1]
        if separator == b"}":
            return records, names, position + 1
        if separator != b",":
            raise _Unlocatable(f"expected ',' or '}}' at offset {position}")
        position = _skip_space(raw, position + 1)


def _element_spans(raw: bytes, start: int) -> tuple[array[int], int]:
    """The start and end of each element of the array at ``start``, and the offset after the array."""
    spans = array("q")
    position = _skip_space(raw, start + 1)
    if raw[position:position + 1] == b"]":
        return spans, position + 1
    while True:
        end = _value_end(raw, position)
        spans.append(position)
        spans.append(end)
        position = _skip_space(raw, end)
        separator = raw[position:position + 1]
        if separator == b"]":
            return spans, position + 1
        if separator != b",":
            raise _Unlocatable(f"expected ',' or ']' at offset {position}")
        position = _skip_space(raw, position + 1)


def _skip_space(raw: bytes, position: int) -> int:
    found = _WHITESPACE.match(raw, position)
    return found.end() if found else position


def _string_end(raw: bytes, start: int) -> int:
    found = _STRING_REST.match(raw, start + 1)
    if found is None:
        raise _Unlocatable(f"the string at offset {start} does not end")
    return found.end()


def _value_end(raw: bytes, start: int) -> int:
    """The offset after the JSON value at ``start``: strings and brackets are followed, nothing is decoded."""
    first = raw[start:start + 1]
    if first == b'"':
        return _string_end(raw, start)
    if first not in (b"[", b"{"):
        found = _BARE.match(raw, start)
        if found is None:
            raise _Unlocatable(f"expected a value at offset {start}")
        return found.end()
    closers = bytearray((_CLOSER[raw[start]],))
    position = start + 1
    while closers:
        found = _STRUCTURE.search(raw, position)
        if found is None:
            raise _Unlocatable(f"the value at offset {start} does not end")
        char = raw[found.start()]
        if char == 0x22:  # "
            position = _string_end(raw, found.start())
        elif char in _CLOSER:
            closers.append(_CLOSER[char])
            position = found.end()
        elif char == closers.pop():
            position = found.end()
        else:
            raise _Unlocatable(f"unbalanced {chr(char)!r} at offset {found.start()}")
    return position


def _read_record(text: bytes) -> Any:
    """One record's JSON text, as a value; an `UnreadableRecord` when it is not UTF-8 or not JSON. JSON's
    near misses that Python's json module reads (NaN, Infinity, 1e999 as infinity, escaped lone
    surrogates) are read with it, so that validation refuses the record naming the member."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as bad:
        return UnreadableRecord(_utf8_reason(text, bad.start))
    try:
        return json.loads(decoded)
    except RecursionError:
        return UnreadableRecord("record: is nested too deeply to be read")
    except ValueError:
        return UnreadableRecord(f"record: is not valid JSON ({problem})"[:MAX_REASON])


def _utf8_reason(text: bytes, offset: int) -> str:
    """Which member holds the first byte that is not UTF-8: each such byte is read as a lone surrogate
    (surrogateescape), which `find_unrepresentable` finds."""
    byte = f"byte 0x{text[offset]:02X}"
    try:
        found = find_unrepresentable(json.loads(text.decode("utf-8", "surrogateescape")))
    except (ValueError, RecursionError):
        found = None  # the record is not JSON either, or the byte is outside any string
    if found is None or found[1] == "number" or not found[0]:
        return f"record: is not valid UTF-8 ({byte} at offset {offset} of the record)"
    where, kind = found
    what = "member name is" if kind == "name" else "is"
    return f"{where}: {what} not valid UTF-8 ({byte})"[:MAX_REASON]


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
                if isinstance(record, UnreadableRecord):
                    summary.reject(record.reason, f"{path}:{index}")
                    continue
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
