"""`kafkatrail worker insights`: delivered records in, CloudTrail Insights records out, exactly once.

Like the processor (processors/worker.py, which says why this is not a faust agent), this is a
confluent-kafka transactional loop (`kafkatrail.processors.transactional`), and the Insights state is not a faust
table but a compacted changelog topic written in the same Kafka transaction as the output.

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
    A partition that receives no event for `insights.idle_end_s` (wall clock against the Kafka timestamp of
    its last event, which the changelog keeps) ends its open Insights in a transaction of its own, with
    the changelog records of the units it ended and no offsets.
    A rebalance moves a partition with its changelog; a transaction error that requires an abort
    rewinds to the committed offsets and restores the state from the changelog.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from confluent_kafka import Message
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import Counter as PromCounter

from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.processors.insights import INSIGHT_TYPES, InsightsConfig, InsightsDetector
from kafkatrail.processors.insights_state import changed_records, restore
from kafkatrail.processors.transactional import TransactionalLoop
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)


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


class InsightsWorker(TransactionalLoop[InsightsDetector]):
    """One Insights process: a member of the Insights consumer group with one transactional producer."""

    def __init__(self, settings: Settings, metrics: InsightsMetrics | None = None,
                 health: Health | None = None) -> None:
        self.detector_config = InsightsConfig.from_settings(settings.insights)
        self.metrics = metrics or InsightsMetrics()
        self.types: dict[str, frozenset[str]] = {}
        super().__init__(
            settings, settings.insights, batch_max_events=settings.insights.batch_max_events,
            batch_timeout_s=settings.insights.batch_timeout_s,
            changelogs={settings.topics.delivery: settings.topics.insights_changelog},
            count_transaction=lambda outcome: self.metrics.transactions.labels(outcome).inc(), health=health)

    def trail_changed(self, arn: str, trail: Trail | None) -> None:
        types = insight_types(trail) if trail is not None else frozenset()
        if types:
            self.types[arn] = types
        else:
            self.types.pop(arn, None)
        log.info("trail applied", extra={"trail_arn": arn, "insight_types": sorted(types)})

    def new_state(self) -> InsightsDetector:
        return InsightsDetector(self.detector_config)

    def restore_record(self, state: InsightsDetector, message: Message) -> None:
        if message.value() is not None:
            restore(state, message.key() or b"", message.value())

    def restored(self, state: InsightsDetector) -> None:
        state.dirty.clear()

    def transform(self, partition: int, messages: list[Message], state: InsightsDetector) -> Any:
        counted, written = 0, []
        for message in messages:
            try:
                trail_arn = DeliveryKey.decode(message.key()).trail_arn
            except (ValueError, UnicodeDecodeError):
                continue  # not a delivery record: it belongs to no trail
            types = self.types.get(trail_arn)
            if types and message.value():
                state.add_event(trail_arn, orjson.loads(message.value()), types, message.timestamp()[1] / 1000)
                counted += 1
        for key, record in state.advance():
            self.produce(self.topics.insights, key, orjson.dumps(record))
            written.append(record["insightDetails"]["state"])
        for key, value in changed_records(state):
            self.produce(self.topics.insights_changelog, key, value, partition=partition)
        return counted, written

    def idle_due(self, state: InsightsDetector) -> bool:
        return state.idle_due(time.time())

    def idle(self, partition: int, state: InsightsDetector) -> Any:
        """End the open Insights of a partition that has received no event for `insights.idle_end_s`."""
        written = []
        for key, record in state.end_idle():
            self.produce(self.topics.insights, key, orjson.dumps(record))
            written.append(record["insightDetails"]["state"])
        for key, value in changed_records(state):
            self.produce(self.topics.insights_changelog, key, value, partition=partition)
        log.info("idle partition: open Insights ended", extra={"partition": partition, "states": written})
        return 0, written

    def committed(self, results: list[tuple[int, list[str]]]) -> None:
        written = [state for _, states in results for state in states]
        self.metrics.records_in.inc(sum(counted for counted, _ in results))
        for state in written:
            self.metrics.insights.labels(state).inc()
        if written:
            log.info("insights written", extra={"states": written})
