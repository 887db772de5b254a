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
    """A producer of an address nothing listens on: nothing here may reach the queue."""
    producer = EventProducer(Settings(bootstrap_servers="127.0.0.1:9"))
    yield producer
    producer.close(timeout_s=1)


def test_a_record_nested_too_deeply_is_refused_by_name(producer: EventProducer) -> None:
    with pytest.raises(InvalidEventError, match="record: is nested too deeply to encode") as caught:
        producer.emit({**RECORD, "requestParameters": nested(100_000)})
    assert caught.value.rule == "depth"
    assert producer.accepted == 0
