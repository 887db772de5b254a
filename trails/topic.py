"""The compacted trails topic: publishing a trails file to it, and following it from a worker.

Key: the trail ARN; value: the trail's document (`Trail.to_document()`); a tombstone deletes the trail.
Every worker reads the whole topic at start (`TrailFeed.catch_up`) before it processes any event, then
keeps polling it, so a changed trail takes effect without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, Producer, TopicPartition

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import reader, until_end
from kafkatrail.trails.errors import TrailError
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

TrailChange = Callable[[str, Trail | None], None]


class TrailFeed:
    """Follows the trails topic; calls `on_change(arn, trail)` for each definition, `trail=None` for a deletion."""

    def __init__(self, settings: Settings, on_change: TrailChange) -> None:
        self.topic = settings.topics.trails
        self.on_change = on_change
        self._consumer = reader(settings, "trail-feed")
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        self._partitions = sorted(metadata.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Apply everything on the topic now; returns once every partition has been read to its end."""
        for message in until_end(self._consumer, self._partitions, timeout_s, f"trails topic {self.topic}"):
            self._apply(message)

    def poll(self) -> None:
        """Apply whatever arrived since the last call, without waiting."""
        for message in self._consumer.consume(500, timeout=0):
            self._apply(message)

    def _apply(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("trails topic: consumer error", extra={"error": error.str()})
            return
        arn = (message.key() or b"").decode()
        value = message.value()
        if value is None:
            self.on_change(arn, None)
            return
        try:
            trail = Trail.from_document(orjson.loads(value))
        except (TrailError, orjson.JSONDecodeError) as exc:
            log.error("ignored an invalid trail definition on the trails topic",
                      extra={"trail_arn": arn, "offset": message.offset(), "reason": str(exc)})
            return
        if trail.arn != arn:
            log.error("ignored a trail definition whose key is not its ARN", extra={"key": arn, "arn": trail.arn})
            return
        self.on_change(arn, trail)

    def close(self) -> None:
        self._consumer.close()


def current_trails(settings: Settings) -> dict[str, Trail]:
    """The trails the topic holds now, by ARN."""
    trails: dict[str, Trail] = {}

    def change(arn: str, trail: Trail | None) -> None:
        if trail is None:
            trails.pop(arn, None)
        else:
            trails[arn] = trail

    feed = TrailFeed(settings, change)
    try:
        feed.catch_up()
    finally:
        feed.close()
    return trails


def apply_trails(settings: Settings, trails: Iterable[Trail], timeout_s: float = 30.0) -> dict[str, str]:
    """Make the topic hold exactly `trails`: publish each changed one and delete the rest.

    Returns what happened per trail ARN: created, updated, unchanged or deleted.
    """
    wanted = {trail.arn: trail for trail in trails}
    present = current_trails(settings)
    outcome: dict[str, str] = {}
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{(message.key() or b'').decode()}: {error.str()}")

    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    for arn, trail in wanted.items():
        before = present.get(arn)
        if before is not None and before.to_document() == trail.to_document():
            outcome[arn] = "unchanged"
            continue
        producer.produce(settings.topics.trails, key=arn.encode(), value=orjson.dumps(trail.to_document()),
                         on_delivery=delivered)
        outcome[arn] = "updated" if before is not None else "created"
    for arn in present.keys() - wanted.keys():
        producer.produce(settings.topics.trails, key=arn.encode(), value=None, on_delivery=delivered)
        outcome[arn] = "deleted"
    unsent = producer.flush(timeout_s)
    producer.close()
    if failures or unsent:
        raise KafkaException(KafkaError(KafkaError._FAIL, "trails not published: " + "; ".join(
            failures or [f"{unsent} definition(s) unacknowledged after {timeout_s:.0f} s"])))
    return outcome
