"""EventProducer.emit() on hostile records: refused with InvalidEventError before anything is queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.producers.event_producer import EventProducer, InvalidEventError

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "stratus-detonation-logs"
RECORD = json.loads((REAL / "aws.persistence.iam-backdoor-role.json").read_text())[0]


def nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    current = root
    for _ in range(depth):
        current["a"] = {}
        current = current["a"]
    return root


@pytest.fixture
def producer() -> Iterator[EventProducer]:
    """A producer of an address nothing listens on: nothing here may reach the queue (a record that does times out
    within a second, so a test that lets one through fails instead of hanging on close)."""
    producer = EventProducer(Settings(bootstrap_servers="127.0.0.1:9"), **{"message.timeout.ms": 1000})
    yield producer
    producer.close(timeout_s=1)


def test_a_record_nested_too_deeply_is_refused_by_name(producer: EventProducer) -> None:
    with pytest.raises(InvalidEventError, match="record: is nested too deeply to encode") as caught:
        producer.emit({**RECORD, "requestParameters": nested(100_000)})
    assert caught.value.rule == "depth"
    assert producer.accepted == 0


NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
# (where the value goes, the path the error names, the field it is counted under: a label the input cannot grow)
PLACES = {
    "in requestParameters": (lambda v: {"requestParameters": {"ratio": v}}, "requestParameters.ratio",
                             "requestParameters"),
    "in an array": (lambda v: {"responseElements": {"scores": [1.5, 2, v]}}, "responseElements.scores[2]",
                    "responseElements"),
    "an unknown top-level member": (lambda v: {"ratio": v}, "ratio", "record"),
    "objects in arrays": (lambda v: {"additionalEventData": {"x": [{"y": v}]}}, "additionalEventData.x[0].y",
                          "additionalEventData"),
    "a typed Avro double": (lambda v: {"insightDetails": {"insightContext": {"statistics": {"baseline": {
        "average": v}}}}}, "insightDetails.insightContext.statistics.baseline.average", "insightDetails"),
    "an odd member name": (lambda v: {"requestParameters": {"a.b c": v}}, "requestParameters['a.b c']",
                           "requestParameters"),
}


@pytest.mark.parametrize("value", NON_FINITE.values(), ids=NON_FINITE.keys())
@pytest.mark.parametrize(("change", "path", "field"), PLACES.values(), ids=PLACES.keys())
def test_nan_and_infinity_are_refused_naming_the_path(producer: EventProducer, value: float, change: Any, path: str,
                                                      field: str) -> None:
    """orjson writes NaN and ±Infinity as null: accepting them would silently change the record."""
    with pytest.raises(InvalidEventError) as caught:
        producer.emit({**RECORD, **change(value)})
    assert str(caught.value) == f"{path}: NaN/Infinity is not valid JSON (got {value!r})"
    assert (caught.value.field, caught.value.rule, caught.value.path) == (field, "json", path)
    assert producer.accepted == 0
