"""`kafkatrail worker s3`: the delivery topic into CloudTrail log files in S3, exactly once, plus notifications.

A `kafkatrail.runtime.worker.Worker` (group `s3.group_id`, read_committed, manual commits). Records are
batched per delivery key (trail, account, region) by `kafkatrail.sinks.s3_batches`; a closed batch becomes
one log file: `{"Records":[...]}` in one gzip member, at the key docs/cloudtrail.md §2.1 gives, SSE-S3 or
SSE-KMS when the trail has a KmsKeyId.

Exactly once in S3, the argument:
1. Before a file is stored, its span (delivery key, first and last offset, object key) is written to the
   journal topic and acknowledged (acks=all). From then on the file is defined: its records are the
   records of that key between those offsets, and its name is fixed.
2. The file is then stored with PutObject, retried with backoff until S3 takes it (never dropped; while
   S3 is down the sink waits and lag grows). The journal gets a `stored` record. A file S3 refuses for a
   reason retrying does not cure is parked instead (`kafkatrail.sinks.s3_parking`): journaled `parked`,
   reported, retried apart from the flow until it is stored or released, so one broken trail cannot stall
   the others.
3. The committed offset is the first record of the oldest batch that is still open or closed but not yet
   stored (`kafkatrail.sinks.s3_batches`), computed only from the records the sink was handed, never from the
   consumer's `position()`. The commit's metadata holds the journal offset from which every span that
   reaches past the committed offset can be read again.
4. On (re)assignment the sink reads those spans and resumes at the committed offset: records of spans
   that began before it are skipped (stored before that commit), spans that began after it are rebuilt
   under their journaled key from the same records (same bytes: PutObject overwrites an identical
   object), and everything else is batched afresh (`kafkatrail.sinks.s3_batches`).
`kafkatrail worker s3-insights` (`S3InsightSink`) is the same sink on the Insights topic: Insights files
under `CloudTrail-Insight` (docs/cloudtrail.md §2.4), its own consumer group and journal topic, so the
digest worker, which lists the log files of the log-file journal, never lists an Insights file.

A kill at any point therefore leaves each (trail, eventID) in exactly one file; the processors already
deliver each pair once. A stop (SIGTERM, `stop()`) ends the loop after the round of files in hand; when
S3 or the broker is failing it abandons the retries instead, leaving those files unsettled, so the commit
at close stays before them and the partition's next owner rebuilds them from the journal. Replaying the
delivery topic from offset 0 with the journal rebuilds the same objects. Notifications (SNS and the
`notifications` topic) are at-least-once: a rebuilt file is announced again.
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from botocore.exceptions import ClientError
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kafkatrail.core import aws
from kafkatrail.core.aws import AwsCallMetrics, AwsCalls
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import reader, until_end
from kafkatrail.runtime.worker import Worker, WorkerStopping
from kafkatrail.schemas.contract import DeliveryFailure, DeliveryKey, Notification, event_time_ms, scan_event_time
from kafkatrail.schemas.log_files import log_file_key, unique_part
from kafkatrail.sinks.budget import over_budget
from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.s3_batches import ClosedBatch, PartitionBatches, closed_batch
from kafkatrail.sinks.s3_parking import PERMANENT_S3_ERRORS, ParkedFile, ParkedFiles
from kafkatrail.sinks.status import StatusReporter
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
COMMIT_EVERY_S = 1.0
STORE_THREADS = 8
# librdkafka's read-ahead: 64 MiB by default, 16 here (about a second of a busy sink's input); once it is full
# librdkafka waits fetch.queue.backoff.ms (1 s by default, 10 ms here) before it fetches again
PREFETCH_KIB = 16 * 1024
OPEN_FILE_OVERHEAD = 256 * 1024  # one open file's deflate state (zlib allocates about 320 KiB and touches 190)
PERMANENT_SNS_ERRORS = frozenset({"NotFound", "NotFoundException", "AuthorizationError", "InvalidParameter",
                                  "InvalidParameterValue"})


class _File(NamedTuple):
    """A log file of one write round: its span, trail (None once deleted) and batch (body and event times)."""

    span: FileSpan
    trail: Trail | None
    batch: ClosedBatch


class S3SinkMetrics:
    """What the S3 sink serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.files = Counter("kafkatrail_s3_files_written_total", "Log files stored", ["kind"], registry=registry)
        self.bytes = Counter("kafkatrail_s3_bytes_written_total", "Compressed bytes stored", registry=registry)
        self.events = Counter("kafkatrail_s3_events_delivered_total", "Records stored in log files",
                              registry=registry)
        self.skipped = Counter("kafkatrail_s3_events_skipped_total", "Records not written, by reason", ["reason"],
                               registry=registry)
        self.aws = AwsCallMetrics(registry)
        self.notifications = Counter("kafkatrail_s3_notifications_total", "SNS notifications published",
                                     registry=registry)
        self.latency = Histogram(
            "kafkatrail_s3_event_to_stored_seconds", "From a record's eventTime to its file being stored",
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=registry)
        self.oldest_open_batch = Gauge("kafkatrail_s3_oldest_open_batch_age_seconds",
                                       "Age of the oldest log file still collecting records", registry=registry)
        self.lag = Gauge("kafkatrail_s3_consumer_lag_records", "Delivery records not yet committed",
                         registry=registry)
        self.parked = Gauge("kafkatrail_s3_parked_files", "Log files S3 refused for good, waiting for their trail "
                            "to be fixed", registry=registry)
        self.trail_files = Counter("kafkatrail_s3_trail_files_written_total", "Log files stored, by trail",
                                   ["trail"], registry=registry)
        self.last_stored = Gauge("kafkatrail_s3_last_file_stored_timestamp_seconds",
                                 "When this process last stored a log file of the trail (Unix time)", ["trail"],
                                 registry=registry)
        self.open_bytes = Gauge("kafkatrail_s3_open_file_bytes", "Memory the open log files hold: compressed bytes, "
                                "JSON not yet compressed and each file's compressor", registry=registry)
        self.early_files = Counter("kafkatrail_s3_files_closed_early_total", "Log files closed before their limits "
                                   "because the open files held max_open_bytes", registry=registry)
        self.flush_interval = Gauge("kafkatrail_s3_flush_interval_seconds",
                                    "How long a log file collects records before it is closed", registry=registry)
        self.parking = Counter("kafkatrail_s3_parked_file_outcomes_total",
                               "Log files parked, and parked files later stored or released", ["outcome"],
                               registry=registry)


class S3Sink(Worker):
    """One S3 sink process of the sink's consumer group."""

    def __init__(self, settings: Settings, metrics: S3SinkMetrics | None = None, health: Health | None = None, *,
                 insights: bool = False) -> None:
        self.topics = settings.topics
        super().__init__(settings, settings.s3_insights if insights else settings.s3,
                         self.topics.insights if insights else self.topics.delivery, health=health,
                         **{"queued.max.messages.kbytes": PREFETCH_KIB, "fetch.queue.backoff.ms": 10})
        self.config = settings.s3
        self.gzip = (self.config.gzip_engine, self.config.gzip_level)
        self.journal_topic = self.topics.s3_insight_journal if insights else self.topics.s3_journal
        self.kind = "CloudTrail-Insight" if insights else "CloudTrail"
        self.group_id = self.role.group_id
        self.metrics = metrics or S3SinkMetrics()
        self.metrics.flush_interval.set(self.config.flush_interval_s)
        self.partitions: dict[int, PartitionBatches] = {}
        self.parked = ParkedFiles(self.config.parked_retry_interval_s)
        self._journal_spans: dict[int, list[tuple[int, int]]] = {}
        self._journal_next: dict[int, int] = {}
        self._last_commit = 0.0
        self._pool = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="s3-put")
        self.s3 = aws.client(settings, "s3")
        self.sns = aws.client(settings, "sns")
        self.calls = AwsCalls(self.metrics.aws, self.config.retry_max_backoff_s, lambda: self.stopping, self.wait)
        self.journal = Producer(kafka_config(settings, **{
            "enable.idempotence": True, "acks": "all", "linger.ms": 0}))
        self.status = StatusReporter.for_settings(settings, self.journal)

    def commit_due_s(self) -> float:
        """Twice `[s3]`'s flush interval, which the Insights sink follows too (its own section has none)."""
        return max(2.0 * self.config.flush_interval_s, super().commit_due_s())

    def handle_batch(self, records: list[Message]) -> None:
        """Batch the records; store every file that closed (by size or age); commit after files, or each second.

        A stop while S3 or the broker is failing raises `WorkerStopping` out of `_write`: the files in hand stay
        unsettled, so the commit at close stays before them and the partitions' next owner rebuilds them.
        """
        closed = [batch for message in records if (batch := self._take(message)) is not None]
        closed += self._expired()
        closed += self._over_budget()
        if closed:
            self._write(closed)
        if due := self.parked.due(time.time()):
            self._retry_parked(due)
        if closed or time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self._commit()
        self.status.flush()

    def trail_changed(self, arn: str, trail: Trail | None) -> None:
        self.parked.trail_changed(arn, time.time())

    def reached_end(self, partition: int, offset: int) -> None:
        if (batches := self.partitions.get(partition)) is not None:
            batches.reached(offset)

    def closing(self) -> None:
        self._commit()
        self.status.flush(force=True)

    def closed(self) -> None:
        self.journal.flush(KAFKA_TIMEOUT_S)
        self.journal.close()
        self._pool.shutdown()

    def _take(self, message: Message) -> tuple[int, ClosedBatch] | None:
        """Add a record to its batch; returns (partition, batch) when that completed a batch."""
        batches = self.partitions.get(message.partition())
        if batches is None:
            return None
        value = message.value()
        closed = batches.add(message.key().decode(), message.offset(), value, time.monotonic(), scan_event_time(value))
        return None if closed is None else (batches.partition, closed)

    def _over_budget(self) -> list[tuple[int, ClosedBatch]]:
        """Close the largest open files early while all open files together hold more than `max_open_bytes`
        (compressed bytes and JSON not yet compressed, plus `OPEN_FILE_OVERHEAD` each for its compressor)."""
        held = [(size + OPEN_FILE_OVERHEAD, (batches, key), closable)
                for batches in self.partitions.values() for size, key, closable in batches.held()]
        early, total = over_budget(held, self.config.max_open_bytes)
        self.metrics.early_files.inc(len(early))
        self.metrics.open_bytes.set(total)
        return [(batches.partition, batches.close(key)) for batches, key in early]

    def _expired(self) -> list[tuple[int, ClosedBatch]]:
        now = time.monotonic()
        closed = [(batches.partition, batch) for batches in self.partitions.values() for batch in batches.expired(now)]
        self.metrics.oldest_open_batch.set(max((b.oldest_open_age(now) for b in self.partitions.values()),
                                               default=0.0))
        return closed

    def _write(self, closed: list[tuple[int, ClosedBatch]]) -> None:
        """Journal the new files, store every file (in parallel), then record them as stored and notify.

        Called only between consumer batches; the caller commits afterwards, when nothing is unstored.
        """
        files: list[_File] = []
        for partition, batch in closed:
            key = DeliveryKey.decode(batch.delivery_key)
            trail = self.trails.get(key.trail_arn)
            if batch.replaying is None and trail is None:
                self.metrics.skipped.labels("trail_deleted").inc(batch.records)
                log.warning("records of a deleted trail not written", extra={"trail_arn": key.trail_arn,
                                                                            "records": batch.records})
                self._settled(partition, batch)
                continue
            span = batch.replaying
            if span is None and trail is not None:  # a new file; a rebuilt one keeps its journaled span
                span = self._new_span(partition, batch, trail, key)
            if span is not None:
                files.append(_File(span, trail, batch))
        self._journal([file.span for file in files if file.batch.replaying is None])
        refusals = list(self._pool.map(lambda file: self._put(file.span, file.batch.body, file.trail), files))
        refused = [(file, error) for file, error in zip(files, refusals, strict=True) if error is not None]
        if refused:
            self._park(refused)
        stored = [file for file, error in zip(files, refusals, strict=True) if error is None]
        for file in stored:
            self.journal.produce(self.journal_topic, file.span.to_journal("stored"), file.span.delivery_key.encode(),
                                 partition=file.span.partition)
            self.parked.ended(file.span)
        for file in files:
            self._settled(file.span.partition, file.batch)
        for file in stored:
            self._report_status(file.span, "delivery")
        list(self._pool.map(lambda file: self._notify(file.span, file.trail), stored))
        for file in stored:
            self._count(file)
        self.metrics.parked.set(len(self.parked))

    def _settled(self, partition: int, batch: ClosedBatch) -> None:
        batches = self.partitions.get(partition)
        if batches is not None:
            batches.settled(batch)

    def _new_span(self, partition: int, batch: ClosedBatch, trail: Trail, key: DeliveryKey) -> FileSpan:
        delivered_at = datetime.now(UTC)
        return FileSpan(
            partition=partition, delivery_key=batch.delivery_key, first_offset=batch.first_offset,
            last_offset=batch.last_offset, bucket=trail.s3_bucket_name,
            object_key=log_file_key(key.account, key.region, delivered_at, unique_part(),
                                    prefix=trail.s3_key_prefix or "", organization_id=trail.organization_id,
                                    kind=self.kind),
            records=batch.records, sha256=batch.sha256, compressed_bytes=len(batch.body),
            oldest_event_time=min(batch.event_times), newest_event_time=max(batch.event_times),
            delivered_at=delivered_at.isoformat(timespec="seconds").replace("+00:00", "Z"))

    def _journal(self, spans: list[FileSpan]) -> None:
        """Journal the spans of new files (`file`) and wait until the broker has every one of them (acks=all)."""
        for span, journal_offset in zip(spans, self._journal_acked([(span, span.to_journal("file")) for span in spans]),
                                        strict=True):
            self._journal_spans.setdefault(span.partition, []).append((journal_offset, span.last_offset))

    def _journal_acked(self, entries: list[tuple[FileSpan, bytes]]) -> list[int]:
        """Write journal values and wait until the broker has every one (acks=all); their offsets, in order."""
        offsets: dict[int, int] = {}
        failures: list[KafkaError] = []

        def delivered(index: int, error: KafkaError | None, message: Message) -> None:
            if error is None:
                offsets[index] = message.offset()
            else:
                failures.append(error)

        for index, (span, value) in enumerate(entries):
            self.journal.produce(self.journal_topic, value, span.delivery_key.encode(), partition=span.partition,
                                 on_delivery=functools.partial(delivered, index))
        while len(offsets) + len(failures) < len(entries):
            self.journal.flush(1.0)
            if self.stopping and len(offsets) + len(failures) < len(entries):
                raise WorkerStopping
        if failures:
            raise KafkaException(failures[0])
        ordered = [offsets[index] for index in range(len(entries))]
        for (span, _), journal_offset in zip(entries, ordered, strict=True):
            self._journal_next[span.partition] = max(self._journal_next.get(span.partition, 0), journal_offset + 1)
        return ordered

    def _put(self, span: FileSpan, body: bytes, trail: Trail | None) -> ClientError | None:
        """Store one file, retrying until S3 takes it; S3's error when it refuses the file for good."""
        encryption: dict[str, Any] = {"ServerSideEncryption": "AES256"}
        if trail is not None and trail.kms_key_id:
            encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": trail.kms_key_id}
        try:
            self.calls.call("PutObject", lambda: self.s3.put_object(
                Bucket=span.bucket, Key=span.object_key, Body=body, **encryption),
                permanent=PERMANENT_S3_ERRORS, context={"key": span.object_key})
        except ClientError as exc:
            return exc
        return None

    def _park(self, refused: list[tuple[_File, ClientError]]) -> None:
        """Journal the refused files as `parked` (acknowledged), then report them: they no longer hold the commit."""
        entries = [(file.span, file.span.to_journal("parked", error=aws.error_code(error))) for file, error in refused]
        now = time.time()
        for (file, error), journal_offset in zip(refused, self._journal_acked(entries), strict=True):
            self.parked.park(file.span, aws.error_code(error), journal_offset, now)
            self._report("parked", file.span, error)

    def _report(self, state: str, span: FileSpan, error: ClientError | None = None, reason: str = "") -> None:
        """A parked file's news: the delivery-failures topic, the outcome counter and a log line."""
        code = aws.error_code(error) if error is not None else reason
        message = str(error)[:300] if error is not None else ""
        failure = DeliveryFailure(state, span.trail_arn, span.bucket, span.object_key, span.records, code, message,
                                  datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
        self.journal.produce(self.topics.delivery_failures, failure.encode(), span.trail_arn.encode())
        if state == "parked":
            self._report_status(span, "delivery", f"{code}: {error_message(error)}" if error is not None else code)
        elif state == "stored":
            self._report_status(span, "delivery")
        self.metrics.parking.labels(state).inc()
        self.metrics.parked.set(len(self.parked))
        level = logging.INFO if state == "stored" else logging.ERROR
        log.log(level, f"log file {state}", extra={"trail_arn": span.trail_arn, "bucket": span.bucket,
                                                   "object_key": span.object_key, "error_code": code,
                                                   "records": span.records})

    def _retry_parked(self, due: list[ParkedFile]) -> None:
        """Try parked files again: store them (under a new key if the trail moved), or release them for good."""
        now = time.time()
        for parked in due:
            if self.stopping:
                return
            if parked.span.trail_arn not in self.trails:
                self._release(parked.span, "TrailDeleted")
        due = [parked for parked in due if parked.span.trail_arn in self.trails]
        for parked, values in zip(due, self._read_spans([parked.span for parked in due]), strict=True):
            if self.stopping:
                return
            span = parked.span
            trail = self.trails[span.trail_arn]
            if values is None:
                self._release(span, "RecordsExpired")
                continue
            batch = closed_batch(span.delivery_key, span.first_offset, span.last_offset,
                                 ((value, scan_event_time(value)) for value in values), self.gzip)
            if (span.bucket, _folder(span.object_key)) != (trail.s3_bucket_name, self._folder_for(trail, span)):
                span = self._new_span(span.partition, batch, trail, DeliveryKey.decode(span.delivery_key))
                self._journal_acked([(span, span.to_journal("file"))])
                self.parked.moved(parked, span)
            error = self._put(span, batch.body, trail)
            if error is not None:
                self.parked.failed_again(parked, aws.error_code(error), now)
                log.warning("parked log file refused again", extra={
                    "trail_arn": span.trail_arn, "object_key": span.object_key, "error_code": aws.error_code(error),
                    "attempts": parked.attempts})
                continue
            self._journal_acked([(span, span.to_journal("stored"))])
            self.parked.ended(span)
            self._report("stored", span)
            self._notify(span, trail)

    def _release(self, span: FileSpan, reason: str) -> None:
        self._journal_acked([(span, span.to_journal("released", error=reason))])
        self.parked.ended(span)
        self._report("released", span, reason=reason)

    def _read_spans(self, spans: list[FileSpan]) -> list[list[bytes] | None]:
        """The delivery records of each journaled file, read again from the delivery topic by one consumer, in one
        pass per partition for all of its files; None for a file whose records are gone."""
        if not spans:
            return []
        by_partition: dict[int, list[int]] = {}
        for index, span in enumerate(spans):
            by_partition.setdefault(span.partition, []).append(index)
        values: dict[int, list[bytes]] = {}  # index in `spans` -> its records (absent: its first one is gone)
        consumer = reader(self.settings, f"{self.group_id}-parked")
        try:
            for partition, indexes in by_partition.items():
                low, _ = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=KAFKA_TIMEOUT_S)
                readable = [index for index in indexes if spans[index].first_offset >= low]
                if not readable:
                    continue
                by_key: dict[bytes, list[int]] = {}
                for index in readable:
                    values[index] = []
                    by_key.setdefault(spans[index].delivery_key.encode(), []).append(index)
                first = min(spans[index].first_offset for index in readable)
                last = max(spans[index].last_offset for index in readable)
                consumer.assign([TopicPartition(self.topic, partition, first)])
                for message in until_end(consumer, [partition], 10 * KAFKA_TIMEOUT_S, self.topic):
                    offset = message.offset()
                    if offset > last:
                        break
                    for index in by_key.get(message.key(), ()):
                        if spans[index].first_offset <= offset <= spans[index].last_offset:
                            values[index].append(message.value())
        finally:
            consumer.close()
        return [values[index] if len(values.get(index, ())) == span.records else None
                for index, span in enumerate(spans)]

    def _folder_for(self, trail: Trail, span: FileSpan) -> str:
        """The folder the trail puts this span's file in today (its prefix or organization may have changed)."""
        key = DeliveryKey.decode(span.delivery_key)
        delivered_at = datetime.fromisoformat(span.delivered_at)
        return _folder(log_file_key(key.account, key.region, delivered_at, "0" * 16, prefix=trail.s3_key_prefix or "",
                                    organization_id=trail.organization_id, kind=self.kind))

    def _report_status(self, span: FileSpan, kind: str, error: str | None = None) -> None:
        """GetTrailStatus's news of one file (Insights files are not part of a trail's status)."""
        if self.kind == "CloudTrail":
            self.status.report(span.trail_arn, DeliveryKey.decode(span.delivery_key).region, kind, error)

    def _notify(self, span: FileSpan, trail: Trail | None) -> None:
        notice = Notification(span.bucket, (span.object_key,)).encode()
        self.journal.produce(self.topics.notifications, notice, span.trail_arn.encode())
        if trail is None or not trail.sns_topic_name:
            return
        topic_arn = trail.sns_topic_name
        if not topic_arn.startswith("arn:"):
            topic_arn = f"arn:{trail.partition}:sns:{trail.home_region}:{trail.account_id}:{trail.sns_topic_name}"
        try:
            self.calls.call("Publish", lambda: self.sns.publish(TopicArn=topic_arn, Message=notice.decode()),
                            permanent=PERMANENT_SNS_ERRORS, context={"topic_arn": topic_arn})
            self.metrics.notifications.inc()
            self._report_status(span, "notification")
        except ClientError as exc:
            log.error("SNS notification not published", extra={"topic_arn": topic_arn, "error": str(exc)})
            self._report_status(span, "notification", f"{aws.error_code(exc)}: {error_message(exc)}")
        except WorkerStopping:
            log.error("SNS notification not published: stopped while SNS was failing",
                      extra={"topic_arn": topic_arn, "object_key": span.object_key})

    def _count(self, file: _File) -> None:
        self.metrics.files.labels("rebuilt" if file.batch.replaying else "new").inc()
        self.metrics.bytes.inc(len(file.batch.body))
        self.metrics.events.inc(file.batch.records)
        now = time.time()
        if self.kind == "CloudTrail":
            self.metrics.trail_files.labels(file.span.trail_arn).inc()
            self.metrics.last_stored.labels(file.span.trail_arn).set(now)
        observe = self.metrics.latency.observe
        for text, records in file.batch.event_times.items():
            age = now - event_time_ms(text) / 1000
            for _ in range(records):
                observe(age)

    def _commit(self) -> None:
        """Commit, per partition, where a restart must resume (`PartitionBatches.commit_offset`)."""
        self._last_commit = time.monotonic()
        offsets = []
        for partition, batches in self.partitions.items():
            committed = batches.commit_offset()
            spans = [(jo, last) for jo, last in self._journal_spans.get(partition, []) if last >= committed]
            self._journal_spans[partition] = spans
            journal_from = min((jo for jo, _ in spans), default=self._journal_next.get(partition, 0))
            if (pinned := self.parked.pinned_journal_offset(partition)) is not None:
                journal_from = min(journal_from, pinned)
            offsets.append(TopicPartition(self.topic, partition, committed,
                                          metadata=orjson.dumps({"journal": journal_from}).decode()))
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    log.warning("offset commit failed", extra={"error": exc.args[0].str()})
        self.metrics.lag.set(sum(self._high_watermark(tp) - tp.offset for tp in offsets))

    def _high_watermark(self, tp: TopicPartition) -> int:
        """The partition's end as last seen by the consumer's fetches (no request to the broker)."""
        _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        return max(high, tp.offset)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        committed = {tp.partition: tp for tp in self.consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)}
        starts = {p: max(tp.offset, 0) for p, tp in committed.items()}
        journal_from = {p: orjson.loads(tp.metadata)["journal"] if tp.metadata else 0 for p, tp in committed.items()}
        spans = self._read_journal(journal_from, starts)
        for partition, start in starts.items():
            self.partitions[partition] = PartitionBatches(
                partition, start, spans[partition], max_records=self.config.max_file_records,
                max_bytes=self.config.max_file_bytes, flush_interval_s=self.config.flush_interval_s,
                gzip=self.gzip)
        log.info("journal read", extra={"partitions": sorted(starts),
                                        "journaled_spans": sum(len(s) for s in spans.values())})

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Commit what is stored, then forget the partitions: their next owner rebuilds the rest."""
        self._commit()
        self.on_lost(partitions)

    def on_lost(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.pop(tp.partition, None)
            self._journal_spans.pop(tp.partition, None)
        self.parked.forget(tp.partition for tp in partitions)
        self.metrics.parked.set(len(self.parked))

    def _read_journal(self, journal_from: dict[int, int], committed: dict[int, int]) -> dict[int, list[FileSpan]]:
        """Per partition, the journaled spans that reach its committed offset or beyond."""
        spans: dict[int, list[FileSpan]] = {p: [] for p in journal_from}
        if not journal_from:
            return spans
        for partition, offset in journal_from.items():
            self._journal_spans[partition] = []
            self._journal_next[partition] = offset
        consumer = reader(self.settings, f"{self.group_id}-journal")
        now = time.time()
        try:
            consumer.assign([TopicPartition(self.journal_topic, p, offset or OFFSET_BEGINNING)
                             for p, offset in journal_from.items()])
            for message in until_end(consumer, journal_from, 10 * KAFKA_TIMEOUT_S, self.journal_topic):
                partition = message.partition()
                self._journal_next[partition] = message.offset() + 1
                kind, span, error = FileSpan.journal_entry(message.value())
                self.parked.apply(kind, span, message.offset(), error, now)
                if kind == "file" and span.last_offset >= committed[partition]:
                    spans[partition].append(span)
                    self._journal_spans[partition].append((message.offset(), span.last_offset))
        finally:
            consumer.close()
        return spans


def error_message(error: ClientError) -> str:
    """AWS's message of a refused call (no request details)."""
    return str(error.response.get("Error", {}).get("Message", ""))[:300]


def _folder(object_key: str) -> str:
    return object_key.rsplit("/", 1)[0]


class S3InsightSink(S3Sink):
    """`kafkatrail worker s3-insights`: the S3 sink on the Insights topic, writing `CloudTrail-Insight` files."""

    def __init__(self, settings: Settings, metrics: S3SinkMetrics | None = None, health: Health | None = None) -> None:
        super().__init__(settings, metrics, health, insights=True)

