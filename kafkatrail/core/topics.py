"""The Kafka topics kafkatrail uses (docs/architecture.md §2.1): creating them idempotently, reading partitions
to their end, and how far a consumer group has read."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings

ADMIN_TIMEOUT_S = 30
JOURNAL_RETENTION_MS = 30 * 86_400_000
# librdkafka's partitioner for keyed records, Java's default: `key_partition` computes the same partition
KEYED_PARTITIONER = "murmur2_random"


def topic_specs(settings: Settings) -> list[NewTopic]:
    """One NewTopic per topic of the pipeline.

    The events topic stamps records with the broker's clock (`LogAppendTime`): the dedupe window advances on
    it, never on a producer's clock.
    The trails topic is compacted (latest definition per trail wins). The processors' dedupe changelog
    keeps what the dedupe window needs, plus one bucket, and must have as many partitions as the events
    topic: changelog partition p holds the state of events partition p. The S3 sink's journals (which
    files hold which delivery records, and which Insights files hold which Insights records) are kept
    30 days, as long as CloudTrail retries a delivery. `delivery-failures` tells operators and tools which
    log files are parked (`kafkatrail.schemas.contract.DeliveryFailure`).
    The Insights state changelog is compacted (latest state per unit wins) and must have as many
    partitions as the delivery topic: changelog partition p holds the detector of delivery partition p.
    Each of `processors.sources` adds its events topic and that topic's own dedupe changelog.
    The trail-status topic is compacted: the latest success and error per trail, region and kind
    (`kafkatrail.schemas.contract.TrailStatusUpdate`), which the API's GetTrailStatus reports.
    The history topic carries each accepted management event once, keyed by eventID, to the event-history
    store (`kafkatrail.sinks.history`); the store, not the topic, keeps the 90 days, so it keeps the broker's
    default retention.
    """
    names = settings.topics
    processors = settings.processors
    changelog_retention_ms = (processors.dedupe_window_s + processors.dedupe_bucket_s) * 1000
    dedupe_changelog = {"cleanup.policy": "delete", "retention.ms": str(changelog_retention_ms)}
    sources = [name for source in processors.sources
               for name in (names.source(source.name), names.source_changelog(source.name))]
    configs = {
        names.events: {"message.timestamp.type": "LogAppendTime"},
        **{names.source(source.name): {"message.timestamp.type": "LogAppendTime"} for source in processors.sources},
        names.trails: {"cleanup.policy": "compact"},
        names.dedupe_changelog: dedupe_changelog,
        **{names.source_changelog(source.name): dedupe_changelog for source in processors.sources},
        names.s3_journal: {"cleanup.policy": "delete", "retention.ms": str(JOURNAL_RETENTION_MS)},
        names.s3_insight_journal: {"cleanup.policy": "delete", "retention.ms": str(JOURNAL_RETENTION_MS)},
        names.insights_changelog: {"cleanup.policy": "compact"},
        names.trail_status: {"cleanup.policy": "compact"},
    }
    return [
        NewTopic(name, num_partitions=settings.topic_partitions,
                 replication_factor=settings.topic_replication_factor, config=configs.get(name, {}))
        for name in (names.events, names.dlq, names.delivery, names.insights, names.notifications, names.trails,
                     names.dedupe_changelog, names.insights_changelog, names.s3_journal,
                     names.s3_insight_journal, names.delivery_failures, names.trail_status, names.history, *sources)
    ]


def key_partition(key: bytes, partitions: int) -> int:
    """The partition `KEYED_PARTITIONER` sends a record keyed `key` to: Kafka's murmur2, positive, modulo
    `partitions` (so a delivery key's partition is known without producing)."""
    m, length = 0x5BD1E995, len(key)
    h = 0x9747B28C ^ length
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little") * m & 0xFFFFFFFF
        k = (k ^ k >> 24) * m & 0xFFFFFFFF
        h = (h * m & 0xFFFFFFFF) ^ k
    tail = key[length - length % 4:]
    if tail:
        for index in range(len(tail) - 1, -1, -1):
            h ^= tail[index] << (8 * index)
        h = h * m & 0xFFFFFFFF
    h = (h ^ h >> 13) * m & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def create_topics(settings: Settings) -> dict[str, str]:
    """Create the topics that do not exist yet; returns 'created' or 'exists' per topic."""
    admin = AdminClient(kafka_config(settings))
    outcome = {}
    for name, future in admin.create_topics(topic_specs(settings), request_timeout=ADMIN_TIMEOUT_S).items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
            outcome[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            outcome[name] = "exists"
    return outcome


def reader(settings: Settings, purpose: str, isolation: str = "read_committed") -> Consumer:
    """A consumer for `assign()` only: no group membership, no commits, and an end-of-partition event."""
    return Consumer(kafka_config(settings, **{
        "group.id": f"kafkatrail-{purpose}-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    }))


def until_end(consumer: Consumer, partitions: Iterable[int], timeout_s: float, what: str) -> Iterator[Message]:
    """The messages of `partitions` (assigned to `consumer`, which reports end-of-partition) until each has
    been read to its end; raises on a consumer error or when `timeout_s` passes first."""
    pending = set(partitions)
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: partitions {sorted(pending)} not read to their end within {timeout_s:.0f} s")
        for message in consumer.consume(10_000, timeout=0.5):
            error = message.error()
            if error is None:
                yield message
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            else:
                raise KafkaException(error)


def group_progress(settings: Settings, group_id: str, topic: str) -> tuple[int, int]:
    """(offsets `group_id` has committed in `topic`, the topic's end offsets), summed over its partitions."""
    consumer = Consumer(kafka_config(settings, **{"group.id": group_id}))
    try:
        partitions = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=ADMIN_TIMEOUT_S))
        end = sum(consumer.get_watermark_offsets(tp, timeout=ADMIN_TIMEOUT_S)[1] for tp in tps)
        return committed, end
    finally:
        consumer.close()
