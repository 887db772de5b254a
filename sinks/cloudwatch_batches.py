"""CloudWatch Logs delivery as pure logic (docs/cloudtrail.md §8): where a record goes and how it is batched.

Destination
    The log group is the one named by the trail's ``CloudWatchLogsLogGroupArn`` (with or without the
    trailing ``:*`` AWS examples carry), in the region of that ARN. The stream is
    ``<account>_CloudTrail_<region>`` for the account and region of the delivered records (docs/cloudtrail.md §8).
    Organization trails: streams start with the organization id, ``<orgId>_<account>_CloudTrail_<region>``
    (the trail's ``OrganizationId``); a trail file without one names the organization by its management
    account, the account that owns the organization trail, so a role policy on ``log-stream:<trail account>_*``
    covers it and a member account's stream never collides with a stream of a non-organization trail
    writing to the same group. The ``_<n>`` suffix AWS adds under high volume is not used: PutLogEvents no
    longer needs a sequence token, so one stream takes parallel calls.

Batches
    One PutLogEvents call takes 1 to 10,000 events whose Σ(UTF-8 bytes of the message + 26) is at most
    1,048,576, in non-decreasing timestamp order, spanning at most 24 h. :func:`plan_batches` sorts a
    stream's pending events by timestamp (the record's ``eventTime`` in epoch ms; stable, so records of one
    second keep their arrival order) and cuts greedily, which gives the fewest calls for that order.
    Records above 262,144 bytes (256 KB, CloudTrail's own cap for CloudWatch Logs) are set apart, not sent;
    they still reach S3 through the S3 sink.

Offsets
    :class:`PendingOffsets` tracks, per partition of the delivery topic, which read records are not yet sent
    or deliberately skipped, so the sink never commits past a record it still owes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

import orjson

from kafkatrail.schemas.contract import event_time_ms, scan_event_time
from kafkatrail.trails.model import Trail

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_BATCH_SPAN_MS = 24 * 3_600_000
MAX_MESSAGE_BYTES = 262_144

_LOG_GROUP_ARN = re.compile(r"arn:[a-z0-9-]+:logs:(?P<region>[a-z0-9-]+):[0-9]{12}:log-group:(?P<name>[^:]+)(?::\*)?")


class Destination(NamedTuple):
    """One log stream: the log group's region and name, and the stream's name."""

    region: str
    log_group: str
    stream: str


def log_group_of(arn: str) -> tuple[str, str]:
    """(region, log group name) of a CloudWatchLogsLogGroupArn, with or without the trailing ``:*``."""
    match = _LOG_GROUP_ARN.fullmatch(arn)
    if match is None:
        raise ValueError(f"CloudWatchLogsLogGroupArn: must be arn:<partition>:logs:<region>:<account>:"
                         f"log-group:<name>[:*] (got {arn!r})")
    return match["region"], match["name"]


def stream_name(trail: Trail, account: str, region: str) -> str:
    """The stream of one account and region: ``<account>_CloudTrail_<region>``, prefixed for organization trails
    by the organization id (``<orgId>_<account>_CloudTrail_<region>``), or the trail's account without one."""
    name = f"{account}_CloudTrail_{region}"
    if not trail.is_organization_trail:
        return name
    return f"{trail.organization_id or trail.account_id}_{name}"


def destination(trail: Trail, account: str, region: str) -> Destination | None:
    """Where the trail's records of `account` and `region` go; None when the trail has no log group."""
    if trail.cloud_watch_logs_log_group_arn is None:
        return None
    group_region, group = log_group_of(trail.cloud_watch_logs_log_group_arn)
    return Destination(group_region, group, stream_name(trail, account, region))


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One record waiting for PutLogEvents, with the delivery-topic position it came from."""

    timestamp: int  # the record's eventTime, ms since the epoch
    message: str  # the record's JSON, exactly as it is on the delivery topic
    size: int  # UTF-8 bytes of message
    partition: int
    offset: int

    @classmethod
    def from_record(cls, value: bytes, partition: int = 0, offset: int = 0) -> PendingEvent:
        """The event for a delivery-topic value; raises ValueError naming what is wrong with it."""
        try:
            message = value.decode("utf-8")
            event_time = scan_event_time(value)
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"record: not UTF-8 JSON ({exc})") from None
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        try:
            timestamp = event_time_ms(event_time)
        except ValueError:
            raise ValueError(f"eventTime: must be an ISO-8601 timestamp (got {event_time[:40]!r})") from None
        return cls(timestamp, message, len(value), partition, offset)

    @property
    def cost(self) -> int:
        """What the event counts against PutLogEvents' 1,048,576-byte batch size."""
        return self.size + EVENT_OVERHEAD_BYTES


@dataclass
class BatchPlan:
    """PutLogEvents batches for one stream, in timestamp order, and the records too large to send."""

    batches: list[list[PendingEvent]] = field(default_factory=list)
    oversize: list[PendingEvent] = field(default_factory=list)


def plan_batches(events: Iterable[PendingEvent]) -> BatchPlan:
    """Sort one stream's events by timestamp (stably) and cut them into batches PutLogEvents accepts."""
    plan = BatchPlan()
    batch: list[PendingEvent] = []
    batch_bytes = 0
    for event in sorted(events, key=attrgetter("timestamp")):
        if event.size > MAX_MESSAGE_BYTES:
            plan.oversize.append(event)
            continue
        if batch and (len(batch) == MAX_BATCH_EVENTS or batch_bytes + event.cost > MAX_BATCH_BYTES
                      or event.timestamp - batch[0].timestamp > MAX_BATCH_SPAN_MS):
            plan.batches.append(batch)
            batch, batch_bytes = [], 0
        batch.append(event)
        batch_bytes += event.cost
    if batch:
        plan.batches.append(batch)
    return plan


def rejected_events(info: Mapping[str, int], count: int) -> dict[int, str]:
    """Index -> reason of the events a PutLogEvents response's ``rejectedLogEventsInfo`` refused.

    Per the logs model, ``tooNewLogEventStartIndex`` is inclusive and the two end indexes are exclusive.
    An old event both expired (retention) and too old (14 days) is counted once, as too old.
    """
    rejected: dict[int, str] = {}
    too_old_end = min(info.get("tooOldLogEventEndIndex", 0), count)
    expired_end = min(info.get("expiredLogEventEndIndex", 0), count)
    for index in range(max(too_old_end, expired_end)):
        rejected[index] = "rejected_too_old" if index < too_old_end else "rejected_expired"
    if "tooNewLogEventStartIndex" in info:
        for index in range(max(info["tooNewLogEventStartIndex"], 0), count):
            rejected[index] = "rejected_too_new"
    return rejected


class PendingOffsets:
    """Per partition: the offsets read but not yet settled, and how far a commit may go."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[int, None]] = {}  # insertion order = offset order
        self._next: dict[int, int] = {}

    def read(self, partition: int, offset: int, pending: bool) -> None:
        """Record that `offset` was read (in offset order); `pending` if it still has to be sent."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        if pending:
            self._pending.setdefault(partition, {})[offset] = None

    def reached(self, partition: int, end_offset: int) -> None:
        """The consumer reported the end of `partition` at `end_offset`: every record below it was read.

        The end-of-partition event is queued behind every record fetched before it, so this steps over the
        transaction markers that end the delivery topic's partitions without trusting `position()`."""
        self._next[partition] = max(self._next.get(partition, end_offset), end_offset)

    def settle(self, partition: int, offset: int) -> None:
        """The record at `offset` was sent or deliberately skipped."""
        pending = self._pending.get(partition)
        if pending is not None:
            pending.pop(offset, None)
            if not pending:
                del self._pending[partition]

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known about `partitions` (they were revoked or lost)."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._next.pop(partition, None)

    def positions(self) -> dict[int, int]:
        """Per partition, the offset a commit may name: the oldest pending record, else the next one to read."""
        return {partition: next(iter(self._pending[partition])) if partition in self._pending else after
                for partition, after in self._next.items()}

    def __len__(self) -> int:
        return sum(len(pending) for pending in self._pending.values())
