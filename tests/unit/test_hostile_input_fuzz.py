"""Property-based fuzzing of what reads hostile input: the record validator and codec (as the SDK's emit() and
the processor use them), the replay reader, and the trail loader.

Properties, for every generated input:

- nothing escapes but the documented error types: `InvalidEventError` from validation and `emit()`,
  `DecodeError` from decoding (what the processor dead-letters), `ValueError`/`OSError` from `read_records`
  (a file named as unreadable; `replay()` itself raises nothing), `TrailError` from `load_trails`;
- error messages stay short (an echoed value is cut to a prefix);
- a record emit() accepts survives the codec's trip unchanged, and the SDK and the processor agree on it;
- memory stays bounded: the peak traced by tracemalloc while one input is handled stays below 64 MiB for
  inputs below 1 MiB (a gzip file counts decompressed; its cap of 128 MiB is tested on its own in
  test_replay_files.py).

Hypothesis runs derandomized and without an example database, so every run tries the same inputs; each
test's example count keeps the module within about 40 s on a busy 2-core machine (run with -s to see
the inputs, time and peaks). A concrete input the fuzzer found is pinned in the regression tables at
the end.
"""

from __future__ import annotations

import copy
import gzip
import json
import sys
import tempfile
import time
import tracemalloc
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkatrail.core.settings import Settings
from kafkatrail.producers.event_producer import DeliveryError, EventProducer
from kafkatrail.producers.replay import ReplaySummary, UnreadableRecord, read_records, replay
from kafkatrail.schemas.codec import decode_event, encode_event
from kafkatrail.schemas.errors import DecodeError, EncodeError
from kafkatrail.schemas.validation import REQUIRED_FIELDS, InvalidEventError, validate_event, validated_json
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.errors import TrailError

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real" / "stratus-detonation-logs"
REAL_RECORDS: list[dict[str, Any]] = [r for p in sorted(REAL.glob("*.json")) for r in orjson.loads(p.read_bytes())]
TRAIL_FILES = [ROOT / "deploy" / "trails.example.yaml", ROOT / "deploy" / "trails.demo.yaml"]
TRAIL_DOCUMENTS = [yaml.safe_load(path.read_text()) for path in TRAIL_FILES]

MEMORY_LIMIT = 64 << 20
MESSAGE_LIMIT = 1000
# One input may take this long before it counts as a stall: 10 s was exceeded (17.8 s, a 200 kB file) only
# at a load of 14 on 2 cores; its reader takes 0.9 s under tracemalloc at a load of 3.
DEADLINE_S = 30


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=timedelta(seconds=DEADLINE_S),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# --------------------------------------------------------------------------------------------
# Figures: inputs run, time and the worst peak, per target (printed at the end of the module with -s)


class Figures:
    def __init__(self) -> None:
        self.examples: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_below_limit: dict[str, int] = {}  # for inputs below 1 MiB, which the bound is about
        self.largest_input: dict[str, int] = {}
        self.began = time.monotonic()

    @contextmanager
    def measure(self, target: str, input_size: int) -> Iterator[None]:
        """Trace allocations while one input is handled; its peak must stay below MEMORY_LIMIT."""
        tracemalloc.start()
        try:
            yield
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            self.examples[target] = self.examples.get(target, 0) + 1
            self.peak[target] = max(self.peak.get(target, 0), peak)
            if input_size < 1 << 20:
                self.peak_below_limit[target] = max(self.peak_below_limit.get(target, 0), peak)
            self.largest_input[target] = max(self.largest_input.get(target, 0), input_size)
        assert input_size >= 1 << 20 or peak < MEMORY_LIMIT, f"{target}: peak {peak:,} B for {input_size:,} B"


FIGURES = Figures()


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    yield
    print(f"\nfuzz figures ({time.monotonic() - FIGURES.began:.1f} s in all):")
    for target, count in FIGURES.examples.items():
        print(f"  {target}: {count} inputs, largest {FIGURES.largest_input[target]:,} B, worst peak "
              f"{FIGURES.peak[target] / (1 << 20):.2f} MiB, below 1 MiB of input "
              f"{FIGURES.peak_below_limit.get(target, 0) / (1 << 20):.2f} MiB")


# --------------------------------------------------------------------------------------------
# JSON-ish values, hostile ones included

ODD_TEXT = ["\ud800", "\udfff", "\udcff", "\x00", "\u2028", "\ufeff", '"', "\\", "null", "NaN", "\U0001f600"]
TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda a, odd, b: a + odd + b, st.text(max_size=4), st.sampled_from(ODD_TEXT), st.text(max_size=4)),
)
HUGE_TEXT = st.builds(lambda piece, times: piece * times, st.sampled_from(["a", "é", "\\", '"', "\U0001f600"]),
                      st.sampled_from([1_000, 65_536, 200_000]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), TEXT,
)
DEPTHS = st.one_of(st.integers(0, 300), st.sampled_from([254, 255, 256, 500, 750, 999, 1000, 2000, 5000]))


class DeepList(list[Any]):
    """The outermost level of a deeply nested value: a list like any other, but printed short when Hypothesis
    reports a failing example (its printer would itself recurse too deeply)."""

    def __repr__(self) -> str:
        return f"<{nesting(self)} nested arrays and objects>"


class DeepDict(dict[str, Any]):
    __repr__ = DeepList.__repr__


def nesting(value: Any) -> int:
    depth = 0
    while isinstance(value, list | dict) and len(value) == 1:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        depth += 1
    return depth


def nest(value: Any, depth: int, in_object: bool) -> Any:
    for _ in range(depth - 1):
        value = {"a": value} if in_object else [value]
    if depth:
        value = DeepDict(a=value) if in_object else DeepList([value])
    return value


JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=16)
HOSTILE_VALUES = st.one_of(
    JSON_VALUES,
    HUGE_TEXT,
    st.builds(nest, JSON_VALUES, DEPTHS, st.booleans()),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**64, -(2**63) - 1, (1, 2)]),
    st.builds(lambda: {1: 2}),  # a fresh object each time: a shared one could be changed by a later mutation
)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``value``, to a depth of 8 (a deeply nested value is one place to change)."""
    yield prefix
    if len(prefix) >= 8:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*prefix, index))


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    """A real CloudTrail record with one to four changes: a member set, removed or nested deeply, anywhere."""
    record: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(REAL_RECORDS)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(paths_of(record))[1:]))
        parent = record
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "delete", "rename", "required"]))
        if action == "set":
            parent[path[-1]] = draw(HOSTILE_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(TEXT)] = parent.pop(path[-1])
        else:
            record[draw(st.sampled_from(REQUIRED_FIELDS))] = draw(HOSTILE_VALUES)
        if not isinstance(record, dict) or not record:
            break
    return record


RECORDS = st.one_of(
    mutated_records(),
    st.dictionaries(st.one_of(st.sampled_from([*REQUIRED_FIELDS, "resources", "userIdentity"]), TEXT),
                    HOSTILE_VALUES, max_size=8),
    st.sampled_from(REAL_RECORDS).map(copy.deepcopy),
)


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted or cut, or truncated."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "cut", "truncate"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"NaN", b"[", b"{", b'"', b",",
                                                b"\\", b"1e999", b"\x00", b"\x1f\x8b"]))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


def serialized_record_texts() -> st.SearchStrategy[bytes]:
    return st.sampled_from(REAL_RECORDS).map(orjson.dumps).flatmap(corrupted)


# --------------------------------------------------------------------------------------------
# (a) The record validator and codec, as emit() and the processor use them


@pytest.fixture(scope="module")
def producer() -> Iterator[EventProducer]:
    """A producer of an address nothing listens on: accepted records wait in its queue and time out."""
    producer = EventProducer(Settings(bootstrap_servers="127.0.0.1:9"), **{"message.timeout.ms": 1000})
    yield producer
    if producer.accepted:
        with pytest.raises(DeliveryError):
            producer.close(timeout_s=0)
    else:
        producer.close(timeout_s=0)


def check_invalid_event_error(error: InvalidEventError) -> None:
    assert len(str(error)) < MESSAGE_LIMIT, str(error)[:200]
    assert str(error) == f"{error.path}: {error.detail}"
    assert "\n" not in error.field and len(error.field) <= 64, "field is a bounded label"


@fuzz_settings(400)
@given(record=RECORDS)
def test_emit_accepts_a_record_or_refuses_it_with_invalid_event_error(producer: EventProducer,
                                                                     record: dict[str, Any]) -> None:
    """emit() (validate, encode, queue) raises InvalidEventError or nothing; the processor's validated_json
    agrees with it; an accepted record survives the codec unchanged and is what the processor forwards."""
    with FIGURES.measure("validator and codec (dict records)", json_size(record)):
        sdk_error = processor_error = None
        try:
            producer.emit(record)
        except InvalidEventError as error:
            check_invalid_event_error(error)
            sdk_error = error
        try:
            body = validated_json(record)
        except InvalidEventError as error:
            processor_error = error
        assert (sdk_error is None) == (processor_error is None), f"emit: {sdk_error}; processor: {processor_error}"
        if sdk_error is not None and processor_error is not None:
            assert (processor_error.field, processor_error.rule) == (sdk_error.field, sdk_error.rule)
            return
        decoded = decode_event(encode_event(record))
        with recursion_limit(20_000):  # an accepted record may be as deep as Python's json writes
            expected = as_json(record)
            assert decoded == expected
            assert json.loads(validated_json(decoded)) == json.loads(body) == expected  # member order aside


def as_json(value: Any) -> Any:
    """``value`` as JSON gives it back: tuples are arrays."""
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {name: as_json(item) for name, item in value.items()}
    return value


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def json_size(value: Any) -> int:
    """The size of ``value`` as JSON text, 0 when it has none (too deep, or not JSON at all)."""
    try:
        return len(json.dumps(value, default=repr).encode("utf-8", "surrogatepass"))
    except (ValueError, TypeError, RecursionError):
        return 0


@fuzz_settings(300)
@given(data=st.one_of(serialized_record_texts(), st.binary(max_size=200), HUGE_TEXT.map(str.encode)),
       as_text=st.booleans())
def test_validation_of_json_text_raises_only_invalid_event_error(data: bytes, as_text: bool) -> None:
    event: bytes | str = data.decode("utf-8", "surrogateescape") if as_text else data  # lone surrogates
    with FIGURES.measure("validator (JSON text)", len(data)):
        try:
            record = validate_event(event)
        except InvalidEventError as error:
            check_invalid_event_error(error)
            return
        assert validated_json(record)


@fuzz_settings(100)
@given(record=mutated_records())
def test_validation_of_other_mappings_agrees_with_dicts(record: dict[str, Any]) -> None:
    with FIGURES.measure("validator (mappings)", json_size(record)):
        outcomes = []
        for given_as in (record, types.MappingProxyType(record)):
            try:
                validate_event(given_as)
                outcomes.append(None)
            except InvalidEventError as error:
                check_invalid_event_error(error)
                outcomes.append((error.field, error.rule))
        assert outcomes[0] == outcomes[1]


@fuzz_settings(300)
@given(data=st.sampled_from(REAL_RECORDS).map(encode_event).flatmap(corrupted))
def test_the_processor_decodes_and_validates_with_documented_errors_only(data: bytes) -> None:
    """What EventPipeline.process catches per message (DecodeError, InvalidEventError) is all that escapes."""
    with FIGURES.measure("processor (Avro bytes)", len(data)):
        try:
            record = decode_event(data)
        except DecodeError as error:
            assert len(str(error)) < MESSAGE_LIMIT
            return
        try:
            validated_json(record)
        except InvalidEventError as error:
            check_invalid_event_error(error)


# --------------------------------------------------------------------------------------------
# (b) The replay reader


class Collecting:
    """Stands in for EventProducer in replay(): validates each record as emit() does."""

    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, record: Any) -> str:
        event_id: str = validate_event(record)["eventID"]
        self.emitted += 1
        return event_id

    def flush(self) -> None:
        pass


@st.composite
def log_file_contents(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(st.one_of(st.sampled_from(REAL_RECORDS), RECORDS), max_size=4))
    shape = draw(st.sampled_from(["Records", "array", "single", "extra members"]))
    content = ({"Records": records} if shape == "Records" else records if shape == "array" else
               records[0] if records and shape == "single" else {"Records": records, "x": draw(JSON_VALUES)})
    indent = draw(st.sampled_from([None, 2]))
    try:  # Python's json: NaN, Infinity and integers beyond 64 bits are written as they are
        text = json.dumps(content, default=repr, indent=indent)
    except RecursionError:  # a deeply nested member: the deep inputs below cover such text
        return b'{"Records": [{"eventID": ' + b"[" * 2000 + b"]" * 2000 + b"}]}"
    return text.encode("utf-8", "surrogatepass")


REPLAY_INPUTS = st.one_of(
    log_file_contents(),
    log_file_contents().flatmap(corrupted),
    st.binary(max_size=300),
    st.builds(lambda depth: b'{"Records": ' + b"[" * depth + b"]" * depth + b"}", DEPTHS),
    st.builds(lambda depth: b"[" * depth, DEPTHS),
    HUGE_TEXT.map(lambda text: b'{"Records": [{"eventID": "' + text.encode() + b'"}]}'),
)


@st.composite
def replay_files(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """A file name, its bytes, and the size of its content (decompressed: what the memory bound is about)."""
    content = draw(REPLAY_INPUTS)
    packing = draw(st.sampled_from(["plain", "gzip", "gzip corrupted", "gzip twice", "gzip members"]))
    if packing == "gzip":
        return "a.json.gz", gzip.compress(content, mtime=0), len(content)
    if packing == "gzip corrupted":
        return "a.json.gz", draw(corrupted(gzip.compress(content, mtime=0))), len(content)
    if packing == "gzip twice":
        once = gzip.compress(content, mtime=0)
        return "a.json.gz", gzip.compress(once, mtime=0), len(once)
    if packing == "gzip members":
        middle = len(content) // 2
        data = gzip.compress(content[:middle], mtime=0) + gzip.compress(content[middle:], mtime=0)
        return "a.json.gz", data, len(content)
    return "a.json", content, len(content)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kafkatrail-fuzz-") as name:
        yield Path(name)


@fuzz_settings(400)
@given(file=replay_files())
def test_replay_reads_any_file_with_documented_errors_only(folder: Path, file: tuple[str, bytes, int]) -> None:
    """read_records raises only ValueError/OSError naming the file; replay() raises nothing, reports every
    entry as published or rejected, and keeps reasons short."""
    name, content, content_size = file
    for stale in folder.iterdir():
        stale.unlink()
    path = folder / name
    path.write_bytes(content)
    with FIGURES.measure("replay reader", content_size):
        try:
            entries = read_records(path)
        except (ValueError, OSError) as error:
            assert str(error).startswith(f"{path}: ") and len(str(error)) < MESSAGE_LIMIT + len(str(path))
            entries = None
        producer = Collecting()
        summary: ReplaySummary = replay([path], producer, progress=False)  # type: ignore[arg-type]
    if entries is None:
        assert summary.unreadable_files and summary.published == summary.rejected == 0
        return
    assert all(len(entry.reason) < MESSAGE_LIMIT for entry in entries if isinstance(entry, UnreadableRecord))
    assert summary.published + summary.rejected == len(entries)
    assert summary.published == producer.emitted
    assert all(len(reason) < MESSAGE_LIMIT for reason in summary.reasons)


# --------------------------------------------------------------------------------------------
# (c) The trail loader

TRAIL_MEMBERS = sorted({key for document in TRAIL_DOCUMENTS for entry in document["Trails"] for key in entry})
YAML_SNIPPETS = [
    "&a x", "*a", "<<: *a", "<<: {Name: x}", "!!python/object/apply:os.system ['true']", "!!binary '*&^'",
    "!!timestamp 2024-99-99", "!!set {a, b}", "!!omap [a: 1]", "!!int 0x", "!!float .nan", "? [a, b]\n: c",
    "---\n", "...\n", "%YAML 1.1\n---\n", "[" * 200, "{" * 200, "- " * 200, "key: 'unterminated", "\t", "\x00",
    "\ufeff", "Name: !!str", "Trails: !!map {}", "&x [*x]", "Trails: &t [*t]",
]


@st.composite
def trail_entries(draw: st.DrawFn) -> dict[str, Any]:
    document = draw(st.sampled_from(TRAIL_DOCUMENTS))
    entry: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(document["Trails"])))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "set nested", "delete", "unknown"]))
        if action == "set":
            entry[draw(st.sampled_from(TRAIL_MEMBERS))] = draw(HOSTILE_VALUES)
        elif action == "set nested":
            paths = list(paths_of(entry))[1:]
            if paths:
                path = draw(st.sampled_from(paths))
                parent = entry
                for part in path[:-1]:
                    parent = parent[part]
                parent[path[-1]] = draw(HOSTILE_VALUES)
        elif action == "delete" and entry:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        else:
            entry[draw(TEXT)] = draw(JSON_VALUES)
    return entry


def yaml_text(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, default_flow_style=None)


@st.composite
def trail_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".json", ".yaml", ".yml"]))
    kind = draw(st.sampled_from(["document", "document", "mutated example", "snippets", "text", "bytes", "deep",
                                 "deep"]))
    if kind == "document":
        document: Any = {"Trails": draw(st.lists(trail_entries(), max_size=6))}
        if draw(st.booleans()):
            document = draw(st.sampled_from([[document], document["Trails"], {**document, "Other": 1}]))
        try:
            text = json.dumps(document, default=repr) if suffix == ".json" else yaml_text(document)
        except (ValueError, TypeError, RecursionError, yaml.YAMLError):
            text = "Trails: []"
        return suffix, text.encode("utf-8", "surrogatepass")
    if kind == "mutated example":
        return suffix, draw(corrupted(draw(st.sampled_from(TRAIL_FILES)).read_bytes()))
    if kind == "snippets":
        lines = TRAIL_FILES[0].read_text().splitlines()
        for _ in range(draw(st.integers(1, 4))):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(YAML_SNIPPETS)))
        return suffix, "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "deep":  # written as text: Python's json cannot write what its parser can still read
        depth = draw(st.one_of(DEPTHS, st.integers(300, 1200)))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))  # JSON, and YAML's flow style
        value = f"{opener * depth}1{closer * depth}"
        where = draw(st.sampled_from(["Trails", "a member", "block"]))
        if where == "block":
            return suffix, ("Trails:\n" + "- " * depth + "x\n").encode()
        if where == "Trails":
            return suffix, f'{{"Trails": {value}}}'.encode()
        entry = json.dumps(copy.deepcopy(TRAIL_DOCUMENTS[0]["Trails"][0]))[:-1]
        return suffix, f'{{"Trails": [{entry}, "{draw(st.sampled_from(TRAIL_MEMBERS))}": {value}}}]}}'.encode()
    if kind == "text":
        return suffix, draw(TEXT).encode("utf-8", "surrogatepass")
    return suffix, draw(st.binary(max_size=200))


@fuzz_settings(200)  # PyYAML is slow under tracemalloc (80 ms for the example file)
@given(file=trail_files())
def test_trail_loader_raises_only_trail_error(folder: Path, file: tuple[str, bytes]) -> None:
    suffix, content = file
    path = folder / f"trails{suffix}"
    path.write_bytes(content)
    with FIGURES.measure("trail loader", len(content)):
        try:
            load_trails(path)
        except TrailError as error:
            assert error.message.startswith(f"{path}: ")
            assert len(error.message) < MESSAGE_LIMIT + len(str(path)), error.message[:300]

# --------------------------------------------------------------------------------------------
# Regressions: concrete inputs the fuzzer found, each with the documented error it must now raise


def deep_avro_record() -> bytes:
    """A record whose free-form member is JSON text nested 3,000 levels deep, as a producer with a higher
    recursion limit can write it (integers beyond 64 bits make the codec write it with Python's json)."""
    with recursion_limit(20_000):
        return encode_event({**REAL_RECORDS[0], "requestParameters": {"x": 2**70, "d": nest(None, 3000, False)}})


DEPTH_ERROR = "record: is nested too deeply to encode"
VALIDATOR_REGRESSIONS = {
    # RecursionError escaped validate_event and validated_json (the processor's check): only emit() caught it.
    "a member nested 2,000 levels": ({"eventVersion": nest(None, 2000, False)}, "record", "depth", DEPTH_ERROR),
    "a real record with a member nested 2,000 levels": (
        {**REAL_RECORDS[0], "awsRegion": nest(None, 2000, False)}, "record", "depth", DEPTH_ERROR),
    "objects nested 5,000 levels beside a big integer": (
        {**REAL_RECORDS[0], "requestParameters": {"x": 2**70, "d": nest(1, 5000, True)}}, "record", "depth",
        DEPTH_ERROR),
    # Accepted, and written by Python's json with the member name "1": the record changed silently.
    "a member name that is a number": ({**REAL_RECORDS[0], "requestParameters": {1: 2}}, "requestParameters", "json",
                                       "requestParameters: member names must be strings (got number 1)"),
}


@pytest.mark.parametrize("check", [validate_event, validated_json], ids=["validate_event", "validated_json"])
@pytest.mark.parametrize(("record", "field", "rule", "message"), VALIDATOR_REGRESSIONS.values(),
                         ids=VALIDATOR_REGRESSIONS.keys())
def test_validator_regressions(check: Any, record: dict[str, Any], field: str, rule: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        check(record)
    assert (caught.value.field, caught.value.rule, str(caught.value)) == (field, rule, message)


def test_codec_regressions() -> None:
    """The codec raised RecursionError both ways: encoding a member nested too deeply for Python's json, and
    decoding such a member written by a producer with a higher recursion limit (a processor crash)."""
    with pytest.raises(EncodeError, match="requestParameters: value is nested too deeply to encode"):
        encode_event({**REAL_RECORDS[0], "requestParameters": {"x": 2**70, "d": nest(None, 3000, False)}})
    with pytest.raises(DecodeError, match="requestParameters: member is nested too deeply to read") as caught:
        decode_event(deep_avro_record())
    assert caught.value.reason == "bad_json_member"


def example_entry() -> str:
    """The first trail of the example file, as JSON text."""
    return json.dumps(TRAIL_DOCUMENTS[0]["Trails"][0])


TOO_DEEP = "nested too deeply to be a trail file (more than 32 levels)"
TRAIL_REGRESSIONS = {
    # RecursionError escaped load_trails: json read the file, copying the member recursed too deeply.
    "a member nested 500 levels (JSON)": (
        "trails.json", '{"Trails": [' + example_entry()[:-1] + ', "EventSelectors": ' + "[" * 500 + "]" * 500 + "}]}",
        TOO_DEEP),
    # Took 1.7 s (25 s under tracemalloc) for a 10 KB file: PyYAML slows down with depth before it recurses out.
    # Now refused at level 33 as the composer reaches it (0.2 s).
    "flow sequences 5,000 levels deep (YAML)": (
        "trails.yaml", "Trails: " + "[" * 5000 + "x" + "]" * 5000, TOO_DEEP),
    "block sequences 3,000 levels deep (YAML)": ("trails.yaml", "Trails:\n" + "- " * 3000 + "x\n", TOO_DEEP),
    # Messages quoted whole values: 100 KB, or a 900-level list written out.
    "a long HomeRegion": ("trails.json", json.dumps({"Trails": [{**TRAIL_DOCUMENTS[0]["Trails"][0],
                                                                  "HomeRegion": "x" * 100_000}]}),
                          "HomeRegion: must be a region of an AWS partition (got 'xxxxxxxxxxxxxxxxxxxxxxxx"),
    "a long Name": ("trails.json", json.dumps({"Trails": [{**TRAIL_DOCUMENTS[0]["Trails"][0], "Name": "n" * 100_000}]}),
                    "trail 'nnnnnnnn"),
    "a long unknown member name": ("trails.yaml", yaml_text({"Trails": [{**TRAIL_DOCUMENTS[0]["Trails"][0],
                                                                          "k" * 100_000: 1}]}),
                                   "kkk...: unknown member (allowed: Name,"),
    "a list 20 levels deep in a member": (
        "trails.json", '{"Trails": [' + example_entry()[:-1] + ', "KmsKeyId": ' + "[" * 20 + "]" * 20 + "}]}",
        "KmsKeyId: must be a string (got [[[[...]]]])"),
}


@pytest.mark.parametrize(("name", "text", "fragment"), TRAIL_REGRESSIONS.values(), ids=TRAIL_REGRESSIONS.keys())
def test_trail_loader_regressions(folder: Path, name: str, text: str, fragment: str) -> None:
    path = folder / name
    path.write_text(text)
    began = time.monotonic()
    with pytest.raises(TrailError) as caught:
        load_trails(path)
    assert fragment in caught.value.message, caught.value.message[:500]
    assert len(caught.value.message) < 500 + len(str(path))
    assert time.monotonic() - began < 5
