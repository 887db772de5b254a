"""`kafkatrail worker insights`: delivered records in, CloudTrail Insights records out, exactly once.

Like the processor (processors/worker.py, which says why this is not a faust agent), this is a
confluent-kafka transactional loop, and the Insights state is not a faust table but a compacted
changelog topic written in the same Kafka transaction as the output.

It reads the delivery topic (read_committed; key `trailARN|account|region`, value CloudTrail JSON), so
a trail's Insights see exactly the events the trail logs. Records of trails without Insights selectors
are skipped. One detector (processors/insights.py) per delivery partition: a trail, account and region
always lands in one partition, and the partition's records carry its event-time watermark.

Exactly-once argument
    Per batch, one transaction carries: the Insights records the batch closed, one changelog record per
    unit the batch changed plus the detector's clock (processors/insights_state.py), and the consumed
    offsets. A crash before the commit aborts all of it; the restarted worker (same `transactional.id`,
    which fences the dead one) restores every detector from the committed changelog and reads the batch
    again from the committed offsets: the detector state is the one before the batch, so it makes the
    same decisions and an Insight started before the crash is neither lost nor started twice. Record
    IDs derive from the unit and the start minute, so even a replay elsewhere yields the same IDs.
    A rebalance moves a partition with its changelog; a transaction error that requires an abort
    rewinds to the committed offsets and restores the state from the changelog.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import Counter as PromCounter

from kafkatrail.settings import Settings
from processors.insights import INSIGHT_TYPES, InsightsDetector
from processors.insights_state import changed_records, restore
from trails.model import Trail
from trails.topic import TrailFeed

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
RESTORE_TIMEOUT_S = 600.0
FULL_QUEUE_WAIT_S = 0.05


def insight_types(trail: Trail) -> frozenset[str]:
    """The management-event Insights types a trail's selectors enable (EventCategories default: Management)."""
    return frozenset(selector["InsightType"] for selector in trail.insight_selectors
                     if selector.get("InsightType") in INSIGHT_TYPES
                     and "Management" in selector.get("EventCategories", ["Management"]))


class InsightsMetrics:
    """What one Insights worker serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.records_in = PromCounter("kafkatrail_insights_records_in_total",
                                      "Delivery records read, of trails with Insights", registry=registry)
        self.insights = PromCounter("kafkatrail_insights_records_out_total", "Insights records written, by state",
                                    ["state"], registry=registry)
        self.transactions = PromCounter("kafkatrail_insights_transactions_total", "Kafka transactions, by outcome",
                                        ["outcome"], registry=registry)


class InsightsWorker:
    """One Insights process: a member of the Insights consumer group with one transactional producer."""

    def __init__(self, settings: Settings, metrics: InsightsMetrics | None = None) -> None:
        self.settings = settings
        self.topics = settings.topics
        config = settings.insights
        self.detector_config = config.detector_config()
        self.metrics = metrics or InsightsMetrics()
        self.types: dict[str, frozenset[str]] = {}
        self.detectors: dict[int, InsightsDetector] = {}
        self._stopping = False
        self.feed = TrailFeed(settings, self._trail_changed)
        self.producer = Producer(settings.kafka_config(**{
            "transactional.id": f"{config.group_id}-{config.instance_id}",
            "transaction.timeout.ms": config.transaction_timeout_s * 1000,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
        }))
        self.consumer = Consumer(settings.kafka_config(**{
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": config.session_timeout_s * 1000,
        }))

    def run(self) -> None:
        """Detect until `stop()` (the CLI calls it on SIGTERM and SIGINT)."""
        config = self.settings.insights
        self.producer.init_transactions(KAFKA_TIMEOUT_S)
        self._check_copartitioned()
        self.feed.catch_up()
        self.consumer.subscribe([self.topics.delivery], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("insights worker started", extra={"group_id": config.group_id, "instance_id": config.instance_id,
                                                    "trails": len(self.types)})
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
        for name in (self.topics.delivery, self.topics.insights_changelog, self.topics.insights):
            topic = metadata.get(name)
            if topic is None or topic.error is not None:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {name} does not exist: run `kafkatrail topics create`"))
            counts[name] = len(topic.partitions)
        if counts[self.topics.delivery] != counts[self.topics.insights_changelog]:
            raise KafkaException(KafkaError(KafkaError.INVALID_PARTITIONS,
                                            f"the Insights changelog must have as many partitions as the delivery "
                                            f"topic: {counts}"))

    def _trail_changed(self, arn: str, trail: Trail | None) -> None:
        types = insight_types(trail) if trail is not None else frozenset()
        if types:
            self.types[arn] = types
        else:
            self.types.pop(arn, None)
        log.info("trail applied", extra={"trail_arn": arn, "insight_types": sorted(types)})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.detectors.update(self._restore([tp.partition for tp in partitions]))
        log.info("partitions assigned", extra={"partitions": [tp.partition for tp in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.detectors.pop(tp.partition, None)
        log.info("partitions revoked", extra={"partitions": [tp.partition for tp in partitions]})

    def _restore(self, partitions: list[int]) -> dict[int, InsightsDetector]:
        """The detectors of `partitions`, as the committed changelog records them."""
        detectors = {p: InsightsDetector(self.detector_config) for p in partitions}
        if not partitions:
            return detectors
        reader = Consumer(self.settings.kafka_config(**{
            "group.id": f"kafkatrail-insights-restore-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }))
        pending = set(partitions)
        try:
            reader.assign([TopicPartition(self.topics.insights_changelog, p, OFFSET_BEGINNING) for p in partitions])
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Insights changelog partitions {sorted(pending)} not read to their end "
                                       f"within {RESTORE_TIMEOUT_S:.0f} s")
                for message in reader.consume(10_000, timeout=0.5):
                    error = message.error()
                    if error is None:
                        if message.value() is not None:
                            restore(detectors[message.partition()], message.key() or b"", message.value())
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    else:
                        raise KafkaException(error)
        finally:
            reader.close()
        for detector in detectors.values():
            detector.dirty.clear()
        return detectors

    def _process(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer error", extra={"error": error.str()})
                continue
            by_partition[message.partition()].append(message)
        if not by_partition:
            return
        self.producer.begin_transaction()
        offsets, counted, written = [], 0, []
        for partition, batch in by_partition.items():
            detector = self.detectors.get(partition)
            if detector is None:
                detector = self.detectors[partition] = self._restore([partition])[partition]
            for message in batch:
                trail_arn = (message.key() or b"").decode().split("|", 1)[0]
                types = self.types.get(trail_arn)
                if types and message.value():
                    detector.add_event(trail_arn, orjson.loads(message.value()), types,
                                       message.timestamp()[1] / 1000)
                    counted += 1
            for key, record in detector.advance():
                self._produce(self.topics.insights, key, orjson.dumps(record))
                written.append(record["insightDetails"]["state"])
            for key, value in changed_records(detector):
                self._produce(self.topics.insights_changelog, key, value, partition=partition)
            offsets.append(TopicPartition(self.topics.delivery, partition, batch[-1].offset() + 1))
        if self._commit(offsets):
            self.metrics.records_in.inc(counted)
            for state in written:
                self.metrics.insights.labels(state).inc()
            if written:
                log.info("insights written", extra={"states": written})
        else:
            self._rewind()

    def _produce(self, topic: str, key: bytes | None, value: bytes, **extra: Any) -> None:
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
            self.producer.commit_transaction(KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted; rewinding to the committed offsets", extra={"error": error.str()})
            self.producer.abort_transaction(KAFKA_TIMEOUT_S)
            self.metrics.transactions.labels("aborted").inc()
            return False
        self.metrics.transactions.labels("committed").inc()
        return True

    def _rewind(self) -> None:
        committed = self.consumer.committed(self.consumer.assignment(), timeout=KAFKA_TIMEOUT_S)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                              OFFSET_BEGINNING))
        self.detectors = self._restore([tp.partition for tp in committed])
