"""Reading log files for replay: gzip with a cap, corrupt and truncated files named, the next file still read."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import orjson
import pytest

from kafkatrail.producers.replay import gunzip, log_files, read_records

RECORD = {"eventID": "1", "eventTime": "2024-01-01T00:00:00Z"}
LOG_FILE = orjson.dumps({"Records": [RECORD, RECORD]})


def gzip_bomb(decompressed: int) -> bytes:
    """`decompressed` zero bytes as one gzip member, built a MiB at a time."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    return b"".join(deflater.compress(chunk) for _ in range(decompressed >> 20)) + deflater.flush()


GOOD = {
    "one member": (gzip.compress(LOG_FILE), LOG_FILE),
    "two members, as concatenated files": (gzip.compress(LOG_FILE[:10]) + gzip.compress(LOG_FILE[10:]), LOG_FILE),
}
BAD = {
    "not deflate after the magic": (b"\x1f\x8b" + b"garbage" * 10, "not a valid gzip file"),
    "truncated": (gzip.compress(LOG_FILE)[:-12], "not a valid gzip file (truncated)"),
    "a bomb over the cap": (gzip_bomb(3 << 20), "decompresses to more than 2,097,152 bytes"),
}


@pytest.mark.parametrize(("compressed", "content"), GOOD.values(), ids=GOOD.keys())
def test_gzip_content_is_read_whole(compressed: bytes, content: bytes) -> None:
    assert gunzip(compressed, Path("f.json.gz"), limit=2 << 20) == content


@pytest.mark.parametrize(("compressed", "problem"), BAD.values(), ids=BAD.keys())
def test_bad_gzip_is_a_value_error_naming_the_file(compressed: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=r"f\.json\.gz") as caught:
        gunzip(compressed, Path("f.json.gz"), limit=2 << 20)
    assert problem in str(caught.value)


def test_a_bomb_is_refused_without_holding_its_content(tmp_path: Path) -> None:
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(gzip_bomb(200 << 20))
    assert path.stat().st_size < 400_000
    with pytest.raises(ValueError, match="decompresses to more than 134,217,728 bytes"):
        read_records(path)


def test_a_corrupt_file_does_not_stop_the_files_after_it(tmp_path: Path) -> None:
    (tmp_path / "a.json.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(LOG_FILE))
    outcomes = []
    for path in log_files([tmp_path]):
        try:
            outcomes.append(len(read_records(path)))
        except ValueError as exc:
            outcomes.append(str(exc).split(": ", 1)[1][:21])
    assert outcomes == ["not a valid gzip file", 2]
