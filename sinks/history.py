"""`kafkatrail worker history`: the history topic and the Insights topic into the event-history store.

What is kept
    The processor writes every accepted management event once to the history topic, in the same Kafka
    transaction as its deliveries, dedupe changelog and offsets (`kafkatrail.processors.worker`), whether or
    not a trail selects it. The Insights worker writes Insights records to the Insights topic the same way. This
    worker stores both into the embedded store (`kafkatrail.sinks.history_store`), where LookupEvents and
    `kafkatrail history lookup` read them; data and network-activity events never reach it.

Exactly-once argument
    The store, not Kafka, holds this worker's position: each batch's records of one topic and the next offset
    of each of its partitions are written in one store transaction (`HistoryStore.append`). On assignment the
    worker starts every partition at the offset the store holds for it (the beginning if none), so:

    - a crash (SIGKILL) before the transaction commits leaves neither the records nor the new offsets: the
      next owner reads the batch again and stores it once;
    - a crash after the commit leaves both: the next owner starts after the batch;
    - a stop (SIGTERM) ends the loop after the batch in hand, whose transaction has committed;
    - a rebalance hands a partition over through the same store file: the old owner stores its batch before
      its revocation completes (one thread does both), the new owner reads the offset on assignment;
    - a zombie (an owner the group gave up on, still writing) can only write records that are in the topic,
      and the store keeps each eventID once (a unique index): a repeat is ignored, never doubled.

    The history and Insights topics are read read_committed, so an aborted processor or Insights transaction
    is never stored. The worker also commits the same offsets to Kafka after each store transaction, only so
    that consumer-group lag shows its progress; a restart never reads them.

Scale
    Every history worker of a node opens the same store file (SQLite in WAL mode serialises their writes;
    readers never wait for a writer) and owns the partitions its group assigns it; the API reads the one file,
    so a lookup sees every worker's events. A single node runs with one worker and one file.

Retention
    Every `history.purge_interval_s` the worker deletes events older than `history.retention_days` (by
    eventTime), in small transactions, so appends and lookups go on during a purge.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.runtime.worker import Worker
from kafkatrail.sinks.history_store import HistoryStore

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
SIZE_EVERY_S = 5.0


class HistoryMetrics:
    """Every metric one history worker serves on /metrics (names per docs/operations.md)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.stored = Counter("kafkatrail_history_events_stored_total",
                              "Events written to the event-history store, by source topic", ["topic"],
                              registry=registry)
        self.repeats = Counter("kafkatrail_history_events_repeated_total",
                               "Records whose eventID the store already held (ignored)", registry=registry)
        self.purged = Counter("kafkatrail_history_events_purged_total",
                              "Events deleted because they are older than history.retention_days", registry=registry)
        self.store_bytes = Gauge("kafkatrail_history_store_bytes", "Size of the store file with its write-ahead log",
                                 registry=registry)


class HistoryWorker(Worker):
    """One history worker: a member of the history group, writing the node's store file."""

    consume_max = 20_000  # per store transaction: each index page a batch touches is written once

    def __init__(self, settings: Settings, metrics: HistoryMetrics | None = None, health: Health | None = None) -> None:
        topics = settings.topics
        super().__init__(settings, settings.history, topics.history, health=health)
        self.metrics = metrics or HistoryMetrics()
        self.sources = [topics.history, topics.insights]
        self.store = HistoryStore(settings.history.store_path)
        self._stored: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset the store holds
        self._next_purge = 0.0
        self._next_size = 0.0

    def attach(self) -> None:
        self.consumer.subscribe(self.sources, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Start each partition where the store says its stored records end."""
        stored = {topic: self.store.next_offsets(topic) for topic in {tp.topic for tp in partitions}}
        for tp in partitions:
            tp.offset = stored[tp.topic].get(tp.partition, OFFSET_BEGINNING)
            self._stored[tp.topic, tp.partition] = tp.offset
        self.consumer.assign(partitions)

    def handle_batch(self, records: list[Message]) -> None:
        by_topic: dict[str, tuple[list[bytes], dict[int, int]]] = defaultdict(lambda: ([], {}))
        for message in records:
            values, next_offsets = by_topic[message.topic()]
            value = message.value()
            if value is not None:
                values.append(value)
            next_offsets[message.partition()] = message.offset() + 1
        for topic, (values, next_offsets) in by_topic.items():
            stored = self.store.append(topic, next_offsets, values)
            self._stored.update(((topic, partition), offset) for partition, offset in next_offsets.items())
            self.metrics.stored.labels(topic).inc(stored)
            self.metrics.repeats.inc(len(values) - stored)
            self._show_progress(topic, next_offsets)
        self._housekeeping()

    def reached_topic_end(self, topic: str, partition: int, offset: int) -> None:
        """At the end of a partition, store the end offset too: what lies past the last record (the markers of the
        processor's transactions) holds no event, and without this the group's lag would never read 0."""
        if self._stored.get((topic, partition), OFFSET_BEGINNING) < offset:
            self.store.append(topic, {partition: offset}, [])
            self._stored[topic, partition] = offset
            self._show_progress(topic, {partition: offset})

    def _show_progress(self, topic: str, next_offsets: dict[int, int]) -> None:
        """Commit the stored offsets to Kafka too, for consumer-group lag only: a refusal (a rebalance under way)
        changes nothing, since the store holds the position."""
        try:
            self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                          for partition, offset in next_offsets.items()], asynchronous=True)
        except KafkaException as exc:
            log.debug("offsets not committed to Kafka", extra={"error": str(exc)})

    def _housekeeping(self) -> None:
        """Purge expired events and measure the store, each on its own schedule."""
        now = time.monotonic()
        config = self.settings.history
        if now >= self._next_purge:
            self._next_purge = now + config.purge_interval_s
            purged = self.store.purge(int(time.time() * 1000) - config.retention_days * DAY_MS)
            if purged:
                self.metrics.purged.inc(purged)
                log.info("expired events purged", extra={"events": purged, "retention_days": config.retention_days})
        if now >= self._next_size:
            self._next_size = now + SIZE_EVERY_S
            self.metrics.store_bytes.set(self.store.size_bytes())

    def closed(self) -> None:
        self.store.close()
