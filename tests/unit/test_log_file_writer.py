"""LogFileWriter: a log file streamed record by record is byte for byte the file written in one go."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import orjson
import pytest

from kafkatrail.schemas.log_files import FEED_BYTES, LogFileWriter, compress, gzip_level, log_file_content

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "stratus-detonation-logs"
REAL_JSON = [orjson.dumps(record) for path in sorted(REAL.glob("*.json")) for record in json.loads(path.read_text())]
BIG = b'{"eventID":"' + b"x" * (FEED_BYTES + 10) + b'"}'

RECORD_SETS = {
    "one record": [b'{"eventID":"a"}'],
    "two records": [b'{"eventID":"a"}', b'{"eventID":"b"}'],
    "every real record": REAL_JSON,
    "one record past the feed size": [BIG],
    "runs across several feeds": REAL_JSON * 3 + [BIG] + REAL_JSON,
}


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("records", RECORD_SETS.values(), ids=RECORD_SETS.keys())
def test_a_streamed_file_is_the_file_written_in_one_go(records: list[bytes], level: int) -> None:
    writer = LogFileWriter(level)
    for record in records:
        writer.add(record)
    body, sha256 = writer.finish()
    content = log_file_content(records)
    assert body == compress(content, level)
    assert gzip.decompress(body) == content
    assert sha256 == hashlib.sha256(content).hexdigest()
    assert writer.records == len(records)


def test_an_open_file_holds_its_records_compressed() -> None:
    writer = LogFileWriter()
    for record in REAL_JSON * 20:
        writer.add(record)
    content_bytes = len(log_file_content(REAL_JSON * 20))
    assert writer.held_bytes() < content_bytes / 4 + FEED_BYTES


def test_a_file_without_records_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        LogFileWriter().finish()


@pytest.mark.parametrize("level", [0, 2, 3])
@pytest.mark.parametrize("records", RECORD_SETS.values(), ids=RECORD_SETS.keys())
def test_an_isal_file_is_standard_gzip_and_the_same_records_give_the_same_bytes(records: list[bytes],
                                                                                level: int) -> None:
    bodies = []
    for _ in range(2):
        writer = LogFileWriter(level, "isal")
        for record in records:
            writer.add(record)
        bodies.append(writer.finish())
    (body, sha256), again = bodies
    content = log_file_content(records)
    assert gzip.decompress(body) == content
    assert sha256 == hashlib.sha256(content).hexdigest()
    assert (body, sha256) == again


LEVEL_CASES = {
    "isal default": ("isal", None, 2),
    "zlib default": ("zlib", None, 6),
    "isal lowest": ("isal", 0, 0),
    "zlib highest": ("zlib", 9, 9),
}


@pytest.mark.parametrize(("engine", "level", "expected"), LEVEL_CASES.values(), ids=LEVEL_CASES.keys())
def test_each_engine_has_its_default_level(engine: str, level: int | None, expected: int) -> None:
    assert gzip_level(engine, level) == expected


REFUSED_LEVELS = {
    "isal above 3": ("isal", 4, "gzip_level: isal takes 0 to 3"),
    "zlib 0": ("zlib", 0, "gzip_level: zlib takes 1 to 9"),
    "unknown engine": ("brotli", None, "gzip_engine: must be one of isal, zlib"),
}


@pytest.mark.parametrize(("engine", "level", "message"), REFUSED_LEVELS.values(), ids=REFUSED_LEVELS.keys())
def test_a_level_outside_the_engine_range_is_refused_by_name(engine: str, level: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gzip_level(engine, level)
