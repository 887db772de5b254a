"""CloudWatch Logs batching at and just over every PutLogEvents limit; stream and group names; offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from kafkatrail.schemas.contract import event_time_ms
from kafkatrail.sinks.cloudwatch_batches import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_MESSAGE_BYTES,
    Destination,
    PendingEvent,
    PendingOffsets,
    destination,
    log_group_of,
    plan_batches,
    rejected_events,
)
from kafkatrail.trails.model import Trail

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = event_time_ms("2024-05-01T00:00:00Z")
BARE = len(orjson.dumps({"eventTime": "2024-05-01T00:00:00.000Z", "pad": ""}))  # bytes of a record without padding


def record(at_ms: int = T0, size: int | None = None, pad_char: str = "a") -> bytes:
    """A record with eventTime `at_ms` whose JSON is exactly `size` UTF-8 bytes (padded with `pad_char`, then "a")."""
    stamp = f"{EPOCH + timedelta(milliseconds=at_ms):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"
    if size is None:
        return orjson.dumps({"eventTime": stamp, "pad": ""})
    count, remainder = divmod(size - BARE, len(pad_char.encode()))
    value = orjson.dumps({"eventTime": stamp, "pad": pad_char * count + "a" * remainder})
    assert len(value) == size
    return value


def events(*values: bytes) -> list[PendingEvent]:
    return [PendingEvent.from_record(value, 0, offset) for offset, value in enumerate(values)]


def batch_sizes(values: list[bytes]) -> list[int]:
    return [len(batch) for batch in plan_batches(events(*values)).batches]


# Each case: the records of one stream, and the sizes of the batches PutLogEvents gets.
PER_EVENT_BYTES = MAX_BATCH_BYTES // 4 - EVENT_OVERHEAD_BYTES  # four of these fill a batch exactly
CASES = {
    "empty input: no call": ([], []),
    "one event": ([record()], [1]),
    "10,000 events: one call": ([record()] * MAX_BATCH_EVENTS, [MAX_BATCH_EVENTS]),
    "10,001 events: two calls": ([record()] * (MAX_BATCH_EVENTS + 1), [MAX_BATCH_EVENTS, 1]),
    "bytes + 26 each exactly 1,048,576: one call": ([record(size=PER_EVENT_BYTES)] * 4, [4]),
    "one byte over 1,048,576: two calls": (
        [record(size=PER_EVENT_BYTES)] * 3 + [record(size=PER_EVENT_BYTES + 1)], [3, 1]),
    "the 26 bytes count: messages alone fit, with overhead they do not": (
        [record(size=MAX_BATCH_BYTES // 4)] * 4, [3, 1]),
    "multi-byte UTF-8 counted in bytes, exactly at the limit": (
        [record(size=PER_EVENT_BYTES, pad_char="é")] * 3 + [record(size=PER_EVENT_BYTES, pad_char="€")], [4]),
    "multi-byte UTF-8 one byte over": (
        [record(size=PER_EVENT_BYTES, pad_char="é")] * 3 + [record(size=PER_EVENT_BYTES + 1, pad_char="é")],
        [3, 1]),
    "span exactly 24 h: one call": ([record(T0), record(T0 + MAX_BATCH_SPAN_MS)], [2]),
    "span 24 h + 1 ms: two calls": ([record(T0), record(T0 + MAX_BATCH_SPAN_MS + 1)], [1, 1]),
    "span is measured from the batch's oldest event": (
        [record(T0), record(T0 + MAX_BATCH_SPAN_MS), record(T0 + MAX_BATCH_SPAN_MS + 1),
         record(T0 + 2 * MAX_BATCH_SPAN_MS + 1)], [2, 2]),
    "message of exactly 262,144 bytes is sent": ([record(size=MAX_MESSAGE_BYTES)], [1]),
    "message of 262,145 bytes is skipped": ([record(size=MAX_MESSAGE_BYTES + 1)], []),
}


@pytest.mark.parametrize(("values", "expected"), CASES.values(), ids=CASES.keys())
def test_batch_limits(values: list[bytes], expected: list[int]) -> None:
    assert batch_sizes(values) == expected


@pytest.mark.parametrize(("size", "pad_char", "skipped"), [
    (MAX_MESSAGE_BYTES, "a", False),
    (MAX_MESSAGE_BYTES + 1, "a", True),
    (MAX_MESSAGE_BYTES, "é", False),        # 262,144 bytes, far fewer characters
    (MAX_MESSAGE_BYTES + 1, "é", True),
])
def test_oversize_records_are_set_apart(size: int, pad_char: str, skipped: bool) -> None:
    oversize = record(T0 + 1, size=size, pad_char=pad_char)
    plan = plan_batches(events(record(T0), oversize, record(T0 + 2)))
    assert [e.offset for e in plan.oversize] == ([1] if skipped else [])
    assert [e.offset for batch in plan.batches for e in batch] == ([0, 2] if skipped else [0, 1, 2])
    assert (len(oversize.decode()) < size) == (pad_char != "a")


def test_out_of_order_input_is_sorted_stably() -> None:
    times = [T0 + 5_000, T0, T0 + 5_000, T0 - 3_000, T0]
    plan = plan_batches(events(*(record(t) for t in times)))
    (batch,) = plan.batches
    assert [e.timestamp for e in batch] == sorted(times)
    assert [e.offset for e in batch] == [3, 1, 4, 0, 2]  # equal timestamps keep their arrival order


def test_every_batch_respects_every_limit() -> None:
    values = [record(T0 + (i * 7_919_000) % (3 * MAX_BATCH_SPAN_MS), size=BARE + (i * 37) % 3_000)
              for i in range(25_000)]
    plan = plan_batches(events(*values))
    assert sum(len(b) for b in plan.batches) == len(values)
    for batch in plan.batches:
        assert 1 <= len(batch) <= MAX_BATCH_EVENTS
        assert sum(len(e.message.encode()) + EVENT_OVERHEAD_BYTES for e in batch) <= MAX_BATCH_BYTES
        assert [e.timestamp for e in batch] == sorted(e.timestamp for e in batch)
        assert batch[-1].timestamp - batch[0].timestamp <= MAX_BATCH_SPAN_MS


def test_message_is_the_record_as_given() -> None:
    value = b'{"eventTime":"2024-05-01T00:00:01Z","userAgent":"caf\xc3\xa9","eventName":"GetObject"}'
    event = PendingEvent.from_record(value, 3, 42)
    assert (event.timestamp, event.message, event.size, event.partition, event.offset) == (
        T0 + 1_000, value.decode(), len(value), 3, 42)


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T00:00:00Z", T0),
    ("2024-05-01T00:00:00.001Z", T0 + 1),
    ("2024-05-01T00:00:00.999999Z", T0 + 999),
    ("1970-01-01T00:00:00Z", 0),
])
def test_event_time_ms(text: str, expected: int) -> None:
    assert event_time_ms(text) == expected


@pytest.mark.parametrize(("value", "message"), [
    (b"not json", "record: not UTF-8 JSON"),
    (b'["eventTime"]', "eventTime: missing"),
    (b'{"eventName":"x"}', "eventTime: missing"),
    (b'{"eventTime":"yesterday"}', "eventTime: must be an ISO-8601 timestamp"),
    (b'{"eventTime":17}', "eventTime: must be an ISO-8601 timestamp"),
    (b'{"eventTime":"2024-05-01T00:00:00Z","x":"\xff"}', "record: not UTF-8 JSON"),
])
def test_unreadable_records_name_the_problem(value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PendingEvent.from_record(value)


def trail(**members: object) -> Trail:
    return Trail.from_document({"Name": "audit", "HomeRegion": "us-east-1", "AccountId": "999988887777",
                                "S3BucketName": "audit-logs", **members})


GROUP_ARN = "arn:aws:logs:eu-west-1:999988887777:log-group:CloudTrail/audit-1.x#y"
ROLE_ARN = "arn:aws:iam::999988887777:role/CloudTrail_CloudWatchLogs_Role"


@pytest.mark.parametrize(("members", "expected"), [
    ({}, None),
    ({"CloudWatchLogsLogGroupArn": GROUP_ARN + ":*", "CloudWatchLogsRoleArn": ROLE_ARN},
     Destination("eu-west-1", "CloudTrail/audit-1.x#y", "111122223333_CloudTrail_ap-southeast-2")),
    ({"CloudWatchLogsLogGroupArn": GROUP_ARN, "CloudWatchLogsRoleArn": ROLE_ARN},
     Destination("eu-west-1", "CloudTrail/audit-1.x#y", "111122223333_CloudTrail_ap-southeast-2")),
    ({"CloudWatchLogsLogGroupArn": GROUP_ARN, "CloudWatchLogsRoleArn": ROLE_ARN, "IsOrganizationTrail": True},
     Destination("eu-west-1", "CloudTrail/audit-1.x#y", "999988887777_111122223333_CloudTrail_ap-southeast-2")),
    ({"CloudWatchLogsLogGroupArn": GROUP_ARN, "CloudWatchLogsRoleArn": ROLE_ARN, "IsOrganizationTrail": True,
      "OrganizationId": "o-a1b2c3d4e5"},
     Destination("eu-west-1", "CloudTrail/audit-1.x#y", "o-a1b2c3d4e5_111122223333_CloudTrail_ap-southeast-2")),
])
def test_destination(members: dict[str, object], expected: Destination | None) -> None:
    assert destination(trail(**members), "111122223333", "ap-southeast-2") == expected


@pytest.mark.parametrize("arn", [
    "arn:aws:logs:eu-west-1:999988887777:log-group:",
    "arn:aws:logs:eu-west-1:9999:log-group:audit",
    "arn:aws:s3:::audit",
    "arn:aws:logs:eu-west-1:999988887777:log-group:audit:*:extra",
])
def test_bad_log_group_arn(arn: str) -> None:
    with pytest.raises(ValueError, match="CloudWatchLogsLogGroupArn: must be"):
        log_group_of(arn)


@pytest.mark.parametrize(("info", "expected"), [
    ({}, {}),
    ({"tooOldLogEventEndIndex": 2}, {0: "rejected_too_old", 1: "rejected_too_old"}),
    ({"expiredLogEventEndIndex": 1}, {0: "rejected_expired"}),
    ({"tooOldLogEventEndIndex": 1, "expiredLogEventEndIndex": 2}, {0: "rejected_too_old", 1: "rejected_expired"}),
    ({"tooOldLogEventEndIndex": 2, "expiredLogEventEndIndex": 1}, {0: "rejected_too_old", 1: "rejected_too_old"}),
    ({"tooNewLogEventStartIndex": 3}, {3: "rejected_too_new", 4: "rejected_too_new"}),
    ({"tooNewLogEventStartIndex": 0}, dict.fromkeys(range(5), "rejected_too_new")),
    ({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 4}, {0: "rejected_too_old", 4: "rejected_too_new"}),
    ({"tooOldLogEventEndIndex": 99}, dict.fromkeys(range(5), "rejected_too_old")),
])
def test_rejected_events(info: dict[str, int], expected: dict[int, str]) -> None:
    assert rejected_events(info, 5) == expected


def test_offsets_commit_up_to_the_oldest_pending_record() -> None:
    offsets = PendingOffsets()
    assert offsets.positions() == {}
    offsets.read(0, 10, pending=False)          # skipped at once
    assert offsets.positions() == {0: 11}
    offsets.read(0, 11, pending=True)
    offsets.read(0, 12, pending=True)
    offsets.read(0, 13, pending=False)
    offsets.read(1, 5, pending=True)
    assert offsets.positions() == {0: 11, 1: 5}
    assert len(offsets) == 3
    offsets.settle(0, 12)                       # a later record sent first: still held by 11
    assert offsets.positions() == {0: 11, 1: 5}
    offsets.settle(0, 11)
    assert offsets.positions() == {0: 14, 1: 5}
    offsets.forget([1])
    assert offsets.positions() == {0: 14}
    assert len(offsets) == 0
    offsets.settle(1, 5)                        # settling a forgotten partition is harmless
    assert offsets.positions() == {0: 14}


def test_the_end_of_partition_steps_over_markers_but_never_over_a_pending_record() -> None:
    offsets = PendingOffsets()
    offsets.reached(2, 7)                       # an assigned partition with nothing to read: its end
    assert offsets.positions() == {2: 7}
    offsets.read(0, 20, pending=True)
    offsets.reached(0, 22)                      # 21 is the transaction's commit marker
    assert offsets.positions() == {0: 20, 2: 7}, "the pending record holds the commit"
    offsets.settle(0, 20)
    assert offsets.positions() == {0: 22, 2: 7}
    offsets.reached(0, 21)                      # an older end event moves nothing back
    assert offsets.positions() == {0: 22, 2: 7}
