"""`kafkatrail worker digests`: one signed digest file per period for each (trail, account, region) chain.

Input: the S3 sink's journal (`kafkatrail.sinks.journal`). A `stored` record is written only after PutObject succeeded,
and a file rebuilt after a sink crash has the same bytes under the same key, so a stored file's SHA-256 is
final: it can be listed at once. Repeated `stored` records of one key are listed once.

Membership: a file is listed in the first digest written after its `stored` record was read. At each
period end E the worker reads the journal up to the end offsets it sees at E, writes one digest per known
chain for [previous end, E) (an empty one when nothing was stored), and only then commits its journal
offsets. So a crash before the commit re-reads only files of the digests just written (skipped: they are in
the chain's latest digest) or of none. The offsets committed are those after the last journal record taken
(or the end of a partition, once the consumer reported reaching it), never the consumer's `position()`,
which can run ahead of what was handed to the worker.

Chain state survives a restart without a store of its own: the previous digest of a chain is found again
by listing the chain's digest folder in S3 (today's date folder, then earlier days, up to `lookback_days`),
and its signature metadata and content hash link the next digest to it. At start, the chains of every
trail with log file validation are discovered the same way, so they keep getting (empty) digests.
Run one digest worker per deployment: two would write two chains.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from kafkatrail.core import aws
from kafkatrail.core.aws import AwsCallMetrics, AwsCalls
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.runtime.worker import Worker
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.sinks.digest_files import (
    ChainId,
    LogFileEntry,
    Previous,
    accounts_folder,
    build_digest,
    digest_document,
    key_time,
    period_end_after,
    previous_from_digest,
)
from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.sinks.status import StatusReporter
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
REMEMBERED_DIGESTS = 24


class DigestMetrics:
    """What the digest worker serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.digests = Counter("kafkatrail_digests_written_total", "Digest files stored", ["kind"], registry=registry)
        self.files = Counter("kafkatrail_digests_log_files_listed_total", "Log files listed in digests",
                             registry=registry)
        self.aws = AwsCallMetrics(registry)
        self.chains = Gauge("kafkatrail_digests_chains", "Digest chains this worker extends", registry=registry)


@dataclass
class ChainState:
    """One chain's link to its latest digest and the files waiting for the next one."""

    chain: ChainId
    start: datetime
    previous: Previous | None
    pending: dict[str, LogFileEntry] = field(default_factory=dict)
    listed: deque[set[str]] = field(default_factory=lambda: deque(maxlen=REMEMBERED_DIGESTS))

    def add(self, entry: LogFileEntry) -> bool:
        """Queue a stored file for the next digest, unless it is queued or in one of the last digests already."""
        if entry.key in self.pending or any(entry.key in keys for keys in self.listed):
            return False
        self.pending[entry.key] = entry
        return True

    def advance(self, stored: Previous) -> None:
        """The digest of the pending files is stored: the next one starts where it ended and links to it."""
        self.previous = stored
        self.start = stored.end
        self.listed.append(set(self.pending))
        self.pending = {}


def chain_of(trail: Trail, account: str, region: str) -> ChainId:
    return ChainId(trail.name, trail.home_region, trail.s3_bucket_name, trail.s3_key_prefix or "",
                   trail.organization_id, account, region)


def validating(trail: Trail | None) -> bool:
    return trail is not None and trail.logging and trail.log_file_validation_enabled


class DigestWorker(Worker):
    """The digest writer: reads `stored` journal records, writes signed digests at every period end."""

    def __init__(self, settings: Settings, metrics: DigestMetrics | None = None, health: Health | None = None) -> None:
        super().__init__(settings, settings.digests, settings.topics.s3_journal, health=health)
        self.config = settings.digests
        self.metrics = metrics or DigestMetrics()
        self.chains: dict[tuple[str, str, str], ChainState] = {}
        self._next: dict[int, int] = {}  # partition -> offset after the last journal record taken
        self._next_end = period_end_after(time.time(), self.config.period_s)
        self.s3 = aws.client(settings, "s3")
        self.calls = AwsCalls(self.metrics.aws, self.config.retry_max_backoff_s, lambda: self.stopping, self.wait)
        kms = aws.client(settings, "kms") if settings.keys.kms_key_id else None
        self.keys = SigningKeys(settings.keys.folder, settings.keys.rotation_s, settings.keys.kms_key_id, kms)
        self.admin = AdminClient(kafka_config(settings))
        self.status_producer = Producer(kafka_config(settings, **{"linger.ms": 100}))
        self.status = StatusReporter.for_settings(settings, self.status_producer)

    def attach(self) -> None:
        """Assign every journal partition at its committed offset (one digest worker reads them all), then find
        the chains again in S3."""
        partitions = self.consumer.list_topics(self.topic, timeout=KAFKA_TIMEOUT_S).topics[self.topic].partitions
        committed = self.consumer.committed([TopicPartition(self.topic, p) for p in sorted(partitions)],
                                            timeout=KAFKA_TIMEOUT_S)
        self.consumer.assign([TopicPartition(self.topic, tp.partition, max(tp.offset, OFFSET_BEGINNING))
                              for tp in committed])
        self._next = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        self.keys.current()
        self._discover_chains()
        self._next_end = period_end_after(time.time(), self.config.period_s)
        self.health.ready = True
        log.info("chains found", extra={"chains": len(self.chains), "next_digest_end": self._next_end.isoformat()})

    def handle_batch(self, records: list[Message]) -> None:
        """Take the journal records; at a period end, read the journal to its end, write the digests, commit.

        A stop while S3 is failing raises `WorkerStopping`: nothing more is written or committed, and the next
        start re-reads the uncommitted journal (files already in a chain's latest digest are skipped).
        """
        for message in records:
            self._take(message)
        if time.time() >= self._next_end.timestamp():
            self._read_to_end()
            self._write_digests(self._next_end)
            self._commit()
            self._next_end = period_end_after(time.time(), self.config.period_s)
        self.status.flush()
        self.status_producer.poll(0)

    def closed(self) -> None:
        self.status.flush(force=True)
        self.status_producer.flush(KAFKA_TIMEOUT_S)

    def reached_end(self, partition: int, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset)

    def _take(self, message: Message) -> None:
        self._next[message.partition()] = max(self._next.get(message.partition(), 0), message.offset() + 1)
        kind, span = FileSpan.from_journal(message.value())
        if kind != "stored":
            return
        key = DeliveryKey.decode(span.delivery_key)
        trail_arn, account, region = key.trail_arn, key.account, key.region
        state = self.chains.get((trail_arn, account, region))
        if state is None:
            trail = self.trails.get(trail_arn)
            if not validating(trail):
                return
            state = self._chain(trail, account, region)  # type: ignore[arg-type]
        state.add(LogFileEntry(span.bucket, span.object_key, span.sha256, span.oldest_event_time,
                               span.newest_event_time))

    def _chain(self, trail: Trail, account: str, region: str) -> ChainState:
        """The state of a chain, found again in S3 the first time this process meets it."""
        ident = (trail.arn, account, region)
        state = self.chains.get(ident)
        if state is None:
            chain = chain_of(trail, account, region)
            previous, listed = self._find_latest_digest(chain)
            start = previous.end if previous else datetime.fromtimestamp(int(time.time()), UTC)
            state = ChainState(chain, start, previous)
            if listed:
                state.listed.append(listed)
            self.chains[ident] = state
            self.metrics.chains.set(len(self.chains))
        return state

    def _discover_chains(self) -> None:
        """Every chain with a digest in S3 of the trails that validate: accounts, then regions, by delimiter."""
        for trail in [t for t in self.trails.values() if validating(t)]:
            root = accounts_folder(trail.s3_key_prefix or "", trail.organization_id)
            for account_folder in self._folders(trail.s3_bucket_name, root):
                account = account_folder.removeprefix(root).rstrip("/")
                if not (account.isdigit() and len(account) == 12):
                    continue
                for region_folder in self._folders(trail.s3_bucket_name, f"{account_folder}CloudTrail-Digest/"):
                    region = region_folder.rstrip("/").rsplit("/", 1)[-1]
                    ident = (trail.arn, account, region)
                    if ident not in self.chains and self._chain(trail, account, region).previous is None:
                        del self.chains[ident]  # another trail's digests share this folder
        self.metrics.chains.set(len(self.chains))

    def _folders(self, bucket: str, prefix: str) -> list[str]:
        pages = self._call("ListObjectsV2", lambda token: self.s3.list_objects_v2(
            Bucket=bucket, Prefix=prefix, Delimiter="/", **({"ContinuationToken": token} if token else {})),
            paginate=True)
        return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]

    def _find_latest_digest(self, chain: ChainId) -> tuple[Previous | None, set[str]]:
        """The newest digest of the chain (looking back day folder by day folder) and the files it lists."""
        anything = self._call("ListObjectsV2", lambda _: self.s3.list_objects_v2(
            Bucket=chain.bucket, Prefix=chain.folder, MaxKeys=1))
        if not anything.get("Contents"):
            return None, set()
        today = datetime.now(UTC)
        for days_back in range(self.config.lookback_days + 1):
            folder = chain.day_folder(today - timedelta(days=days_back))
            pages = self._call("ListObjectsV2", lambda token, folder=folder: self.s3.list_objects_v2(
                Bucket=chain.bucket, Prefix=folder, **({"ContinuationToken": token} if token else {})), paginate=True)
            keys = [item["Key"] for page in pages for item in page.get("Contents", []) if chain.owns(item["Key"])]
            if keys:
                key = max(keys, key=key_time)
                response = self._call("GetObject", lambda _, key=key: self.s3.get_object(Bucket=chain.bucket, Key=key))
                content = gzip.decompress(response["Body"].read())
                previous = previous_from_digest(chain.bucket, key, content, response["Metadata"]["signature"])
                listed = {entry["s3Object"] for entry in json.loads(content)["logFiles"]}
                log.info("chain found again", extra={"digest": key})
                return previous, listed
        return None, set()

    def _read_to_end(self) -> None:
        """Consume until every partition has been taken up to the end offset it has now.

        The end offsets come from an admin client: asked on the consumer, each waits behind its fetch long-poll.
        While the broker cannot tell them (it is down or restarting), the digests are written with what was
        read: files not read yet go into the next digest, as files stored late always do.
        """
        assignment = self.consumer.assignment()
        try:
            latest = self.admin.list_offsets({TopicPartition(self.topic, tp.partition): OffsetSpec.latest()
                                              for tp in assignment}, request_timeout=KAFKA_TIMEOUT_S)
            ends = {tp.partition: future.result().offset for tp, future in latest.items()}
        except KafkaException as exc:
            log.warning("journal end unknown: the broker did not answer; digests list what was read",
                        extra={"error": exc.args[0].str()})
            return
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping:
            if all(self._next.get(p, 0) >= end for p, end in ends.items()):
                return
            records, reached = self.sort(self.consumer.consume(1000, timeout=0.2))
            for message in records:
                self._take(message)
            for _, partition, offset in reached:
                self.reached_end(partition, offset)
        log.warning("journal not read to its end before the digest; late files go to the next digest")

    def _write_digests(self, end: datetime) -> None:
        """One digest per chain; a chain whose trail stopped validating gets a last one for its pending files."""
        for ident, state in list(self.chains.items()):
            trail = self.trails.get(ident[0])
            active = validating(trail)
            if active:
                state.chain = chain_of(trail, ident[1], ident[2])  # type: ignore[arg-type]
            if (active or state.pending) and state.start < end:
                self._write_digest(state, end)
                self.status.report(ident[0], ident[2], "digest")
            if not active:
                del self.chains[ident]
        self.metrics.chains.set(len(self.chains))

    def _write_digest(self, state: ChainState, end: datetime) -> None:
        key = self.keys.current()
        files = sorted(state.pending.values(), key=lambda entry: entry.key)
        document = digest_document(state.chain, state.start, end, files, state.previous, key.fingerprint)
        signed = build_digest(document, lambda message: self.keys.sign(key, message))
        self._call("PutObject", lambda _: self.s3.put_object(
            Bucket=state.chain.bucket, Key=document["digestS3Object"], Body=signed.body, Metadata=signed.metadata,
            ServerSideEncryption="AES256"))
        state.advance(signed.previous_for_next)
        self.metrics.digests.labels("files" if files else "empty").inc()
        self.metrics.files.inc(len(files))

    def _commit(self) -> None:
        """Commit the offsets after the journal records taken (all of them are in the digests just written)."""
        taken = [TopicPartition(self.topic, partition, offset) for partition, offset in self._next.items()]
        if not taken:
            return
        try:
            self.consumer.commit(offsets=taken, asynchronous=False)
        except KafkaException as exc:  # the next period's commit covers these offsets too
            log.warning("journal offsets not committed: the broker did not answer", extra={"error": exc.args[0].str()})

    def _call(self, call: str, attempt: Any, paginate: bool = False) -> Any:
        """An S3 call made until it succeeds (`AwsCalls`); with `paginate`, every page of a list call."""
        if not paginate:
            return self.calls.call(call, lambda: attempt(None))
        pages: list[Any] = []
        token = None
        while True:
            response = self.calls.call(call, functools.partial(attempt, token))
            pages.append(response)
            token = response.get("NextContinuationToken")
            if not token:
                return pages
