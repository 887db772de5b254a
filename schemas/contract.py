"""What crosses a Kafka topic between kafkatrail's stages, defined once.

- **Topic names** (`TopicNames`): every topic under one prefix (`cloudtrail` by default).
- **The delivery key** (`DeliveryKey`): a record on the delivery topic is keyed
  `<trail ARN>|<account id>|<region>` (UTF-8). A trail ARN holds no `|`, account ids and region names hold
  none either, so the key splits unambiguously; `decode` refuses anything else with a `ValueError`.
- **Headers** of a dead-lettered record: `REASON_HEADER`, `DETAIL_HEADER`, `SOURCE_HEADER`.
- **The notification** (`Notification`): what the S3 sink publishes to SNS and to the notifications topic
  after each file, CloudTrail's `{"s3Bucket": ..., "s3ObjectKey": [...]}`.
- **The trail status** (`TrailStatusUpdate`): what the sinks last delivered for a trail in a region, on the
  compacted trail-status topic, which GetTrailStatus reads.
- **The history topic**: each accepted record whose `record_category` is `Management`, keyed by its eventID
  in lower case, value the record's JSON exactly as on the delivery topic.
- **`eventTime`**: `event_time_ms` parses it (ISO-8601 UTC, fractions allowed) to milliseconds since the
  epoch; `scan_event_time` finds the top-level `eventTime` of a compact JSON record without parsing the
  record, and agrees with a full parse on every record (a nested member of the same name sends it to the
  full parse).

Nothing here imports from the rest of kafkatrail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

REASON_HEADER = "kafkatrail.reason"
DETAIL_HEADER = "kafkatrail.detail"
SOURCE_HEADER = "kafkatrail.source"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_EVENT_TIME_MARK = b'"eventTime":"'


@dataclass(frozen=True)
class TopicNames:
    """The Kafka topics of the pipeline, all under one prefix."""

    events: str
    dlq: str
    delivery: str
    insights: str
    notifications: str
    trails: str
    dedupe_changelog: str
    insights_changelog: str
    s3_journal: str
    s3_insight_journal: str
    delivery_failures: str
    trail_status: str
    history: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        return cls(
            events=f"{prefix}.events",
            dlq=f"{prefix}.events.dlq",
            delivery=f"{prefix}.delivery",
            insights=f"{prefix}.insights",
            notifications=f"{prefix}.notifications",
            trails=f"{prefix}.trails",
            dedupe_changelog=f"{prefix}.processors.dedupe-changelog",
            insights_changelog=f"{prefix}.insights.state-changelog",
            s3_journal=f"{prefix}.sinks.s3-journal",
            s3_insight_journal=f"{prefix}.sinks.s3-insight-journal",
            delivery_failures=f"{prefix}.delivery-failures",
            trail_status=f"{prefix}.trail-status",
            history=f"{prefix}.history",
        )

    def source(self, name: str) -> str:
        """The events topic of one producer principal (`processors.sources`): `<prefix>.events.<name>`."""
        return f"{self.events}.{name}"

    def source_changelog(self, name: str) -> str:
        """The dedupe changelog of that source's topic, co-partitioned with it."""
        return f"{self.dedupe_changelog}.{name}"


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """Which trail a delivery record is for, and the account and region whose log files it goes into."""

    trail_arn: str
    account: str
    region: str

    def encode(self) -> bytes:
        return f"{self.trail_arn}|{self.account}|{self.region}".encode()

    def text(self) -> str:
        return f"{self.trail_arn}|{self.account}|{self.region}"

    @classmethod
    def decode(cls, key: bytes | str | None) -> DeliveryKey:
        """The key of a delivery record; `ValueError` naming the rule when it is not one."""
        text = key.decode() if isinstance(key, bytes) else key
        if not text:
            raise ValueError("delivery key: must be trailARN|account|region (got an empty key)")
        parts = text.split("|")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"delivery key: must be trailARN|account|region (got {text[:80]!r})")
        return cls(*parts)

    @classmethod
    def of_record(cls, trail_arn: str, record: dict) -> DeliveryKey:
        """The key under which `record` is delivered to the trail `trail_arn`."""
        return cls(trail_arn, record["recipientAccountId"], record["awsRegion"])


@dataclass(frozen=True, slots=True)
class Notification:
    """CloudTrail's notification of delivered log files (one bucket, its new object keys)."""

    s3_bucket: str
    s3_object_keys: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps({"s3Bucket": self.s3_bucket, "s3ObjectKey": list(self.s3_object_keys)})

    @classmethod
    def decode(cls, value: bytes | str) -> Notification:
        """A notification as the S3 sink publishes it (or as SNS carries it in `Message`)."""
        document = orjson.loads(value)
        if not isinstance(document, dict):
            raise ValueError("notification: must be a JSON object with s3Bucket and s3ObjectKey")
        bucket, keys = document.get("s3Bucket"), document.get("s3ObjectKey")
        if not isinstance(bucket, str) or not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("notification: s3Bucket must be a string and s3ObjectKey a list of strings")
        return cls(bucket, tuple(keys))


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A log file the S3 sink could not store for a reason retrying does not cure (the bucket is missing or
    refuses the trail, the KMS key is disabled, ...): it is parked until the trail is fixed or deleted.
    `state` is `parked` (first failure), `stored` (a later retry succeeded) or `released` (given up: the trail
    was deleted or the records expired from the delivery topic)."""

    state: str
    trail_arn: str
    bucket: str
    object_key: str
    records: int
    error_code: str
    error_message: str
    at: str

    def encode(self) -> bytes:
        return orjson.dumps({"state": self.state, "trailARN": self.trail_arn, "s3Bucket": self.bucket,
                             "s3ObjectKey": self.object_key, "records": self.records, "errorCode": self.error_code,
                             "errorMessage": self.error_message, "at": self.at})

    @classmethod
    def decode(cls, value: bytes) -> DeliveryFailure:
        document = orjson.loads(value)
        return cls(document["state"], document["trailARN"], document["s3Bucket"], document["s3ObjectKey"],
                   document["records"], document["errorCode"], document["errorMessage"], document["at"])


STATUS_KINDS = ("delivery", "notification", "digest", "cloudwatch")


@dataclass(frozen=True, slots=True)
class TrailStatusUpdate:
    """One delivery outcome for a trail in a source region: the latest success or the latest error of one kind.

    Kinds: `delivery` (a log file stored in S3), `notification` (an SNS publish), `digest` (a digest file
    stored), `cloudwatch` (a PutLogEvents batch). The topic is compacted and keyed
    `<trail ARN>|<region>|<kind>|<ok or error>`, so it keeps, per trail, region and kind, both the latest success
    and the latest error; the value is `{"trailARN", "region", "kind", "time" (epoch seconds), "error" (a message,
    or null for a success)}`.
    """

    trail_arn: str
    region: str
    kind: str
    time: float
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.trail_arn}|{self.region}|{self.kind}|{'ok' if self.error is None else 'error'}"

    def encode(self) -> bytes:
        return orjson.dumps({"trailARN": self.trail_arn, "region": self.region, "kind": self.kind,
                             "time": self.time, "error": self.error})

    @classmethod
    def decode(cls, value: bytes) -> TrailStatusUpdate:
        """A status record; `ValueError` when it is not one."""
        document = orjson.loads(value)
        if not isinstance(document, dict):
            raise ValueError("trail status: must be a JSON object")
        trail_arn, region, kind = document.get("trailARN"), document.get("region"), document.get("kind")
        moment, error = document.get("time"), document.get("error")
        if not (isinstance(trail_arn, str) and isinstance(region, str) and kind in STATUS_KINDS):
            raise ValueError("trail status: trailARN and region must be strings, kind one of "
                             + ", ".join(STATUS_KINDS))
        if isinstance(moment, bool) or not isinstance(moment, int | float) or not (
                error is None or isinstance(error, str)):
            raise ValueError("trail status: time must be epoch seconds and error a string or null")
        return cls(trail_arn, region, kind, float(moment), error)


def record_category(record: Mapping[str, Any]) -> str:
    """The record's eventCategory (`Management`, `Data`, `NetworkActivity`, `Insight`); a record without one
    (before eventVersion 1.07) is `Data` when `managementEvent` is false, else `Management`."""
    category = record.get("eventCategory")
    if category is None:
        return "Data" if record.get("managementEvent") is False else "Management"
    return str(category)


def event_time_ms(event_time: str) -> int:
    """An ISO-8601 `eventTime` (`2024-08-01T13:33:28Z`, fractions allowed) in ms since the epoch, exactly."""
    moment = datetime.fromisoformat(event_time)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS


def event_minute(event_time: str) -> int:
    """The minute since the epoch that `eventTime` falls in."""
    return event_time_ms(event_time) // 60_000


def scan_event_time(json_record: bytes) -> str:
    """The top-level `eventTime` of a compact JSON record (as the processors deliver it), without parsing it.

    The byte pattern `"eventTime":"` cannot occur inside a JSON string (its quotes would be escaped), so it
    marks a member named eventTime. Every record the processors deliver has passed validation, so it has a
    top-level eventTime: when the pattern occurs once, that is it; when a nested object has a member of that
    name too (or the value holds an escape), the record is parsed in full instead. A record without a
    top-level eventTime is not a delivery record; the scan may then return a nested one.
    """
    start = json_record.find(_EVENT_TIME_MARK)
    if start < 0 or json_record.find(_EVENT_TIME_MARK, start + 1) >= 0:
        return parse_event_time(json_record)
    start += len(_EVENT_TIME_MARK)
    end = json_record.index(b'"', start)
    if json_record.find(b"\\", start, end) >= 0:
        return parse_event_time(json_record)
    return json_record[start:end].decode()


def parse_event_time(json_record: bytes) -> str:
    """The top-level `eventTime` of a JSON record, by a full parse; `ValueError` when it has none."""
    document = orjson.loads(json_record)
    if not isinstance(document, dict) or "eventTime" not in document:
        raise ValueError("eventTime: missing (a record is a JSON object with a top-level eventTime)")
    value = document["eventTime"]
    if not isinstance(value, str):
        raise ValueError(f"eventTime: must be an ISO-8601 timestamp string (got a {type(value).__name__})")
    return value
