"""Typed, frozen records of kafkatrail's two output topics, decoded from a Kafka message's key and value.

The wire format is `kafkatrail.schemas.contract`'s: `Notification` and `DeliveryKey` decode, `event_time_ms`
parses eventTime. Every decoding error is a `ValueError` whose message names the field and the rule it
broke, and never quotes the value (a CloudTrail record is audit data; it must not end up in logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

from kafkatrail.schemas.contract import DeliveryKey, Notification, event_time_ms


class EventFields(TypedDict):
    """What a delivery record's value decodes to (its key gives the rest of a `CloudTrailEvent`)."""

    event_id: str
    event_time: str
    event_time_ms: int
    event_source: str
    event_name: str
    record: dict[str, Any]


def trail_arn(key: bytes | None) -> str:
    """The key of a notification: the trail ARN (UTF-8, not empty)."""
    if not key:
        raise ValueError("notification key: must be the trail ARN (got an empty key)")
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise ValueError("notification key: must be the trail ARN in UTF-8 (got other bytes)") from None


def notification(value: bytes) -> Notification:
    """The value of a notification: CloudTrail's `{"s3Bucket": ..., "s3ObjectKey": [...]}`."""
    try:
        return Notification.decode(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"notification: must be JSON ({exc.msg})") from None


def delivery_key(key: bytes | None) -> DeliveryKey:
    """The key of a delivery record, `trailARN|account|region`, by `DeliveryKey.decode`."""
    try:
        return DeliveryKey.decode(key)
    except UnicodeDecodeError:
        raise ValueError("delivery key: must be trailARN|account|region in UTF-8 (got other bytes)") from None


def event_fields(value: bytes) -> EventFields:
    """The value of a delivery record: one CloudTrail event record as a JSON object."""
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"event: must be a JSON object ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"event: must be a JSON object (got a JSON {type(record).__name__})")
    texts: dict[str, str] = {}
    for name in ("eventID", "eventTime", "eventSource", "eventName"):
        text = record.get(name)
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name}: must be a non-empty string (got {type(text).__name__})")
        texts[name] = text
    try:
        time_ms = event_time_ms(texts["eventTime"])
    except ValueError:
        raise ValueError("eventTime: must be an ISO-8601 timestamp") from None
    return EventFields(event_id=texts["eventID"], event_time=texts["eventTime"], event_time_ms=time_ms,
                       event_source=texts["eventSource"], event_name=texts["eventName"], record=record)


@dataclass(frozen=True, slots=True)
class LogFileNotification:
    """Log files the S3 sink has stored for a trail: one bucket and the object keys of the new files."""

    trail_arn: str
    bucket: str
    object_keys: tuple[str, ...]

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes) -> LogFileNotification:
        """A message of the notifications topic; `ValueError` naming the field and rule when it is not one."""
        notice = notification(value)
        return cls(trail_arn(key), notice.s3_bucket, notice.s3_object_keys)


@dataclass(frozen=True, slots=True)
class CloudTrailEvent:
    """One CloudTrail event record delivered to a trail, for one account and region.

    `record` is the whole record as parsed JSON and `raw` its bytes as delivered (compact JSON); both are
    left out of the repr. Treat `record` as read-only: it is excluded from the hash, not copied.
    """

    trail_arn: str
    account: str
    region: str
    event_id: str
    event_time: str
    event_time_ms: int
    event_source: str
    event_name: str
    record: dict[str, Any] = field(hash=False, repr=False)
    raw: bytes = field(repr=False)

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes) -> CloudTrailEvent:
        """A message of the delivery topic; `ValueError` naming the field and rule when it is not one."""
        where = delivery_key(key)
        return cls(where.trail_arn, where.account, where.region, **event_fields(value), raw=value)
