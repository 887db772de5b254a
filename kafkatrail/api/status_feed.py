"""Follows the compacted trail-status topic (`kafkatrail.schemas.contract.TrailStatusUpdate`) for GetTrailStatus."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import reader, until_end
from kafkatrail.schemas.contract import TrailStatusUpdate

log = logging.getLogger(__name__)


class StatusFeed:
    """Calls `on_update` for each status record, from the start of the topic, then as they arrive."""

    def __init__(self, settings: Settings, on_update: Callable[[TrailStatusUpdate], None]) -> None:
        self.topic = settings.topics.trail_status
        self.on_update = on_update
        self._consumer = reader(settings, "trail-status")
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        self._partitions = sorted(metadata.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])

    def catch_up(self, timeout_s: float = 30.0) -> None:
        for message in until_end(self._consumer, self._partitions, timeout_s, f"trail-status topic {self.topic}"):
            self._apply(message)

    def poll(self) -> None:
        for message in self._consumer.consume(500, timeout=0):
            self._apply(message)

    def _apply(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("trail-status topic: consumer error", extra={"error": error.str()})
            return
        value = message.value()
        if value is None:
            return
        try:
            self.on_update(TrailStatusUpdate.decode(value))
        except ValueError as exc:
            log.warning("ignored an unreadable trail status record", extra={"offset": message.offset(),
                                                                              "reason": str(exc)[:200]})

    def close(self) -> None:
        self._consumer.close()
