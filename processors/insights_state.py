"""The Insights worker's changelog records: a detector's state as compacted key/value pairs.

One record per unit (key: the unit's fields as a JSON array; value: its history, open minutes and open
Insight) and one for the detector's clock (key `clock`: watermark, closed minutes, first minute of each
trail/account/region). A record is written for every unit a transaction touched, so the latest record
per key in changelog partition p is the state of the detector of delivery partition p.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from kafkatrail.processors.insights import Attributes, InsightsDetector, OpenInsight, Unit, UnitState

CLOCK_KEY = b"clock"


def _attributes(doc: dict[str, dict[str, int]]) -> Attributes:
    return {name: Counter(values) for name, values in doc.items()}


def _open_doc(opened: OpenInsight | None) -> dict[str, Any] | None:
    if opened is None:
        return None
    return {"shared_id": opened.shared_id, "start": opened.start, "baseline_average": opened.baseline_average,
            "baseline_minutes": opened.baseline_minutes, "baseline_attributions": opened.baseline_attributions,
            "calls": opened.calls, "attributes": opened.attributes}


def _open(doc: dict[str, Any] | None) -> OpenInsight | None:
    if doc is None:
        return None
    doc = {key: value for key, value in doc.items() if key not in ("quiet", "quiet_calls")}  # the old end rule's
    return OpenInsight(**{**doc, "attributes": _attributes(doc["attributes"])})


def unit_record(unit: Unit, state: UnitState) -> tuple[bytes, bytes]:
    key = orjson.dumps([unit.trail_arn, unit.account, unit.region, unit.event_source, unit.event_name,
                        unit.insight_type, unit.error_code])
    value = orjson.dumps({
        "slots": list(state.slots.items()),
        "days": list(state.days.items()),
        "pending": [[minute, count, attributes] for minute, (count, attributes) in state.pending.items()],
        "recent": [[minute, count, attributes] for minute, (count, attributes) in state.recent.items()],
        "open": _open_doc(state.open),
        "dispersion": [state.square_slot, state.squares, state.slot_calls, state.dispersion_sum,
                       state.dispersion_weight],
    })
    return key, value


def clock_record(detector: InsightsDetector) -> tuple[bytes, bytes]:
    return CLOCK_KEY, orjson.dumps({"closed_until": detector.closed_until, "max_event_s": detector.max_event_s,
                                    "late": detector.late, "last_received_s": detector.last_received_s,
                                    "scope_first": [[*scope, first] for scope, first in
                                                    detector.scope_first.items()]})


def changed_records(detector: InsightsDetector) -> list[tuple[bytes, bytes]]:
    """The records of every unit changed since the last call, and the clock; clears the changed set."""
    records = [unit_record(unit, detector.units[unit]) for unit in detector.dirty]
    detector.dirty.clear()
    records.append(clock_record(detector))
    return records


def restore(detector: InsightsDetector, key: bytes, value: bytes) -> None:
    """Apply one changelog record (later records of a key replace earlier ones)."""
    doc = orjson.loads(value)
    if key == CLOCK_KEY:
        detector.closed_until, detector.max_event_s, detector.late = (doc["closed_until"], doc["max_event_s"],
                                                                       doc["late"])
        detector.last_received_s = doc.get("last_received_s", -1.0)
        detector.scope_first = {(trail, account, region): first for trail, account, region, first in
                                doc["scope_first"]}
        return
    unit = Unit(*orjson.loads(key))
    square_slot, squares, slot_calls, dispersion_sum, dispersion_weight = doc.get("dispersion", [-1, 0, 0, 0.0, 0.0])
    detector.units[unit] = UnitState(
        slots={slot: count for slot, count in doc["slots"]},
        days={int(day): _attributes(attributes) for day, attributes in doc["days"]},
        pending={minute: (count, _attributes(attributes)) for minute, count, attributes in doc["pending"]},
        recent={minute: (count, _attributes(attributes)) for minute, count, attributes in doc["recent"]},
        open=_open(doc["open"]), square_slot=square_slot,
        squares=squares, slot_calls=slot_calls, dispersion_sum=dispersion_sum, dispersion_weight=dispersion_weight)
