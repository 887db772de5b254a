"""kafkatrail.downstream's records, table-driven: good and bad keys and values of both topics; the faust models
round-trip and decode through faust's own registry; the package imports without faust."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.downstream import CloudTrailEvent, LogFileNotification
from kafkatrail.schemas.contract import DeliveryKey, Notification, event_time_ms

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "stratus-detonation-logs"
REAL_RECORDS = [record for path in sorted(REAL.glob("*.json")) for record in json.loads(path.read_text())]
ARN = "arn:aws:cloudtrail:us-east-1:111122223333:trail/audit"
KEY = DeliveryKey(ARN, "111122223333", "eu-west-1").encode()
EVENT = {"eventVersion": "1.09", "eventID": "3a7a4b58-8f0e-4d2b-9c1f-0d9b2f4e6a11", "eventTime": "2024-08-01T13:33:28Z",
         "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "eu-west-1",
         "recipientAccountId": "111122223333", "requestParameters": {"bucketName": "b", "eventTime": "nested"}}


def _event(**changes: Any) -> bytes:
    """EVENT with members replaced (None: removed), as compact JSON."""
    record = {**EVENT, **changes}
    return orjson.dumps({name: value for name, value in record.items() if value is not None})


GOOD_NOTIFICATIONS = {
    "one file": (ARN.encode(), b'{"s3Bucket":"audit","s3ObjectKey":["AWSLogs/x.json.gz"]}',
                 LogFileNotification(ARN, "audit", ("AWSLogs/x.json.gz",))),
    "several files, spaced JSON": (ARN.encode(), b'{ "s3Bucket": "audit", "s3ObjectKey": ["a", "b"] }',
                                   LogFileNotification(ARN, "audit", ("a", "b"))),
    "as the S3 sink encodes it": (b"arn:aws:cloudtrail:eu-west-1:444455556666:trail/org",
                                  Notification("b\u00fccket", ("k1",)).encode(),
                                  LogFileNotification("arn:aws:cloudtrail:eu-west-1:444455556666:trail/org",
                                                      "b\u00fccket", ("k1",))),
}
NOTICE = Notification("b", ("k",)).encode()
BAD_NOTIFICATIONS = {
    "no key": (None, NOTICE, "notification key: must be the trail ARN (got an empty key)"),
    "an empty key": (b"", NOTICE, "notification key: must be the trail ARN (got an empty key)"),
    "a key not in UTF-8": (b"\xffarn", NOTICE, "notification key: must be the trail ARN in UTF-8"),
    "an empty value": (ARN.encode(), b"", "notification: must be JSON"),
    "not JSON": (ARN.encode(), b"s3Bucket=b", "notification: must be JSON"),
    "a value not in UTF-8": (ARN.encode(), b'{"s3Bucket":"\xff","s3ObjectKey":[]}', "notification: must be JSON"),
    "a JSON array": (ARN.encode(), b'["b", ["k"]]', "notification: must be a JSON object"),
    "no bucket": (ARN.encode(), b'{"s3ObjectKey":["k"]}', "s3Bucket must be a string"),
    "a numeric bucket": (ARN.encode(), b'{"s3Bucket":1,"s3ObjectKey":["k"]}', "s3Bucket must be a string"),
    "one key, not a list": (ARN.encode(), b'{"s3Bucket":"b","s3ObjectKey":"k"}', "s3ObjectKey a list of strings"),
    "a key that is no string": (ARN.encode(), b'{"s3Bucket":"b","s3ObjectKey":["k",1]}', "a list of strings"),
}

GOOD_EVENTS = {
    "a whole-second eventTime": (KEY, _event(), "2024-08-01T13:33:28Z", 1722519208000),
    "milliseconds": (KEY, _event(eventTime="2024-08-01T13:33:28.123Z"), "2024-08-01T13:33:28.123Z", 1722519208123),
    "an explicit offset": (KEY, _event(eventTime="2024-08-01T15:33:28+02:00"), "2024-08-01T15:33:28+02:00",
                           1722519208000),
    "unknown members are kept": (KEY, _event(newerField={"x": [1, 2.5, None]}), "2024-08-01T13:33:28Z",
                                 1722519208000),
}
BAD_EVENTS = {
    "no key": (None, _event(), "delivery key: must be trailARN|account|region (got an empty key)"),
    "an empty key": (b"", _event(), "delivery key: must be trailARN|account|region (got an empty key)"),
    "a key of two parts": (f"{ARN}|111122223333".encode(), _event(), "delivery key: must be trailARN|account|region"),
    "a key of four parts": (KEY + b"|x", _event(), "delivery key: must be trailARN|account|region"),
    "a key with an empty part": (f"{ARN}||eu-west-1".encode(), _event(), "delivery key: must be trailARN|account"),
    "a key not in UTF-8": (b"\xff" + KEY, _event(), "delivery key: must be trailARN|account|region in UTF-8"),
    "an empty value": (KEY, b"", "event: must be a JSON object ("),
    "not JSON": (KEY, b"eventID=1", "event: must be a JSON object ("),
    "a JSON array": (KEY, b"[{}]", "event: must be a JSON object (got a JSON list)"),
    "a JSON string": (KEY, b'"GetObject"', "event: must be a JSON object (got a JSON str)"),
    "no eventID": (KEY, _event(eventID=None), "eventID: must be a non-empty string (got NoneType)"),
    "an empty eventID": (KEY, _event(eventID=""), "eventID: must be a non-empty string (got str)"),
    "a numeric eventID": (KEY, _event(eventID=7), "eventID: must be a non-empty string (got int)"),
    "no eventTime": (KEY, _event(eventTime=None), "eventTime: must be a non-empty string"),
    "a numeric eventTime": (KEY, _event(eventTime=1722519208), "eventTime: must be a non-empty string (got int)"),
    "an eventTime that is no timestamp": (KEY, _event(eventTime="yesterday"), "eventTime: must be an ISO-8601"),
    "no eventSource": (KEY, _event(eventSource=None), "eventSource: must be a non-empty string"),
    "an empty eventName": (KEY, _event(eventName=""), "eventName: must be a non-empty string"),
}


@pytest.mark.parametrize(("key", "value", "expected"), GOOD_NOTIFICATIONS.values(), ids=GOOD_NOTIFICATIONS.keys())
def test_a_notification_decodes(key: bytes, value: bytes, expected: LogFileNotification) -> None:
    assert LogFileNotification.from_message(key, value) == expected


@pytest.mark.parametrize(("key", "value", "rule"), BAD_NOTIFICATIONS.values(), ids=BAD_NOTIFICATIONS.keys())
def test_a_bad_notification_is_refused_naming_field_and_rule(key: bytes | None, value: bytes, rule: str) -> None:
    with pytest.raises(ValueError) as caught:
        LogFileNotification.from_message(key, value)
    assert rule in str(caught.value)


@pytest.mark.parametrize(("key", "value", "event_time", "time_ms"), GOOD_EVENTS.values(), ids=GOOD_EVENTS.keys())
def test_an_event_decodes(key: bytes, value: bytes, event_time: str, time_ms: int) -> None:
    event = CloudTrailEvent.from_message(key, value)
    assert (event.trail_arn, event.account, event.region) == (ARN, "111122223333", "eu-west-1")
    assert (event.event_id, event.event_source, event.event_name) == (EVENT["eventID"], "s3.amazonaws.com",
                                                                      "GetObject")
    assert (event.event_time, event.event_time_ms) == (event_time, time_ms)
    assert event.record == orjson.loads(value)
    assert event.raw is value


@pytest.mark.parametrize(("key", "value", "rule"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_event_is_refused_naming_field_and_rule(key: bytes | None, value: bytes, rule: str) -> None:
    with pytest.raises(ValueError) as caught:
        CloudTrailEvent.from_message(key, value)
    assert rule in str(caught.value)


@pytest.mark.parametrize("value", [_event(eventTime="2024-13-45T99:00:00Z secret"), b'{"eventID":"secret"'])
def test_the_error_does_not_quote_the_value(value: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        CloudTrailEvent.from_message(KEY, value)
    assert "secret" not in str(caught.value)


def test_every_real_record_decodes() -> None:
    for record in REAL_RECORDS:
        key = DeliveryKey.of_record(ARN, record).encode()
        event = CloudTrailEvent.from_message(key, orjson.dumps(record))
        assert (event.account, event.region) == (record["recipientAccountId"], record["awsRegion"])
        assert (event.event_id, event.event_name) == (record["eventID"], record["eventName"])
        assert event.event_time_ms == event_time_ms(record["eventTime"])
        assert event.record == record


def test_records_are_frozen_hashable_and_keep_the_payload_out_of_repr() -> None:
    notice = LogFileNotification.from_message(ARN.encode(), NOTICE)
    event = CloudTrailEvent.from_message(KEY, _event())
    for record in (notice, event):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.trail_arn = "other"  # type: ignore[misc]
    assert len({event, CloudTrailEvent.from_message(KEY, _event()), notice}) == 2
    assert "requestParameters" not in repr(event) and EVENT["eventID"] in repr(event)


def test_the_package_imports_without_faust_and_its_faust_part_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['faust'] = None\n"
        "import kafkatrail.downstream as d; assert callable(d.events)\n"
        "try:\n"
        "    import kafkatrail.downstream.faust\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'kafkatrail[faust]'" in done.stdout


def test_faust_models_round_trip_every_real_record_as_json() -> None:
    pytest.importorskip("faust")
    from kafkatrail.downstream.faust import CloudTrailEventModel
    from kafkatrail.downstream.records import event_fields

    for record in REAL_RECORDS:
        model = CloudTrailEventModel(**event_fields(orjson.dumps(record)))
        again = CloudTrailEventModel.loads(model.dumps())
        assert again == model and again.record == record and isinstance(again.record, dict)


def test_faust_topics_decode_through_faust_with_kafkatrails_rules() -> None:
    faust = pytest.importorskip("faust")
    from kafkatrail.downstream.faust import (
        CloudTrailEventModel,
        DeliveryKeyModel,
        LogFileNotificationModel,
        app_config,
        events_topic,
        notifications_topic,
    )

    settings = Settings(bootstrap_servers="a:1, b:2", topic_prefix="unit")
    assert app_config(settings) == {"broker": ["kafka://a:1", "kafka://b:2"], "processing_guarantee": "exactly_once"}
    app = faust.App("unit-downstream", **app_config(settings))
    events, notices = events_topic(app, settings), notifications_topic(app, settings)
    assert (events.get_topic_name(), notices.get_topic_name()) == ("unit.delivery", "unit.notifications")

    loads_key, loads_value = app.serializers.loads_key, app.serializers.loads_value
    key = loads_key(events.key_type, KEY, serializer=events.key_serializer)
    value = loads_value(events.value_type, _event(), serializer=events.value_serializer)
    assert key == DeliveryKeyModel(trail_arn=ARN, account="111122223333", region="eu-west-1")
    assert isinstance(value, CloudTrailEventModel) and value.record == EVENT and value.event_time_ms == 1722519208000
    assert loads_key(notices.key_type, ARN.encode(), serializer=notices.key_serializer) == ARN
    notice = loads_value(notices.value_type, b'{"s3Bucket":"b","s3ObjectKey":["k"]}',
                         serializer=notices.value_serializer)
    assert notice == LogFileNotificationModel(bucket="b", object_keys=["k"])
    with pytest.raises(faust.exceptions.ValueDecodeError, match="eventTime: must be an ISO-8601"):
        loads_value(events.value_type, _event(eventTime="x"), serializer=events.value_serializer)
    with pytest.raises(faust.exceptions.KeyDecodeError, match="delivery key"):
        loads_key(events.key_type, b"no-bars", serializer=events.key_serializer)


def test_events_topic_refuses_an_app_that_would_read_aborted_records() -> None:
    faust = pytest.importorskip("faust")
    from kafkatrail.downstream.faust import events_topic

    app = faust.App("unit-downstream-alo", broker="kafka://127.0.0.1:1")
    with pytest.raises(ValueError, match="processing_guarantee='exactly_once'"):
        events_topic(app, Settings(topic_prefix="unit"))
