"""`Worker`: the lifecycle every `kafkatrail worker ROLE` shares, so a role keeps only what is its own.

The runtime owns:
- the consumer, built from settings (the role's group, manual commits, read_committed, end-of-partition
  events, the role's session timeout), and its subscription with assign/revoke/lost callbacks;
- the trails feed (`kafkatrail.trails.topic.TrailFeed`): read to its end before the first record, then
  polled every round, so a trail change reaches the role without a restart;
- the loop: poll the feed, consume a batch, sort out consumer events (a fatal error raises, other
  errors are logged), hand the records to `handle_batch`, then the batch's end-of-partition events to
  `reached_end` (after the records: an end event stands behind every record fetched before it); until
  `stop()`;
- the stop: `stop()` (the CLI calls it on SIGTERM and SIGINT) ends the loop after the batch in hand; the
  role's `finish()` runs on a clean stop, not after `WorkerStopping` (a role raises it when it abandons
  work in hand because a stop arrived while it was retrying); then `close()` closes the consumer, which
  revokes its partitions through the same callbacks;
- `Health` for /healthz and /readyz (`kafkatrail.core.metrics`): a beat every round; ready once the trails
  are read and the partitions assigned, not while the consumer cannot reach a broker (its statistics,
  `kafkatrail.core.kafka_clients`), and not while its commits stall: every `COMMIT_CHECK_S` the runtime
  compares the group's committed offsets of the assigned partitions with their ends, and when records wait
  but nothing was committed for `commit_due_s()` (twice the role's flush interval or period, at least
  `MIN_COMMIT_DUE_S`) the worker is not ready.

Offsets are the role's: the runtime never commits, and never asks the consumer for its position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from kafkatrail.core.kafka_clients import kafka_config, statistics
from kafkatrail.core.lifecycle import WorkerStopping
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings, WorkerSettings
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import TrailFeed

log = logging.getLogger(__name__)

COMMIT_CHECK_S = 10.0
COMMITTED_TIMEOUT_S = 2.0  # the loop waits this long at most for the group's offsets (a broker away: skip)
MIN_COMMIT_DUE_S = 120.0
# One per process, whatever worker (or rebuilt worker) sets it: the role is the settings section's name.
CONSUMER_LAG = Gauge("kafkatrail_consumer_lag_records", "Records of the assigned partitions after the group's "
                     "committed offsets (end offsets as last fetched), per role and topic", ["role", "topic"])

__all__ = ["Worker", "WorkerStopping"]


class CommitWatch:
    """Whether a worker's commits keep up: the last record fetched per partition, the committed offsets last
    seen, and since when they have not moved while records waited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_fetched: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset of the last record fetched
        self.committed: dict[tuple[str, int], int] = {}
        self.progress_at = self.checked_at = clock()

    def verdict(self, committed: dict[tuple[str, int], int], due_s: float) -> str | None:
        """Given the group's committed offsets of the assigned partitions now: None while commits keep up (nothing
        fetched waits, or an offset moved within `due_s`), else why the worker is not ready."""
        now = self.checked_at = self.clock()
        fetched = self.last_fetched
        waiting = sum(max(fetched.get(where, -1) + 1 - max(offset, 0), 0) for where, offset in committed.items())
        if waiting == 0 or committed != self.committed:
            self.progress_at = now
        self.committed = committed
        stalled_s = now - self.progress_at
        return f"no commit for {stalled_s:.0f} s with {waiting} records waiting" if stalled_s > due_s else None


class Worker:
    """One process of a role's consumer group. Subclasses implement `handle_batch` and the hooks they need."""

    consume_max = 1_000
    consume_timeout_s = 0.2

    def __init__(self, settings: Settings, role: WorkerSettings, topic: str, *, health: Health | None = None,
                 **consumer_config: Any) -> None:
        """`health`: what /healthz and /readyz report (a worker rebuilt after a failure keeps its predecessor's)."""
        self.settings = settings
        self.role = role
        self.topic = topic
        self.health = health if health is not None else Health()
        self.trails: dict[str, Trail] = {}
        self._stopped = threading.Event()
        self.commit_watch = CommitWatch()
        self._lag_topics: set[str] = set()
        self.role_name = next((name for name in type(settings).model_fields if getattr(settings, name) is role),
                              role.group_id)
        self.feed = TrailFeed(settings, self._trail_changed)
        self.consumer = Consumer(kafka_config(settings, **statistics(), **{
            "group.id": role.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "session.timeout.ms": role.session_timeout_s * 1000,
            **consumer_config,
        }))

    # The loop.

    def run(self) -> None:
        """Work until `stop()`."""
        try:
            self.start()
            self.feed.catch_up()
            self.attach()
            log.info("started", extra={"group_id": self.role.group_id, "topic": self.topic,
                                       "trails": len(self.trails)})
            while not self.stopping:
                self.health.beat()
                self.feed.poll()
                records, ends = self.sort(self.consumer.consume(self.consume_max, timeout=self.consume_timeout_s))
                self.handle_batch(records)
                for topic, partition, offset in ends:
                    self.reached_topic_end(topic, partition, offset)
                if time.monotonic() - self.commit_watch.checked_at >= COMMIT_CHECK_S:
                    self.check_commits()
            self.finish()
        except WorkerStopping:
            log.warning("stopped with work in hand; the partitions' next owner takes it over")
        finally:
            self.health.ready = False
            self.close()

    def stop(self) -> None:
        """End the loop after the batch in hand (safe to call from a signal handler)."""
        self._stopped.set()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if a stop arrives (for back-off between retries)."""
        self._stopped.wait(seconds)

    def sort(self, messages: list[Message]) -> tuple[list[Message], list[tuple[str, int, int]]]:
        """The records among `messages`, and the (topic, partition, offset) of its end-of-partition events, each
        list in the order consumed; a fatal error raises, others are logged. Take the ends only after the records."""
        records, ends = [], []
        fetched = self.commit_watch.last_fetched
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
                fetched[message.topic(), message.partition()] = message.offset()
            elif error.code() == KafkaError._PARTITION_EOF:
                ends.append((message.topic(), message.partition(), message.offset()))
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer error", extra={"error": error.str()})
        return records, ends

    def commit_due_s(self) -> float:
        """How long records may wait with no commit before the worker is not ready: twice the role's flush
        interval or period (a role without either commits within seconds), at least `MIN_COMMIT_DUE_S`."""
        cadence = getattr(self.role, "flush_interval_s", None) or getattr(self.role, "period_s", None) or 0
        return max(2.0 * float(cadence), MIN_COMMIT_DUE_S)

    def check_commits(self) -> None:
        """Compare the group's committed offsets of the assigned partitions with the last record fetched from
        each: `health.commits_stalled` says why not ready when records wait and no commit moved for
        `commit_due_s()`. Also sets the role's lag gauge (committed offsets to the end offsets last fetched).
        A broker that does not answer leaves both as they were (its own check reports it)."""
        try:
            assigned = self.consumer.assignment()
            committed = self.consumer.committed(assigned, timeout=COMMITTED_TIMEOUT_S) if assigned else []
        except KafkaException:
            self.commit_watch.checked_at = time.monotonic()
            return
        lag = dict.fromkeys(self._lag_topics, 0)
        for tp in committed:
            high = self.consumer.get_watermark_offsets(tp, cached=True)[1]
            if high >= 0:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(high - max(tp.offset, 0), 0)
        for topic, records in lag.items():
            CONSUMER_LAG.labels(self.role_name, topic).set(records)
        self._lag_topics = set(lag)
        self.health.commits_stalled = self.commit_watch.verdict(
            {(tp.topic, tp.partition): tp.offset for tp in committed}, self.commit_due_s())

    def close(self) -> None:
        """Close the consumer (its partitions are revoked through the callbacks), the feed, then the role's own."""
        self.closing()
        self.consumer.close()
        self.feed.close()
        self.closed()

    def attach(self) -> None:
        """Subscribe to the role's topic (a role that assigns partitions itself overrides this)."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _trail_changed(self, arn: str, trail: Trail | None) -> None:
        if trail is None:
            self.trails.pop(arn, None)
        else:
            self.trails[arn] = trail
        self.trail_changed(arn, trail)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.on_assign(partitions)
        self.health.ready = True
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in partitions)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.on_revoke(partitions)
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in partitions)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.on_lost(partitions)
        log.warning("partitions lost", extra={"partitions": sorted(tp.partition for tp in partitions)})

    # What a role provides.

    def handle_batch(self, records: list[Message]) -> None:
        """Take one consumed batch (possibly empty: time-driven work goes here too)."""
        raise NotImplementedError

    def start(self) -> None:
        """Before the trails are read and the topic subscribed (e.g. initialise transactions)."""

    def trail_changed(self, arn: str, trail: Trail | None) -> None:
        """A trail was defined or changed (`trail`), or deleted (None); `self.trails` is already updated."""

    def reached_end(self, partition: int, offset: int) -> None:
        """The consumer reached the end of `partition` at `offset`: every record below it was handed over."""

    def reached_topic_end(self, topic: str, partition: int, offset: int) -> None:
        """`reached_end` for a role that reads several topics; by default a one-topic role's `reached_end`."""
        self.reached_end(partition, offset)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned (inside the consumer's callback)."""

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions are being revoked: commit what was stored of them (inside the consumer's callback)."""

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        """Partitions were lost (the group moved on): forget them without committing."""
        self.on_revoke(partitions)

    def finish(self) -> None:
        """After a clean stop, before the consumer closes (e.g. flush and commit what is pending)."""

    def closing(self) -> None:
        """First thing in `close()`, however the loop ended."""

    def closed(self) -> None:
        """After the consumer and the feed are closed (e.g. close producers and thread pools)."""
