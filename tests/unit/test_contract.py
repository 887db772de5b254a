"""The wire contract between stages: delivery keys, notifications, topic names and eventTime, table-driven,
over every real CloudTrail record in tests/data/real, and property-based over generated records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkatrail.schemas.contract import (
    DeliveryKey,
    Notification,
    TopicNames,
    event_minute,
    event_time_ms,
    parse_event_time,
    scan_event_time,
)

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
REAL_RECORDS = [record for path in sorted((REAL / "stratus-detonation-logs").glob("*.json"))
                for record in json.loads(path.read_text())]
ARN = "arn:aws:cloudtrail:us-east-1:111122223333:trail/audit"

KEY_CASES = {
    "a trail's key": (f"{ARN}|111122223333|eu-west-1".encode(), DeliveryKey(ARN, "111122223333", "eu-west-1")),
    "text is taken too": (f"{ARN}|444455556666|us-gov-west-1", DeliveryKey(ARN, "444455556666", "us-gov-west-1")),
}
BAD_KEYS = {
    "no key": (None, "got an empty key"),
    "empty": (b"", "got an empty key"),
    "two parts": (f"{ARN}|111122223333".encode(), "must be trailARN|account|region"),
    "four parts": (f"{ARN}|1|2|3".encode(), "must be trailARN|account|region"),
    "an empty part": (f"{ARN}||eu-west-1".encode(), "must be trailARN|account|region"),
}


@pytest.mark.parametrize(("raw", "expected"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_a_delivery_key_decodes_and_encodes_back(raw: bytes | str, expected: DeliveryKey) -> None:
    key = DeliveryKey.decode(raw)
    assert key == expected
    assert key.encode() == (raw if isinstance(raw, bytes) else raw.encode())
    assert key.text() == key.encode().decode()


@pytest.mark.parametrize(("raw", "rule"), BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_malformed_delivery_key_is_refused_with_the_rule(raw: bytes | None, rule: str) -> None:
    with pytest.raises(ValueError, match="delivery key") as caught:
        DeliveryKey.decode(raw)
    assert rule in str(caught.value)


def test_the_key_of_a_record_is_its_recipient_account_and_region() -> None:
    record = REAL_RECORDS[0]
    key = DeliveryKey.of_record(ARN, record)
    assert (key.account, key.region) == (record["recipientAccountId"], record["awsRegion"])


def test_the_notification_is_cloudtrails_and_round_trips() -> None:
    notice = Notification("audit-bucket", ("AWSLogs/111122223333/CloudTrail/x.json.gz",))
    assert orjson.loads(notice.encode()) == {"s3Bucket": "audit-bucket",
                                             "s3ObjectKey": ["AWSLogs/111122223333/CloudTrail/x.json.gz"]}
    assert Notification.decode(notice.encode()) == notice


def test_the_real_sns_notification_decodes() -> None:
    body = json.loads((REAL / "cloudtrail-processing-library" / "SQSMessageBody.json").read_text())
    notice = Notification.decode(body["Message"])
    assert notice.s3_bucket and notice.s3_object_keys


@pytest.mark.parametrize("value", [b"[]", b'{"s3Bucket": 1, "s3ObjectKey": []}',
                                   b'{"s3Bucket": "b", "s3ObjectKey": "k"}'])
def test_a_malformed_notification_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="s3Bucket"):
        Notification.decode(value)


def test_topic_names_share_one_prefix() -> None:
    topics = TopicNames.with_prefix("acme")
    assert topics.delivery == "acme.delivery" and topics.s3_journal == "acme.sinks.s3-journal"
    assert all(name.startswith("acme.") for name in vars(topics).values())


TIME_CASES = {
    "whole seconds": ("2024-08-01T13:33:28Z", 1722519208000),
    "milliseconds": ("2024-08-01T13:33:28.123Z", 1722519208123),
    "microseconds truncate to ms": ("2024-08-01T13:33:28.123999Z", 1722519208123),
    "an explicit offset": ("2024-08-01T15:33:28+02:00", 1722519208000),
    "the epoch": ("1970-01-01T00:00:00Z", 0),
}


@pytest.mark.parametrize(("text", "expected"), TIME_CASES.values(), ids=TIME_CASES.keys())
def test_event_time_ms(text: str, expected: int) -> None:
    assert event_time_ms(text) == expected
    assert event_minute(text) == expected // 60_000


SCAN_CASES = {
    "top level only": (b'{"eventVersion":"1.09","eventTime":"2024-08-01T13:33:28Z"}', "2024-08-01T13:33:28Z"),
    "a nested eventTime before the top-level one": (
        b'{"userIdentity":{"type":"IAMUser","eventTime":"not-a-time"},"eventTime":"2024-08-01T13:33:28Z"}',
        "2024-08-01T13:33:28Z"),
    "a nested eventTime after it": (
        b'{"eventTime":"2024-08-01T13:33:28Z","requestParameters":{"eventTime":"x"}}', "2024-08-01T13:33:28Z"),
    "the pattern quoted inside a string value": (
        b'{"userAgent":"\\"eventTime\\":\\"1999-01-01T00:00:00Z\\"","eventTime":"2024-08-01T13:33:28Z"}',
        "2024-08-01T13:33:28Z"),
    "an escaped character in the value": (b'{"eventTime":"2024-08-01T13:33:28\\u005a"}', "2024-08-01T13:33:28Z"),
}


@pytest.mark.parametrize(("record", "expected"), SCAN_CASES.values(), ids=SCAN_CASES.keys())
def test_the_scan_finds_the_top_level_event_time(record: bytes, expected: str) -> None:
    assert scan_event_time(record) == expected == parse_event_time(record)


def test_a_record_without_any_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="eventTime"):
        scan_event_time(b'{"eventName":"A","userIdentity":{"type":"IAMUser"}}')


@pytest.mark.parametrize("record", REAL_RECORDS, ids=[r["eventID"] for r in REAL_RECORDS])
def test_the_scan_equals_the_full_parse_on_every_real_record(record: dict) -> None:
    compact = orjson.dumps(record)
    assert scan_event_time(compact) == parse_event_time(compact) == record["eventTime"]


MEMBER_NAMES = st.sampled_from(["eventTime", "eventName", "userIdentity", "requestParameters", "x\"y", "eventTime "])
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
NESTED = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(MEMBER_NAMES, inner, max_size=3)), max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    fraction=st.booleans(),
    others=st.dictionaries(MEMBER_NAMES.filter(lambda name: name != "eventTime"), NESTED, max_size=5),
    position=st.integers(min_value=0, max_value=5),
)
def test_the_scan_equals_the_full_parse_for_any_time_and_member_order(
        moment: datetime, fraction: bool, others: dict, position: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")
    members = list(others.items())
    members.insert(min(position, len(members)), ("eventTime", text))
    compact = orjson.dumps(dict(members))
    assert scan_event_time(compact) == parse_event_time(compact) == text
    shown = moment if fraction else moment.replace(microsecond=0)
    assert event_time_ms(text) == (shown - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
