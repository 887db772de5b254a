"""The Kafka topics kafkatrail uses (DESIGN.md), created idempotently with the AdminClient."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kafkatrail.settings import Settings

ADMIN_TIMEOUT_S = 30


def topic_specs(settings: Settings) -> list[NewTopic]:
    """One NewTopic per default topic; the trails topic is compacted (latest definition per trail wins)."""
    names = settings.topics
    specs = []
    for name in (names.events, names.dlq, names.delivery, names.insights, names.notifications, names.trails):
        config = {"cleanup.policy": "compact"} if name == names.trails else {}
        specs.append(NewTopic(name, num_partitions=settings.topic_partitions,
                              replication_factor=settings.topic_replication_factor, config=config))
    return specs


def create_topics(settings: Settings) -> dict[str, str]:
    """Create the default topics that do not exist yet; returns 'created' or 'exists' per topic."""
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
