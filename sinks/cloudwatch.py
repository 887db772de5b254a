"""`kafkatrail worker cloudwatch`: the delivery topic into each trail's CloudWatch Logs log group.

What goes where
    Records of trails that have a ``CloudWatchLogsLogGroupArn`` become one log event each: the message is
    the record's JSON exactly as on the delivery topic, the timestamp its ``eventTime`` in ms, the stream
    ``<account>_CloudTrail_<region>`` (organization trails: see ``kafkatrail.sinks.cloudwatch_batches``). Records of
    trails without a log group, of unknown (deleted) trails and records over 256 KB are skipped and counted
    (``kafkatrail_cloudwatch_events_skipped_total{reason}``); the S3 sink still delivers them.

Guarantee: at least once
    Records are buffered per stream and sent every ``flush_interval_s``, or as soon as a stream holds a
    full PutLogEvents batch. Offsets are committed only up to the oldest record of each partition that is
    neither sent nor deliberately skipped (``PendingOffsets``). A crash, or a stop during an outage, after
    PutLogEvents and before the commit makes the next owner of the partition send those records again:
    CloudWatch Logs has no idempotent write, so duplicates are possible and loss is not. Records of a
    revoked partition that were not sent yet are dropped from the buffers, not sent: the new owner reads
    them from the committed offset.

Failures
    - ResourceNotFoundException: the stream is created and the call repeated. The log group is never
      created: CloudTrail requires it to exist (CreateTrail refuses a missing group) and the role AWS
      documents may not create groups. Records for a group that does not exist are skipped and counted as
      ``log_group_missing`` with an error log, as CloudTrail reports a delivery error rather than queueing.
    - InvalidParameterException: the batch itself is refused, so repeating it cannot help; it is skipped,
      counted as ``invalid_parameter`` and logged (the batcher keeps within every documented limit).
    - Everything else (throttling, ServiceUnavailable, other 5xx, connection errors and timeouts, expired or
      missing credentials) is retried forever with exponential back-off (jittered, capped at
      ``retry_max_backoff_s``) by `kafkatrail.core.aws.AwsCalls`, the retry loop every sink shares (the
      clients make one attempt per call, so the loop sees each failure and a stop at once); nothing is
      dropped. While it retries the sink reads nothing: an outage
      longer than the consumer's max.poll.interval.ms (5 min) makes it leave the group, and the partitions'
      next owner resends what was not committed.
    - ``rejectedLogEventsInfo`` (too new, too old, expired): the service keeps the rest of the batch; the
      refused events are counted per reason and logged, not retried (they would be refused again).

    `kafkatrail worker cloudwatch-insights` (``insights=True``) is the same sink on the Insights topic, with
    its own consumer group: Insights records go to the trail's log group like its other records.

    The sink writes with its own credentials (boto3's normal chain, so ``AWS_ENDPOINT_URL`` points it at
    the local stand-in); it does not assume the trail's ``CloudWatchLogsRoleArn``.

Stopping
    ``stop()`` (SIGTERM/SIGINT) ends the loop; pending records are flushed once more, each call tried once
    without back-off, the settled offsets committed, and ``run()`` returns.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from confluent_kafka import KafkaException, Message, Producer, TopicPartition

from kafkatrail.core import aws
from kafkatrail.core.aws import AwsCalls, error_code
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.runtime.worker import Worker, WorkerStopping
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.sinks.budget import over_budget
from kafkatrail.sinks.cloudwatch_batches import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    Destination,
    PendingEvent,
    PendingOffsets,
    destination,
    plan_batches,
    rejected_events,
)
from kafkatrail.sinks.cloudwatch_metrics import CloudWatchMetrics
from kafkatrail.sinks.status import StatusReporter
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

CONSUME_BATCH = 1_000
CONSUME_WAIT_S = 0.1
# Answers the writer handles itself: a stream to create, a log group that is missing, a refused batch.
HANDLED_BY_THE_WRITER = frozenset({"ResourceNotFoundException", "InvalidParameterException"})
HANDLED_ON_CREATE = frozenset({"ResourceNotFoundException", "ResourceAlreadyExistsException"})


class LogEventsWriter:
    """Sends one batch at a time, creating missing streams and retrying (`AwsCalls`) until the batch is settled."""

    def __init__(self, max_backoff_s: float, metrics: CloudWatchMetrics, stopping: Callable[[], bool],
                 new_client: Callable[[str], Any], sleep: Callable[[float], None] = time.sleep,
                 on_outcome: Callable[[Destination, str | None], None] | None = None) -> None:
        self.metrics = metrics
        self.on_outcome = on_outcome  # (stream, None for a delivered batch or the error of a refused one)
        self.calls = AwsCalls(metrics.aws, max_backoff_s, stopping, sleep)
        self._new_client = new_client
        self._clients: dict[str, Any] = {}

    def put(self, target: Destination, batch: list[PendingEvent]) -> bool:
        """Send `batch` (one PutLogEvents' worth, sorted) until settled; False if the sink stopped first."""
        client = self._clients.get(target.region)
        if client is None:
            client = self._clients[target.region] = self._new_client(target.region)
        context = {"log_group": target.log_group, "stream": target.stream, "region": target.region}
        events = [{"timestamp": event.timestamp, "message": event.message} for event in batch]

        def send() -> Any:
            self.metrics.calls.inc()
            return client.put_log_events(logGroupName=target.log_group, logStreamName=target.stream, logEvents=events)

        try:
            while True:
                try:
                    response = self.calls.call("PutLogEvents", send, permanent=HANDLED_BY_THE_WRITER, context=context)
                except ClientError as exc:
                    if error_code(exc) == "InvalidParameterException":
                        self._skip(target, batch, "invalid_parameter", exc)
                        return True
                    if not self._create_stream(client, target, context):  # ResourceNotFoundException
                        self._skip(target, batch, "log_group_missing", exc)
                        return True
                    continue
                self._accepted(target, batch, response.get("rejectedLogEventsInfo") or {})
                return True
        except WorkerStopping:
            log.warning("stopping with a batch unsent; it is sent again after the restart",
                        extra={**context, "events": len(batch)})
            return False

    def _create_stream(self, client: Any, target: Destination, context: dict[str, str]) -> bool:
        """Create the batch's stream (or find it created meanwhile by another writer); False if its group is
        missing."""
        try:
            self.calls.call("CreateLogStream", lambda: client.create_log_stream(
                logGroupName=target.log_group, logStreamName=target.stream), permanent=HANDLED_ON_CREATE,
                context=context)
        except ClientError as exc:
            return error_code(exc) == "ResourceAlreadyExistsException"
        self.metrics.streams_created.inc()
        log.info("log stream created", extra=context)
        return True

    def _skip(self, target: Destination, batch: list[PendingEvent], reason: str, exc: ClientError) -> None:
        self.metrics.skipped.labels(reason).inc(len(batch))
        if self.on_outcome is not None:
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            self.on_outcome(target, f"{error_code(exc)}: {message}")
        log.error("records not delivered to CloudWatch Logs", extra={
            "reason": reason, "events": len(batch), "log_group": target.log_group, "stream": target.stream,
            "region": target.region, "error": str(exc)})

    def _accepted(self, target: Destination, batch: list[PendingEvent], rejected_info: dict[str, int]) -> None:
        rejected = rejected_events(rejected_info, len(batch))
        if self.on_outcome is not None:
            self.on_outcome(target, None)
        now_ms = time.time() * 1000
        observe = self.metrics.latency.observe
        for index, event in enumerate(batch):
            if index not in rejected:
                observe((now_ms - event.timestamp) / 1000)
        self.metrics.sent.inc(len(batch) - len(rejected))
        if rejected:
            by_reason = Counter(rejected.values())
            for reason, count in by_reason.items():
                self.metrics.skipped.labels(reason).inc(count)
            log.warning("CloudWatch Logs refused some events", extra={
                "rejected": dict(by_reason), "rejected_log_events_info": rejected_info, "events": len(batch),
                "log_group": target.log_group, "stream": target.stream})


@dataclass
class StreamBuffer:
    """The records waiting for one log stream."""

    events: list[PendingEvent] = field(default_factory=list)
    cost: int = 0  # bytes as PutLogEvents counts them

    def add(self, event: PendingEvent) -> None:
        self.events.append(event)
        self.cost += event.cost

    @property
    def full(self) -> bool:
        """Holds at least one full PutLogEvents batch."""
        return len(self.events) >= MAX_BATCH_EVENTS or self.cost >= MAX_BATCH_BYTES


class CloudWatchSink(Worker):
    """One CloudWatch Logs sink process: a member of the sink's consumer group on the delivery topic."""

    def __init__(self, settings: Settings, metrics: CloudWatchMetrics | None = None, health: Health | None = None, *,
                 insights: bool = False) -> None:
        super().__init__(settings, settings.cloudwatch_insights if insights else settings.cloudwatch,
                         settings.topics.insights if insights else settings.topics.delivery, health=health)
        self.config = settings.cloudwatch
        self.consume_max = CONSUME_BATCH
        self.consume_timeout_s = min(CONSUME_WAIT_S, self.config.flush_interval_s)
        self.group_id = self.role.group_id
        self.metrics = metrics or CloudWatchMetrics()
        self.buffers: dict[Destination, StreamBuffer] = {}
        self.offsets = PendingOffsets()
        self._committed: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._next_flush = time.monotonic() + self.config.flush_interval_s
        self.status_producer = Producer(kafka_config(settings, **{"linger.ms": 100}))
        self.status = StatusReporter.for_settings(settings, self.status_producer)
        self._sources: dict[Destination, set[tuple[str, str]]] = {}  # stream -> (trail ARN, region) feeding it
        self.writer = LogEventsWriter(self.config.retry_max_backoff_s, self.metrics, lambda: self.stopping,
                                      lambda region: aws.client(settings, "logs", region, max_attempts=1), self.wait,
                                      self._outcome)

    def handle_batch(self, records: list[Message]) -> None:
        """Buffer the records; send full streams at once and every stream each flush interval, then commit."""
        if records:
            self._take(records)
        now = time.monotonic()
        due = now >= self._next_flush
        targets = list(self.buffers) if due else [t for t, b in self.buffers.items() if b.full] + self._over_budget()
        if targets or due:
            if not self._flush(targets):
                raise WorkerStopping
            self._commit()
        if due:
            self._next_flush = time.monotonic() + self.config.flush_interval_s
        self.status.flush()
        self.status_producer.poll(0)

    def _over_budget(self) -> list[Destination]:
        """The largest streams not yet full, sent early while all buffers together hold more than
        `max_pending_bytes` (many streams, each below a full batch, could otherwise hold any amount)."""
        held = [(buffer.cost, target, True) for target, buffer in self.buffers.items() if not buffer.full]
        return over_budget(held, self.config.max_pending_bytes)[0]

    def _outcome(self, target: Destination, error: str | None) -> None:
        """A batch for `target` delivered (error None) or refused: the status of each trail feeding that stream."""
        for trail_arn, region in self._sources.get(target, ()):
            if self.trails.get(trail_arn) is not None and self.topic == self.settings.topics.delivery:
                self.status.report(trail_arn, region, "cloudwatch", error)

    def closed(self) -> None:
        self.status.flush(force=True)
        self.status_producer.flush(5)

    def finish(self) -> None:
        """A clean stop: send what is pending (each call tried once more), commit what was settled."""
        self._flush(list(self.buffers))
        self._commit()

    def trail_changed(self, arn: str, trail: Trail | None) -> None:
        log.info("trail removed" if trail is None else "trail applied", extra={"trail_arn": arn})

    def reached_end(self, partition: int, offset: int) -> None:
        if partition in self._assigned:
            self.offsets.reached(partition, offset)

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            self.offsets.read(message.partition(), message.offset(), self._buffer(message))
        self.metrics.pending.set(len(self.offsets))

    def _buffer(self, message: Message) -> bool:
        """Buffer the message's record for its stream; False if it is skipped (and counted)."""
        try:
            key = DeliveryKey.decode(message.key())
        except (ValueError, UnicodeDecodeError) as exc:
            return self._skipped("unreadable", message, str(exc))
        trail = self.trails.get(key.trail_arn)
        if trail is None:
            return self._skipped("unknown_trail", message, key.trail_arn)
        target = destination(trail, key.account, key.region)
        if target is None:
            return self._skipped("no_log_group", message)
        try:
            event = PendingEvent.from_record(message.value() or b"", message.partition(), message.offset())
        except ValueError as exc:
            return self._skipped("unreadable", message, str(exc))
        self.buffers.setdefault(target, StreamBuffer()).add(event)
        self._sources.setdefault(target, set()).add((key.trail_arn, key.region))
        return True

    def _skipped(self, reason: str, message: Message, detail: str | None = None) -> bool:
        self.metrics.skipped.labels(reason).inc()
        if detail is not None:
            log.warning("record not sent to CloudWatch Logs", extra={
                "reason": reason, "detail": detail, "partition": message.partition(), "offset": message.offset()})
        return False

    def _flush(self, targets: Iterable[Destination]) -> bool:
        """Send the buffered records of `targets`; False if the sink stopped first (the rest stays unsettled)."""
        try:
            for target in targets:
                plan = plan_batches(self.buffers.pop(target).events)
                for event in plan.oversize:
                    self.metrics.skipped.labels("oversize").inc()
                    log.warning("record over 256 KB not sent to CloudWatch Logs", extra={
                        "bytes": event.size, "stream": target.stream, "partition": event.partition,
                        "offset": event.offset})
                    self.offsets.settle(event.partition, event.offset)
                for batch in plan.batches:
                    if not self.writer.put(target, batch):
                        return False
                    for event in batch:
                        self.offsets.settle(event.partition, event.offset)
        finally:
            self.metrics.pending.set(len(self.offsets))
        return True

    def _commit(self, partitions: set[int] | None = None) -> None:
        """Commit, per partition, up to the oldest record not settled yet (only where that moved)."""
        offsets = [TopicPartition(self.topic, partition, offset)
                   for partition, offset in self.offsets.positions().items()
                   if self._committed.get(partition) != offset and (partitions is None or partition in partitions)]
        if not offsets:
            return
        try:
            committed = self.consumer.commit(offsets=offsets, asynchronous=False) or []
        except KafkaException as exc:
            log.warning("offset commit failed; the next one covers it", extra={"error": exc.args[0].str()})
            return
        for tp in committed:
            if tp.error is None:
                self._committed[tp.partition] = tp.offset

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned.update(tp.partition for tp in partitions)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        self._commit(revoked)
        self._forget(revoked)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        self._forget({tp.partition for tp in partitions})

    def _forget(self, partitions: set[int]) -> None:
        """Drop the unsent records of `partitions`: their next owner reads them from the committed offset."""
        for target, buffer in list(self.buffers.items()):
            kept = StreamBuffer()
            for event in buffer.events:
                if event.partition not in partitions:
                    kept.add(event)
            if kept.events:
                self.buffers[target] = kept
            else:
                del self.buffers[target]
        self.offsets.forget(partitions)
        self._assigned.difference_update(partitions)
        for partition in partitions:
            self._committed.pop(partition, None)
        self.metrics.pending.set(len(self.offsets))


class CloudWatchInsightSink(CloudWatchSink):
    """`kafkatrail worker cloudwatch-insights`: the CloudWatch Logs sink on the Insights topic."""

    def __init__(self, settings: Settings, metrics: CloudWatchMetrics | None = None,
                 health: Health | None = None) -> None:
        super().__init__(settings, metrics, health, insights=True)
