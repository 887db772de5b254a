"""EventPipeline on one partition's batch: dead letters with reasons, dedupe, per-trail fan-out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kafkatrail.processors.dedupe import DedupeWindow, content_digest
from kafkatrail.processors.pipeline import EventPipeline, InputMessage, Rejected
from kafkatrail.processors.selectors import Selection
from kafkatrail.schemas.codec import decode_event, encode_event
from kafkatrail.trails.definitions import load_trails

TRAILS = load_trails(Path(__file__).resolve().parents[2] / "deploy" / "trails.demo.yaml")
ARN = {trail.name: trail.arn for trail in TRAILS}


def record(event_id: str = "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90", **changes: Any) -> dict[str, Any]:
    base = {
        "eventVersion": "1.11",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": "111122223333"},
        "eventTime": "2024-05-01T09:13:02Z", "eventSource": "ec2.amazonaws.com", "eventName": "StopInstances",
        "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.25", "userAgent": "aws-cli/2.15.0",
        "requestID": "6f1e2d3c-4b5a-4c6d-8e7f-0a1b2c3d4e5f", "eventID": event_id, "readOnly": False,
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    base.update(changes)
    return base


EVENT_ID = "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90"


def message(value: bytes | None, offset: int = 0, at: float = 1_714_554_000.0,
            key: bytes | None = EVENT_ID.encode()) -> InputMessage:
    return InputMessage(value, key, at, offset)


def run(*messages: InputMessage, window: DedupeWindow | None = None):
    pipeline = EventPipeline(decode_event, Selection(TRAILS))
    return pipeline.process(list(messages), DedupeWindow(86_400, 3_600) if window is None else window)


def test_a_write_goes_to_every_matching_trail_as_cloudtrail_json() -> None:
    outcome = run(message(encode_event(record())))
    keys = sorted(key.decode() for key, _ in outcome.deliveries)
    assert keys == sorted(f"{ARN[name]}|111122223333|eu-west-1" for name in ("org-management", "org-eu-writes"))
    assert all(orjson.loads(body) == record() for _, body in outcome.deliveries)
    assert outcome.selected == {ARN["org-management"]: 1, ARN["org-eu-writes"]: 1}
    assert dict(outcome.first_seen) == {1_714_554_000 // 3_600: [(record()["eventID"], content_digest(
        outcome.deliveries[0][1]))]}


def test_a_record_no_trail_selects_is_kept_in_the_dedupe_window_but_not_delivered() -> None:
    read_in_us_west = record(readOnly=True, awsRegion="us-west-2", eventName="DescribeInstances")
    outcome = run(message(encode_event(read_in_us_west)))
    assert [key.decode() for key, _ in outcome.deliveries] == [f"{ARN['org-management']}|111122223333|us-west-2"]
    s3_read = record(eventCategory="Data", managementEvent=False, readOnly=True, eventSource="s3.amazonaws.com",
                     eventName="GetObject", resources=[{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"}])
    outcome = run(message(encode_event(s3_read)))
    assert outcome.deliveries == []
    assert sum(len(ids) for ids in outcome.first_seen.values()) == 1


def test_repeats_are_dropped_within_a_batch_and_across_batches() -> None:
    window = DedupeWindow(86_400, 3_600)
    first = run(message(encode_event(record()), 0), message(encode_event(record()), 1), window=window)
    assert first.duplicates == 1
    assert len(first.deliveries) == 2
    again = run(message(encode_event(record()), 2), window=window)
    assert again.duplicates == 1
    assert again.deliveries == []


def test_a_record_with_the_same_eventid_and_other_content_is_a_conflict_and_the_first_stays() -> None:
    window = DedupeWindow(86_400, 3_600)
    real = encode_event(record(eventName="DeleteTrail", eventSource="cloudtrail.amazonaws.com"))
    forged = encode_event(record(eventName="DescribeTrails", readOnly=True, eventSource="cloudtrail.amazonaws.com"))
    first = run(message(forged, 0), window=window)
    later = run(message(real, 1), message(forged, 2), window=window)
    assert [r.reason for r in first.rejected] == []
    assert [(r.reason, r.message.offset) for r in later.rejected] == [("conflict.eventID", 1)]
    assert later.conflicts == 1 and later.duplicates == 1
    assert later.deliveries == []


def test_a_copy_whose_eventid_differs_only_in_case_is_a_copy_not_a_conflict() -> None:
    window = DedupeWindow(86_400, 3_600)
    run(message(encode_event(record())), window=window)
    upper = run(message(encode_event(record(EVENT_ID.upper()))), window=window)
    assert (upper.duplicates, upper.rejected, upper.deliveries) == (1, [], [])


KEYS = {
    "the eventID": (EVENT_ID.encode(), True),
    "the eventID in upper case (copies may land in another partition)": (EVENT_ID.upper().encode(), False),
    "no key": (None, False),
    "another eventID": (b"7f3e1c2d-0a4b-4c5d-8e6f-9a0b1c2d3e4f", False),
    "the eventID with a suffix": (EVENT_ID.encode() + b" ", False),
    "not UTF-8": (b"\xff" * 36, False),
}


@pytest.mark.parametrize(("key", "accepted"), KEYS.values(), ids=KEYS.keys())
def test_a_record_whose_key_is_not_its_eventid_is_a_dead_letter(key: bytes | None, accepted: bool) -> None:
    outcome = run(message(encode_event(record()), key=key))
    assert [r.reason for r in outcome.rejected] == ([] if accepted else ["invalid.key"])
    assert bool(outcome.deliveries) is accepted


BAD = {
    "tombstone": (None, "undecodable.no_value"),
    "JSON instead of Avro": (orjson.dumps(record()), "undecodable.bad_marker"),
    "too short": (b"\xc3\x01\x00", "undecodable.short_header"),
    "unknown schema": (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "undecodable.unknown_fingerprint"),
    "truncated body": (encode_event(record())[:40], "undecodable.truncated_body"),
    "missing eventTime": (encode_event({k: v for k, v in record().items() if k != "eventTime"}),
                          "invalid.eventTime.required"),
    "bad eventTime": (encode_event(record(eventTime="yesterday")), "invalid.eventTime.format"),
    "bad account": (encode_event(record(recipientAccountId="12")), "invalid.recipientAccountId.format"),
}


@pytest.mark.parametrize(("value", "reason"), BAD.values(), ids=BAD.keys())
def test_bad_input_becomes_a_dead_letter_with_its_reason_and_the_batch_goes_on(value: bytes | None,
                                                                              reason: str) -> None:
    good = encode_event(record())
    outcome = run(message(value, 0), message(good, 1))
    assert [(r.reason, r.message.offset, r.message.value) for r in outcome.rejected] == [(reason, 0, value)]
    assert outcome.rejected[0].detail
    assert len(outcome.deliveries) == 2


REASON_LABELS = {
    "an index": ("invalid.resources[292].ARN.type", "invalid.resources[].ARN.type"),
    "nested indexes": ("invalid.a[1].b[22].type", "invalid.a[].b[].type"),
    "no index": ("undecodable.bad_marker", "undecodable.bad_marker"),
}


@pytest.mark.parametrize(("reason", "label"), REASON_LABELS.values(), ids=REASON_LABELS.keys())
def test_the_metric_label_of_a_reason_folds_array_indexes(reason: str, label: str) -> None:
    message = InputMessage(b"", b"", 0.0, 0)
    assert Rejected(message, reason, "detail").reason_label == label


@pytest.mark.parametrize(("changes", "kept"), [
    ({}, True),
    ({"awsRegion": "us-west-2", "readOnly": True}, True),  # no trail selects it: event history keeps it anyway
    ({"eventVersion": "1.05", "eventCategory": None, "managementEvent": None}, True),  # before 1.07: management
    ({"eventCategory": "Data", "managementEvent": False, "eventSource": "s3.amazonaws.com"}, False),
    ({"eventVersion": "1.05", "eventCategory": None, "managementEvent": False}, False),
    ({"eventCategory": "NetworkActivity", "managementEvent": False}, False),
])
def test_each_accepted_management_event_goes_once_to_the_history_topic(changes: dict[str, Any], kept: bool) -> None:
    fields = {name: value for name, value in {**record(), **changes}.items() if value is not None}
    body = encode_event(fields)
    window = DedupeWindow(86_400, 3_600)
    outcome = run(message(body, 0), message(body, 1), window=window)
    assert outcome.history == ([(EVENT_ID.encode(), outcome.history[0][1])] if kept else [])
    if kept:
        assert orjson.loads(outcome.history[0][1]) == fields
    assert run(message(body, 2), window=window).history == []
