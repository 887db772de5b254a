"""Following a compacted topic: read every partition from its start to its end, then keep polling for more.

The latest value of a key wins and a tombstone (no value) deletes the key; what a value means is the
subclass's (`kafkatrail.trails.topic.TrailFeed`, `kafkatrail.api.status_feed.StatusFeed`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import reader, until_end

log = logging.getLogger(__name__)

METADATA_ATTEMPT_S = 1.0


class CompactedFeed:
    """Hands every record of `topic` to `apply`, from the start of each partition, then as they arrive."""

    def __init__(self, settings: Settings, topic: str, what: str) -> None:
        """`what` names the topic in logs and errors and the reader's group (e.g. `trails topic`)."""
        self.topic = topic
        self.what = what
        self.positions: dict[int, int] = {}  # partition -> the offset after the last message applied
        self._consumer = reader(settings, what.replace(" ", "-"))
        metadata = self._metadata(timeout_s=30.0)
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        self._partitions = sorted(metadata.partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])

    def _metadata(self, timeout_s: float) -> Any:
        """The topic's metadata, asked for once a second until `timeout_s` has passed (then the KafkaException);
        the consumer is polled in between, which serves librdkafka's lines about a broker it cannot reach."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._consumer.list_topics(self.topic, timeout=METADATA_ATTEMPT_S).topics[self.topic]
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                self._consumer.poll(0)

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Apply everything on the topic now; returns once every partition has been read to its end."""
        for message in until_end(self._consumer, self._partitions, timeout_s, f"{self.what} {self.topic}"):
            self._take(message)

    def poll(self) -> None:
        """Apply whatever arrived since the last call, without waiting."""
        for message in self._consumer.consume(500, timeout=0):
            self._take(message)

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning(f"{self.what}: consumer error", extra={"error": error.str()})
            return
        self.positions[message.partition()] = message.offset() + 1
        self.apply(message)

    def apply(self, message: Message) -> None:
        """One record of the topic, in offset order per partition (`message.value()` is None for a tombstone)."""
        raise NotImplementedError

    def close(self) -> None:
        self._consumer.close()
