"""`kafkatrail status`: where the pipeline stands, read from Kafka alone, as three tables.

- each role's consumer group: its members and state, then per topic it reads the offsets committed, the end
  offsets (read_committed: the last stable offset) and the lag between them (AdminClient);
- per trail: the last log file the S3 sink stored (time, source region) and its last delivery error when
  that is newer;
- per digest chain (trail and source region): the last digest stored.

The last two come from the compacted trail-status topic the sinks report each outcome on (the same records
GetTrailStatus answers from), so no bucket is listed and a trail whose bucket is in another account shows too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import reader, until_end
from kafkatrail.schemas.contract import TrailStatusUpdate
from kafkatrail.trails.topic import current_trails_and_origins

ADMIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class GroupLag:
    """One role's consumer group on one topic it reads."""

    role: str
    group_id: str
    topic: str
    members: int
    state: str
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return self.end - self.committed


def role_topics(settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """role -> (its consumer group, the topics it consumes)."""
    topics = settings.topics
    events = [topics.source(source.name) for source in settings.processors.sources] or [topics.events]
    return {
        "processors": (settings.processors.group_id, events),
        "insights": (settings.insights.group_id, [topics.delivery]),
        "s3": (settings.s3.group_id, [topics.delivery]),
        "cloudwatch": (settings.cloudwatch.group_id, [topics.delivery]),
        "digests": (settings.digests.group_id, [topics.s3_journal]),
        "s3-insights": (settings.s3_insights.group_id, [topics.insights]),
        "cloudwatch-insights": (settings.cloudwatch_insights.group_id, [topics.insights]),
        "history": (settings.history.group_id, [topics.history]),
    }


def group_lags(settings: Settings, timeout_s: float = ADMIN_TIMEOUT_S) -> list[GroupLag]:
    """Every role's group: members, state, and committed and end offsets summed per topic."""
    admin = AdminClient(kafka_config(settings))
    roles = role_topics(settings)
    metadata = admin.list_topics(timeout=timeout_s).topics
    partitions = {topic: [TopicPartition(topic, p) for p in metadata[topic].partitions]
                  for _, topics in roles.values() for topic in topics if topic in metadata}
    ends = {tp: 0 for tps in partitions.values() for tp in tps}
    if ends:
        offsets = admin.list_offsets({tp: OffsetSpec.latest() for tp in ends},
                                     isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s)
        ends = {tp: future.result().offset for tp, future in offsets.items()}
    groups = sorted({group for group, _ in roles.values()})
    described = admin.describe_consumer_groups(groups, request_timeout=timeout_s)
    lags = []
    for role, (group, topics) in roles.items():
        description = described[group].result()
        committed: dict[tuple[str, int], int] = {}
        wanted = [tp for topic in topics for tp in partitions.get(topic, [])]
        if wanted:
            request = [ConsumerGroupTopicPartitions(group, wanted)]
            answer = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group].result()
            committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in answer.topic_partitions}
        for topic in topics:
            tps = partitions.get(topic, [])
            lags.append(GroupLag(role, group, topic, len(description.members), description.state.name.lower(),
                                 sum(committed.get((tp.topic, tp.partition), 0) for tp in tps),
                                 sum(ends[tp] for tp in tps)))
    return lags


def latest_outcomes(settings: Settings, timeout_s: float = ADMIN_TIMEOUT_S) -> dict[str, TrailStatusUpdate]:
    """The trail-status topic's latest record per key (trail, region, kind, ok or error)."""
    topic = settings.topics.trail_status
    consumer = reader(settings, "status")
    try:
        found = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if found is None or found.error is not None:
            return {}
        consumer.assign([TopicPartition(topic, p, 0) for p in found.partitions])
        latest = {}
        for message in until_end(consumer, found.partitions, timeout_s, "the trail-status topic"):
            if message.value() is None:
                continue
            try:
                update = TrailStatusUpdate.decode(message.value())
            except ValueError:
                continue
            latest[update.key] = update
        return latest
    finally:
        consumer.close()


def _when(moment: float | None, now: float) -> tuple[str, str]:
    """(UTC time, age) columns of an epoch-seconds moment; dashes for never."""
    if moment is None:
        return "never", "-"
    age = max(now - moment, 0)
    shown = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.1f} h"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), shown


def table(header: list[str], rows: list[list[str]]) -> Iterator[str]:
    """Left-aligned columns, as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        yield "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


def status_lines(settings: Settings, now: float, timeout_s: float = ADMIN_TIMEOUT_S) -> Iterator[str]:
    """The three tables of `kafkatrail status`."""
    yield from table(["ROLE", "GROUP", "MEMBERS", "STATE", "TOPIC", "COMMITTED", "END", "LAG"],
                     [[lag.role, lag.group_id, str(lag.members), lag.state, lag.topic, str(lag.committed),
                       str(lag.end), str(lag.lag)] for lag in group_lags(settings, timeout_s)])
    outcomes = latest_outcomes(settings, timeout_s).values()
    trails, _ = current_trails_and_origins(settings)
    files: dict[str, TrailStatusUpdate] = {}
    errors: dict[str, TrailStatusUpdate] = {}
    digests: dict[tuple[str, str], TrailStatusUpdate] = {}
    for update in outcomes:
        if update.kind == "delivery":
            latest = files if update.error is None else errors
            if update.trail_arn not in latest or latest[update.trail_arn].time < update.time:
                latest[update.trail_arn] = update
        elif update.kind == "digest" and update.error is None:
            digests[update.trail_arn, update.region] = update
    rows = []
    for arn in sorted(set(trails) | set(files) | set(errors)):
        stored = files.get(arn)
        when, age = _when(stored.time if stored else None, now)
        error = errors.get(arn)
        newer_error = error.error if error and (stored is None or error.time > stored.time) else "-"
        rows.append([arn, when, age, stored.region if stored else "-", str(newer_error)[:80]])
    yield ""
    yield from table(["TRAIL", "LAST LOG FILE (UTC)", "AGE", "REGION", "LAST ERROR (newer than the file)"], rows)
    yield ""
    chains = [[arn, region, *_when(update.time, now)] for (arn, region), update in sorted(digests.items())]
    yield from table(["DIGEST CHAIN (TRAIL)", "REGION", "LAST DIGEST (UTC)", "AGE"],
                     chains or [["(no digest yet)", "-", "-", "-"]])
