"""`kafkatrail worker processors`: events in, selected (trail, event) pairs out, exactly once.

Why confluent-kafka and not a faust agent
    The first design named faust for the processors (docs/architecture.md §3.2); two measurements ruled it out for this
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
    batch's output: the delivery records, the history records (each accepted management event once),
    the dead-letter records, one changelog record per partition
    with the eventIDs first seen in the batch (`kafkatrail.processors.dedupe`), and the offsets
    (`send_offsets_to_transaction`). The transaction commits all of it or none of it.

    - A crash before the commit leaves the transaction open. The restarted processor has the same
      `transactional.id` (group id + instance id), so `init_transactions` fences the dead one and
      aborts its transaction; nothing of the batch is visible to read_committed readers, the committed
      offsets still point at the batch's first event, and the restored dedupe window (read_committed
      from the changelog) does not contain its eventIDs. The batch is processed again from scratch with
      the same state and makes the same decisions (dedupe time is the records' broker timestamp, not the
      clock; see `dedupe_time_s` for a topic that keeps producers' timestamps): nothing is lost, nothing
      doubles.
    - A crash after the commit loses nothing: output, state and offsets are all committed.
    - A rebalance moves a partition with its offsets and its changelog; the new owner restores the window
      before it reads the partition. A zombie that still believes it owns the partition is fenced by the
      consumer-group generation sent with its offsets (KIP-447), so its transaction cannot commit.
    - A transaction error that needs an abort is handled by aborting and rewinding: every assigned
      partition is sought back to its committed offset and its window restored from the changelog.

    Duplicates of one eventID meet in one partition because producers key records by eventID; a record
    produced with another key is dead-lettered (`invalid.key`).
    With `processors.sources` the processor reads one topic per producer principal
    (`processors/sources.py`): each has its own changelog, its windows are kept per (topic, partition), and
    the offsets of every topic's partitions go into the batch's one transaction, so the argument above holds
    for each topic unchanged. A record for an account its topic may not write for is a dead letter, written in
    the same transaction as the rest of the batch.
    Trails are read to the end of the trails topic before the first event is processed, so no event is
    judged against an incomplete set of trails.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import KEYED_PARTITIONER
from kafkatrail.processors.dedupe import DedupeWindow, changelog_record, dedupe_time_s
from kafkatrail.processors.metrics import ProcessorMetrics
from kafkatrail.processors.pipeline import BatchOutcome, EventPipeline, InputMessage
from kafkatrail.processors.selectors import Selection
from kafkatrail.processors.sources import SourcePolicy
from kafkatrail.processors.transactional import TransactionalLoop
from kafkatrail.schemas.codec import default_codec
from kafkatrail.schemas.contract import DETAIL_HEADER, REASON_HEADER, SOURCE_HEADER
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)


class ProcessorWorker(TransactionalLoop[DedupeWindow]):
    """One processor process: a member of the processors' consumer group with one transactional producer."""

    def __init__(self, settings: Settings, metrics: ProcessorMetrics | None = None,
                 health: Health | None = None) -> None:
        self.metrics = metrics or ProcessorMetrics()
        self.selection = Selection()
        self.pipeline = EventPipeline(default_codec().decode, self.selection)
        self.sources = SourcePolicy.from_settings(settings)  # the topics read, their changelogs and allow-lists
        super().__init__(
            settings, settings.processors, batch_max_events=settings.processors.batch_max_events,
            batch_timeout_s=settings.processors.batch_timeout_s, changelogs=self.sources.changelogs,
            count_transaction=lambda outcome: self.metrics.transactions.labels(outcome).inc(),
            producer_config={"batch.size": 1_000_000, "queue.buffering.max.kbytes": 262_144,
                             "partitioner": KEYED_PARTITIONER}, health=health)

    def trail_changed(self, arn: str, trail: Trail | None) -> None:
        if trail is None:
            self.selection.remove(arn)
        else:
            self.selection.update(trail)
        self.metrics.trails.set(len(self.selection.trails()))
        log.info("trail removed" if trail is None else "trail applied", extra={"trail_arn": arn})

    def new_state(self) -> DedupeWindow:
        config = self.settings.processors
        return DedupeWindow(config.dedupe_window_s, config.dedupe_bucket_s)

    def restore_record(self, state: DedupeWindow, message: Message) -> None:
        state.restore((message.value(),))

    def transform(self, partition: int, messages: list[Message], state: DedupeWindow) -> Any:
        topic = messages[0].topic()  # `state` is the window of this (topic, partition) alone
        now_s = time.time()
        tolerance_s = self.settings.processors.producer_clock_tolerance_s
        batch = []
        for m in messages:
            kind, timestamp_ms = m.timestamp()
            batch.append(InputMessage(m.value(), m.key(), dedupe_time_s(
                timestamp_ms, kind == TIMESTAMP_LOG_APPEND_TIME, now_s, tolerance_s), m.offset()))
        outcome = self.pipeline.process(batch, state, self.sources.allow_list(topic))
        produce = self.produce
        for key, value in outcome.deliveries:
            produce(self.topics.delivery, key, value)
        for key, value in outcome.history:
            produce(self.topics.history, key, value)
        for rejected in outcome.rejected:
            source = rejected.message
            produce(self.topics.dlq, source.key, source.value, headers=[
                (REASON_HEADER, rejected.reason.encode()),
                (DETAIL_HEADER, rejected.detail.encode()),
                (SOURCE_HEADER, f"{topic}/{partition}/{source.offset}".encode()),
            ])
        changelog = self.changelogs[topic]
        for bucket, first in outcome.first_seen.items():
            produce(changelog, None, changelog_record(bucket, first), partition=partition)
        return batch, outcome

    def committed(self, results: list[tuple[list[InputMessage], BatchOutcome]]) -> None:
        metrics = self.metrics
        now = time.time()
        observe = metrics.latency.observe
        events = 0
        for batch, outcome in results:
            events += len(batch)
            for message in batch:
                observe(now - message.timestamp_s)
            if outcome.duplicates:
                metrics.duplicates.inc(outcome.duplicates)
            if outcome.conflicts:
                metrics.conflicts.inc(outcome.conflicts)
            for rejected in outcome.rejected:
                metrics.invalid.labels(rejected.reason_label).inc()
            for trail_arn, count in outcome.selected.items():
                metrics.selected.labels(trail_arn).inc(count)
        metrics.events_in.inc(events)
        self.states_changed()

    def states_changed(self) -> None:
        self.metrics.dedupe_entries.set(sum(len(window) for window in self.states.values()))
