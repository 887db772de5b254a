"""`kafkatrail worker processors`: events in, selected (trail, event) pairs out, exactly once.

Why confluent-kafka and not a faust agent
    DESIGN.md names faust for the processors; two measurements on this code base ruled it out for this
    role. (1) Speed: an agent that does nothing but count (aiokafka transport) reads 5,800-8,000 events/s
    with `stream.take_events(1000)`, 6,500-8,000/s per event, 8,000-9,100/s with uvloop, on this 2-core
    machine (`bench/faust_ceiling.py`), against a target of 20,000/s with all the work done.
    (2) Exactly-once: faust-streaming 0.15's
    `exactly_once` routes each send to the transactional producer of the *destination* partition
    (`TransactionManager.send`), which is only right for co-partitioned output; the delivery topic is
    keyed by trail, account and region, so a (trail, event) pair would be committed in another
    partition's transaction, or in none. This loop does the same job on librdkafka's consumer and
    transactional producer (KIP-447), which batches natively.

Exactly-once argument
    The processor holds two kinds of state: the consumed offsets of the events topic and the dedupe
    window of each partition. Both are written only inside the Kafka transaction that also carries the
    batch's output: the delivery records, the dead-letter records, one changelog record per partition
    with the eventIDs first seen in the batch (`processors.dedupe`), and the offsets
    (`send_offsets_to_transaction`). The transaction commits all of it or none of it.

    - A crash before the commit leaves the transaction open. The restarted processor has the same
      `transactional.id` (group id + instance id), so `init_transactions` fences the dead one and
      aborts its transaction; nothing of the batch is visible to read_committed readers, the committed
      offsets still point at the batch's first event, and the restored dedupe window (read_committed
      from the changelog) does not contain its eventIDs. The batch is processed again from scratch with
      the same state and makes the same decisions (dedupe time is the records' Kafka timestamp, not the
      clock): nothing is lost, nothing doubles.
    - A crash after the commit loses nothing: output, state and offsets are all committed.
    - A rebalance moves a partition with its offsets and its changelog; the new owner restores the window
      before it reads the partition. A zombie that still believes it owns the partition is fenced by the
      consumer-group generation sent with its offsets (KIP-447), so its transaction cannot commit.
    - A transaction error that needs an abort is handled by aborting and rewinding: every assigned
      partition is sought back to its committed offset and its window restored from the changelog.

    Duplicates of one eventID meet in one partition because producers key records by eventID; a record
    produced with another key is deduplicated only against its own partition.
    Trails are read to the end of the trails topic before the first event is processed, so no event is
    judged against an incomplete set of trails.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from kafkatrail.settings import Settings
from processors.dedupe import DedupeWindow, changelog_record
from processors.metrics import ProcessorMetrics
from processors.pipeline import BatchOutcome, EventPipeline, InputMessage
from processors.selectors import Selection
from schemas.codec import default_codec
from trails.model import Trail
from trails.topic import TrailFeed

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
RESTORE_TIMEOUT_S = 600.0
COMMIT_ATTEMPTS = 5
FULL_QUEUE_WAIT_S = 0.05


class ProcessorWorker:
    """One processor process: a member of the processors' consumer group with one transactional producer."""

    def __init__(self, settings: Settings, metrics: ProcessorMetrics | None = None) -> None:
        self.settings = settings
        self.topics = settings.topics
        config = settings.processors
        self.metrics = metrics or ProcessorMetrics()
        self.selection = Selection()
        self.pipeline = EventPipeline(default_codec().decode, self.selection)
        self.windows: dict[int, DedupeWindow] = {}
        self._stopping = False
        self.feed = TrailFeed(settings, self._trail_changed)
        self.producer = Producer(settings.kafka_config(**{
            "transactional.id": f"{config.group_id}-{config.instance_id}",
            "transaction.timeout.ms": config.transaction_timeout_s * 1000,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 262_144,
            "partitioner": "murmur2_random",
        }))
        self.consumer = Consumer(settings.kafka_config(**{
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": config.session_timeout_s * 1000,
            "queued.min.messages": 100_000,
        }))

    def run(self) -> None:
        """Process until `stop()` (the CLI calls it on SIGTERM and SIGINT)."""
        config = self.settings.processors
        self.producer.init_transactions(KAFKA_TIMEOUT_S)
        self._check_copartitioned()
        self.feed.catch_up()
        self.consumer.subscribe([self.topics.events], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("processor started", extra={"group_id": config.group_id, "instance_id": config.instance_id,
                                              "trails": len(self.selection.trails())})
        try:
            while not self._stopping:
                self.feed.poll()
                messages = self.consumer.consume(config.batch_max_events, timeout=config.batch_timeout_s)
                if messages:
                    self._process(messages)
        finally:
            self.close()

    def stop(self) -> None:
        """Finish the current batch, then leave the group and return from `run()`."""
        self._stopping = True

    def close(self) -> None:
        self.consumer.close()
        self.feed.close()
        self.producer.close()

    def _check_copartitioned(self) -> None:
        metadata = self.consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics
        counts = {}
        for name in (self.topics.events, self.topics.dedupe_changelog):
            topic = metadata.get(name)
            if topic is None or topic.error is not None:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {name} does not exist: run `kafkatrail topics create`"))
            counts[name] = len(topic.partitions)
        if len(set(counts.values())) != 1:
            raise KafkaException(KafkaError(KafkaError.INVALID_PARTITIONS,
                                            f"the dedupe changelog must have as many partitions as the events "
                                            f"topic: {counts}"))

    def _trail_changed(self, arn: str, trail: Trail | None) -> None:
        if trail is None:
            self.selection.remove(arn)
        else:
            self.selection.update(trail)
        self.metrics.trails.set(len(self.selection.trails()))
        log.info("trail removed" if trail is None else "trail applied", extra={"trail_arn": arn})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.windows.update(self._restore_windows([tp.partition for tp in partitions]))
        self._report_dedupe_size()
        log.info("partitions assigned", extra={"partitions": [tp.partition for tp in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.windows.pop(tp.partition, None)
        self._report_dedupe_size()
        log.info("partitions revoked", extra={"partitions": [tp.partition for tp in partitions]})

    def _restore_windows(self, partitions: list[int]) -> dict[int, DedupeWindow]:
        """The dedupe windows of `partitions`, as the committed changelog records them."""
        config = self.settings.processors
        windows = {p: DedupeWindow(config.dedupe_window_s, config.dedupe_bucket_s) for p in partitions}
        if not partitions:
            return windows
        reader = Consumer(self.settings.kafka_config(**{
            "group.id": f"kafkatrail-dedupe-restore-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }))
        pending = set(partitions)
        try:
            reader.assign([TopicPartition(self.topics.dedupe_changelog, p, OFFSET_BEGINNING) for p in partitions])
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dedupe changelog partitions {sorted(pending)} not read to their end "
                                       f"within {RESTORE_TIMEOUT_S:.0f} s")
                for message in reader.consume(10_000, timeout=0.5):
                    error = message.error()
                    if error is None:
                        windows[message.partition()].restore((message.value(),))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    else:
                        raise KafkaException(error)
        finally:
            reader.close()
        return windows

    def _process(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[InputMessage]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer error", extra={"error": error.str()})
                continue
            by_partition[message.partition()].append(
                InputMessage(message.value(), message.key(), message.timestamp()[1] / 1000, message.offset()))
        if not by_partition:
            return
        self.producer.begin_transaction()
        outcomes: list[BatchOutcome] = []
        offsets = []
        for partition, batch in by_partition.items():
            window = self.windows.get(partition)
            if window is None:
                window = self.windows[partition] = self._restore_windows([partition])[partition]
            outcome = self.pipeline.process(batch, window)
            self._write(partition, outcome)
            outcomes.append(outcome)
            offsets.append(TopicPartition(self.topics.events, partition, batch[-1].offset + 1))
        if self._commit(offsets):
            self._count(by_partition, outcomes)
        else:
            self._rewind()

    def _write(self, partition: int, outcome: BatchOutcome) -> None:
        produce = self._produce
        delivery_topic = self.topics.delivery
        for key, value in outcome.deliveries:
            produce(delivery_topic, key, value)
        for rejected in outcome.rejected:
            source = rejected.message
            produce(self.topics.dlq, source.key, source.value, headers=[
                ("kafkatrail.reason", rejected.reason.encode()),
                ("kafkatrail.detail", rejected.detail.encode()),
                ("kafkatrail.source", f"{self.topics.events}/{partition}/{source.offset}".encode()),
            ])
        for bucket, event_ids in outcome.first_seen.items():
            produce(self.topics.dedupe_changelog, None, changelog_record(bucket, event_ids), partition=partition)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, **extra: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)
                return
            except BufferError:
                self.producer.poll(FULL_QUEUE_WAIT_S)

    def _commit(self, offsets: list[TopicPartition]) -> bool:
        """Commit the open transaction with `offsets`; False when it had to be aborted."""
        try:
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(),
                                                      KAFKA_TIMEOUT_S)
            return self._retrying(self.producer.commit_transaction)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted; rewinding to the committed offsets", extra={"error": error.str()})
            self.producer.abort_transaction(KAFKA_TIMEOUT_S)
            self.metrics.transactions.labels("aborted").inc()
            return False

    def _retrying(self, call: Callable[[float], None]) -> bool:
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                call(KAFKA_TIMEOUT_S)
                self.metrics.transactions.labels("committed").inc()
                return True
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == COMMIT_ATTEMPTS - 1:
                    raise
        return False

    def _rewind(self) -> None:
        committed = self.consumer.committed(self.consumer.assignment(), timeout=KAFKA_TIMEOUT_S)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                              OFFSET_BEGINNING))
        self.windows = self._restore_windows([tp.partition for tp in committed])

    def _count(self, by_partition: dict[int, list[InputMessage]], outcomes: list[BatchOutcome]) -> None:
        metrics = self.metrics
        now = time.time()
        observe = metrics.latency.observe
        events = 0
        for batch in by_partition.values():
            events += len(batch)
            for message in batch:
                observe(now - message.timestamp_s)
        metrics.events_in.inc(events)
        for outcome in outcomes:
            if outcome.duplicates:
                metrics.duplicates.inc(outcome.duplicates)
            for rejected in outcome.rejected:
                metrics.invalid.labels(rejected.reason).inc()
            for trail_arn, count in outcome.selected.items():
                metrics.selected.labels(trail_arn).inc(count)
        self._report_dedupe_size()

    def _report_dedupe_size(self) -> None:
        self.metrics.dedupe_entries.set(sum(len(window) for window in self.windows.values()))
