"""Reading log files for replay: gzip with a cap, corrupt and truncated files named, the next file still read; a bad
record in a sound file rejected by file:index, the file's other records still read."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.replay import ReplaySummary, gunzip, log_files, read_records, replay
from kafkatrail.schemas.validation import validate_event

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


# --------------------------------------------------------------------------------------------
# A bad record inside a sound file is a rejection of that record (file:index and the reason); the file's
# other records and the files after it are still replayed.

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "stratus-detonation-logs"
REAL_RECORDS = [record for path in sorted(REAL.glob("*.json")) for record in orjson.loads(path.read_bytes())][:6]
MARK = "MARK-4f1c"  # replaced, in the file's bytes, by what JSON or UTF-8 does not allow


class Collecting:
    """Stands in for EventProducer: validates each record as emit() does, and keeps the eventIDs it accepts."""

    def __init__(self) -> None:
        self.emitted: list[str] = []

    def emit(self, record: Any) -> str:
        event_id: str = validate_event(record)["eventID"]
        self.emitted.append(event_id)
        return event_id

    def flush(self) -> None:
        pass


def run_replay(*paths: Path) -> tuple[ReplaySummary, list[str]]:
    producer = Collecting()
    summary = replay(paths, cast(EventProducer, producer), progress=False)
    return summary, producer.emitted


def log_file_bytes(records: list[dict[str, Any]], replace: bytes = b"") -> bytes:
    return orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2).replace(f'"{MARK}"'.encode(), replace)


def marked(record: dict[str, Any], **members: Any) -> dict[str, Any]:
    return {**record, **members}


first, second, third, fourth, fifth, sixth = REAL_RECORDS
BAD_BYTES = {
    "a byte in a nested string": (
        {"requestParameters": {"roleName": MARK}}, b'"caf\xe9"', "requestParameters.roleName: is not valid UTF-8 "
                                                                "(byte 0xE9)"),
    "a byte in a top-level string": (
        {"eventName": MARK}, b'"Get\xffObject"', "eventName: is not valid UTF-8 (byte 0xFF)"),
    "a byte in a member name": (
        {"requestParameters": {"a": 1, MARK: 2}}, b'"na\xc3me"', "requestParameters['na\\udcc3me']: member name is not "
                                                                 "valid UTF-8 (byte 0xC3)"),
    "a byte outside any string": ({"readOnly": MARK}, b"tr\xfeue", "record: is not valid UTF-8 (byte 0xFE at offset"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["json", "json.gz"])
@pytest.mark.parametrize(("members", "replace", "reason"), BAD_BYTES.values(), ids=BAD_BYTES.keys())
def test_invalid_utf8_is_a_rejection_of_its_record_only(tmp_path: Path, compress: bool, members: dict[str, Any],
                                                         replace: bytes, reason: str) -> None:
    content = log_file_bytes([first, marked(second, **members), third], replace)
    bad = tmp_path / ("a.json.gz" if compress else "a.json")
    bad.write_bytes(gzip.compress(content) if compress else content)
    (tmp_path / "b.json").write_bytes(log_file_bytes([fourth, fifth]))

    summary, emitted = run_replay(tmp_path)

    assert emitted == [r["eventID"] for r in (first, third, fourth, fifth)]
    assert (summary.published, summary.rejected, summary.unreadable_files) == (4, 1, [])
    [(problem, places)] = summary.reasons.items()
    assert problem.startswith(reason), problem
    assert places == [f"{bad}:1"]


NOT_JSON_NUMBERS = {"NaN": (b"NaN", "nan"), "Infinity": (b"Infinity", "inf"), "-Infinity": (b"-Infinity", "-inf"),
                    "1e999": (b"1e999", "inf")}


@pytest.mark.parametrize(("literal", "shown"), NOT_JSON_NUMBERS.values(), ids=NOT_JSON_NUMBERS.keys())
def test_nan_and_infinity_literals_are_rejections_of_their_record(tmp_path: Path, literal: bytes, shown: str) -> None:
    """Python's json reads them; orjson and CloudTrail's files do not have them. Never replayed as null."""
    path = tmp_path / "a.json"
    path.write_bytes(log_file_bytes([first, second, marked(third, requestParameters={"ratio": MARK})], literal))
    summary, emitted = run_replay(path)
    assert emitted == [first["eventID"], second["eventID"]]
    assert dict(summary.reasons) == {
        f"requestParameters.ratio: NaN/Infinity is not valid JSON (got {shown})": [f"{path}:2"]}


def test_a_record_that_is_not_json_is_a_rejection_of_that_record(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(log_file_bytes([first, marked(second, requestParameters=MARK), third], b"{,}"))
    summary, emitted = run_replay(path)
    assert emitted == [first["eventID"], third["eventID"]]
    [(problem, places)] = summary.reasons.items()
    assert problem.startswith("record: is not valid JSON ("), problem
    assert places == [f"{path}:1"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (log_file_bytes([first, marked(second, eventName=MARK)], b'"\xff"')[:-40], "byte 0xFF at offset"),
        (log_file_bytes([first, second]).replace(b"\n    },\n    {", b"\n    }\n    {"), "unexpected character"),
        (log_file_bytes([first, second]).replace(b'"Records"', b'"Rec\xffords"'), "byte 0xFF at offset 8"),
        (b'{"Records": [], "other": "\xff"}', "byte 0xFF at offset 26"),
    ],
    ids=["truncated", "records-not-separated", "bad-byte-in-a-top-level-name", "bad-byte-outside-the-records"],
)
def test_a_file_whose_records_cannot_be_told_apart_is_unreadable_as_a_whole(tmp_path: Path, content: bytes,
                                                                             problem: str) -> None:
    (tmp_path / "a.json").write_bytes(content)
    (tmp_path / "b.json").write_bytes(log_file_bytes([third]))
    summary, emitted = run_replay(tmp_path)
    assert emitted == [third["eventID"]]
    [unreadable] = summary.unreadable_files
    assert unreadable.startswith(f"{tmp_path / 'a.json'}: not JSON ("), unreadable
    assert problem in unreadable
    assert "line 1 column 1" not in unreadable
