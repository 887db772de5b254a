"""The Kafka topics kafkatrail uses (DESIGN.md), created idempotently with the AdminClient."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kafkatrail.settings import Settings

ADMIN_TIMEOUT_S = 30
JOURNAL_RETENTION_MS = 30 * 86_400_000


def topic_specs(settings: Settings) -> list[NewTopic]:
    """One NewTopic per topic of the pipeline.

    The trails topic is compacted (latest definition per trail wins). The processors' dedupe changelog
    keeps what the dedupe window needs, plus one bucket, and must have as many partitions as the events
    topic: changelog partition p holds the state of events partition p. The S3 sink's journals (which
    files hold which delivery records, and which Insights files hold which Insights records) are kept
    30 days, as long as CloudTrail retries a delivery.
    The Insights state changelog is compacted (latest state per unit wins) and must have as many
    partitions as the delivery topic: changelog partition p holds the detector of delivery partition p.
    """
    names = settings.topics
    processors = settings.processors
    changelog_retention_ms = (processors.dedupe_window_s + processors.dedupe_bucket_s) * 1000
    configs = {
        names.trails: {"cleanup.policy": "compact"},
        names.dedupe_changelog: {"cleanup.policy": "delete", "retention.ms": str(changelog_retention_ms)},
        names.s3_journal: {"cleanup.policy": "delete", "retention.ms": str(JOURNAL_RETENTION_MS)},
        names.s3_insight_journal: {"cleanup.policy": "delete", "retention.ms": str(JOURNAL_RETENTION_MS)},
        names.insights_changelog: {"cleanup.policy": "compact"},
    }
    return [
        NewTopic(name, num_partitions=settings.topic_partitions,
                 replication_factor=settings.topic_replication_factor, config=configs.get(name, {}))
        for name in (names.events, names.dlq, names.delivery, names.insights, names.notifications, names.trails,
                     names.dedupe_changelog, names.insights_changelog, names.s3_journal,
                     names.s3_insight_journal)
    ]


def create_topics(settings: Settings) -> dict[str, str]:
    """Create the topics that do not exist yet; returns 'created' or 'exists' per topic."""
    admin = AdminClient(settings.kafka_config())
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
