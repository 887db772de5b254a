"""`kafkatrail worker digests`: one signed digest file per period for each (trail, account, region) chain.

Input: the S3 sink's journal (`kafkatrail.sinks.journal`). A `stored` record is written only after PutObject succeeded,
and a file rebuilt after a sink crash has the same bytes under the same key, so a stored file's SHA-256 is
final: it can be listed at once. Repeated `stored` records of one key are listed once.

Membership: a file is listed in the first digest written after its `stored` record was read. At each
period end E the worker reads the journal up to the end offsets it sees at E, writes the digests of every
owned chain up to E (an empty one when nothing was stored), and only then commits its journal offsets. So a
crash before the commit re-reads only files of the digests just written (skipped: they are listed in them)
or of none. The offsets committed are those after the last journal record taken (or the end of a partition,
once the consumer reported reaching it in the same assignment), never the consumer's `position()`, which can
run ahead of what was handed to the worker.

Any number of digest workers may run; each chain has one owner, decided by Kafka:
1. Ownership. The processors key delivery records by (trail, account, region) with Kafka's murmur2
   partitioner, and the journal has one partition per delivery partition, so every file of a chain is
   journaled in one partition: the chain's partition (`key_partition` of its delivery key, also for a chain
   with no file yet). The workers share a consumer group on the journal; a worker extends only the chains of
   the partitions assigned to it. On assignment it finds those chains again in S3 (below) and reads their
   partitions from the committed offsets; on revocation it forgets them without committing (its offsets
   were committed with its last digests; the files taken since are read again by the next owner). A killed
   owner's partitions move when its session times out (`session_timeout_s`); the new owner writes the
   periods missed in between at its first period end, so the takeover bound is the session timeout plus
   one period. A stopped worker leaves the group at once.
2. Fencing in S3. An owner that lost its partitions without noticing yet (stalled in S3 retries past the
   poll interval, paused) may still write. So the chain is made so that a late writer cannot fork it: a
   digest's key is a function of its chain and period end alone, every digest covers exactly the period
   after its predecessor's end (a chain never skips a period: missed ones are written, empty, in order),
   and every digest is stored with `If-None-Match: *`. The key of the successor of a digest is therefore
   fixed, at most one object can be stored under it, and a writer that finds it taken (412) adopts the
   stored digest as its predecessor, drops the files listed there from its pending ones and goes on with
   the next period. A chain's first digest ends at the first period end after the journal timestamp of the
   chain's first `stored` record, which every reader of the partition sees alike. Two digests for one chain
   period, or two digests naming one predecessor, cannot exist.
3. Each file in one digest. A file is listed only if it is not listed in the chain's last
   `REMEMBERED_DIGESTS` digests (`ChainState.listed`): those this worker wrote or adopted, and, for a chain
   it takes over, those it reads back from S3 when it finds the chain again. So a file is not listed again
   when a new owner re-reads the journal from the last commit (files of digests written before a crash, or
   listed by a late writer in a digest adopted since), nor when a `stored` record comes twice: an S3 sink
   that takes over a partition rebuilds the files its predecessor stored but did not commit, under the same
   key, and journals them again, possibly after the digest worker's own handover (the scale-out test's case).
   The horizon is 24 periods (a day of hourly digests): a repeat later than that would be listed again.

Chain state survives a restart without a store of its own: the previous digest of a chain is found again
by listing the chain's digest folder in S3 (today's date folder, then earlier days, up to `lookback_days`),
and its signature metadata and content hash link the next digest to it. On assignment, the chains of every
trail with log file validation whose partition is assigned are discovered the same way, so they keep
getting (empty) digests, each from one owner. Every worker must have the same `period_s`.
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

from botocore.exceptions import ClientError
from confluent_kafka import KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from kafkatrail.core import aws
from kafkatrail.core.aws import AwsCallMetrics, AwsCalls
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import key_partition
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
TAKEN = frozenset({"PreconditionFailed"})  # If-None-Match: a digest is stored under the key already


class DigestMetrics:
    """What the digest worker serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.digests = Counter("kafkatrail_digests_written_total", "Digest files stored", ["kind"], registry=registry)
        self.adopted = Counter("kafkatrail_digests_adopted_total",
                               "Chain periods another digest worker had written first", registry=registry)
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
    partition: int = 0
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

    def adopt(self, stored: Previous, listed: set[str]) -> None:
        """Another writer stored this period's digest: link to it; its files are not pending any more."""
        self.previous = stored
        self.start = stored.end
        self.listed.append(listed)
        self.pending = {key: entry for key, entry in self.pending.items() if key not in listed}


def chain_of(trail: Trail, account: str, region: str) -> ChainId:
    return ChainId(trail.name, trail.home_region, trail.s3_bucket_name, trail.s3_key_prefix or "",
                   trail.organization_id, account, region)


def validating(trail: Trail | None) -> bool:
    return trail is not None and trail.logging and trail.log_file_validation_enabled


class DigestWorker(Worker):
    """The digest writer: reads `stored` journal records of its partitions, writes their chains' digests."""

    def __init__(self, settings: Settings, metrics: DigestMetrics | None = None, health: Health | None = None) -> None:
        super().__init__(settings, settings.digests, settings.topics.s3_journal, health=health)
        self.config = settings.digests
        self.metrics = metrics or DigestMetrics()
        self.chains: dict[tuple[str, str, str], ChainState] = {}
        self.owned: set[int] = set()  # the journal partitions assigned: their chains are this worker's
        self._next: dict[int, int] = {}  # partition -> offset after the last journal record taken
        self._assignments = self._batch_assignment = 0  # assignments so far; and when the batch in hand began
        self._next_end = period_end_after(time.time(), self.config.period_s)
        self.s3 = aws.client(settings, "s3")
        self.calls = AwsCalls(self.metrics.aws, self.config.retry_max_backoff_s, lambda: self.stopping, self.wait)
        kms = aws.client(settings, "kms") if settings.keys.kms_key_id else None
        self.keys = SigningKeys(settings.keys.folder, settings.keys.rotation_s, settings.keys.kms_key_id, kms)
        self.admin = AdminClient(kafka_config(settings))
        self.status_producer = Producer(kafka_config(settings, **{"linger.ms": 100}))
        self.status = StatusReporter.for_settings(settings, self.status_producer)

    def start(self) -> None:
        """The signing key, and the delivery topic's partition count (asked here: a metadata call inside the
        consumer's rebalance callback breaks confluent-kafka's callback state)."""
        self.keys.current()
        delivery = self.settings.topics.delivery
        self._delivery_partitions = len(self.admin.list_topics(delivery, timeout=KAFKA_TIMEOUT_S)
                                        .topics[delivery].partitions)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Take the partitions' chains: offsets from the commits, then the chains found in S3."""
        self._assignments += 1
        committed = self.consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)
        for tp in committed:
            self.owned.add(tp.partition)
            if tp.offset >= 0:
                self._next[tp.partition] = tp.offset
        self._discover_chains({tp.partition for tp in committed})
        self._next_end = period_end_after(time.time(), self.config.period_s)
        log.info("chains found", extra={"chains": len(self.chains), "next_digest_end": self._next_end.isoformat()})

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Forget the partitions' chains, committing nothing: the next owner reads on from the last commit."""
        gone = {tp.partition for tp in partitions}
        self.owned -= gone
        for partition in gone:
            self._next.pop(partition, None)
        self.chains = {ident: state for ident, state in self.chains.items() if state.partition not in gone}
        self.metrics.chains.set(len(self.chains))

    def handle_batch(self, records: list[Message]) -> None:
        """Take the journal records; at a period end, read the journal to its end, write the digests, commit.

        A stop while S3 is failing raises `WorkerStopping`: nothing more is written or committed, and the next
        owner re-reads the uncommitted journal (files already in a chain's latest digests are skipped).
        """
        self._batch_assignment = self._assignments
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
        """An end the loop consumed before this batch; stale when the partitions were assigned again while the
        batch read the journal to its end (the consumer then reads again from the commit, below `offset`)."""
        if self._batch_assignment == self._assignments:
            self._reached(partition, offset)

    def _reached(self, partition: int, offset: int) -> None:
        if partition in self.owned:
            self._next[partition] = max(self._next.get(partition, 0), offset)

    def _take(self, message: Message) -> None:
        partition = message.partition()
        if partition not in self.owned:
            return
        self._next[partition] = max(self._next.get(partition, 0), message.offset() + 1)
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
            first_stored = datetime.fromtimestamp(message.timestamp()[1] // 1000, UTC)
            state = self._chain(trail, account, region, partition, first_stored)  # type: ignore[arg-type]
        state.add(LogFileEntry(span.bucket, span.object_key, span.sha256, span.oldest_event_time,
                               span.newest_event_time))

    def _chain(self, trail: Trail, account: str, region: str, partition: int, first_stored: datetime) -> ChainState:
        """The state of a chain, found again in S3 the first time this owner meets it; a chain with no digest
        starts at `first_stored`, the journal time of its first file (the same for every reader)."""
        ident = (trail.arn, account, region)
        state = self.chains.get(ident)
        if state is None:
            chain = chain_of(trail, account, region)
            previous, listed = self._find_latest_digests(chain)
            state = ChainState(chain, previous.end if previous else first_stored, previous, partition)
            state.listed.extend(listed)
            self.chains[ident] = state
            self.metrics.chains.set(len(self.chains))
        return state

    def _discover_chains(self, partitions: set[int]) -> None:
        """Every chain of `partitions` with a digest in S3, of the trails that validate: accounts, then regions,
        by delimiter; a chain's partition is its delivery key's."""
        for trail in [t for t in self.trails.values() if validating(t)]:
            root = accounts_folder(trail.s3_key_prefix or "", trail.organization_id)
            for account_folder in self._folders(trail.s3_bucket_name, root):
                account = account_folder.removeprefix(root).rstrip("/")
                if not (account.isdigit() and len(account) == 12):
                    continue
                for region_folder in self._folders(trail.s3_bucket_name, f"{account_folder}CloudTrail-Digest/"):
                    region = region_folder.rstrip("/").rsplit("/", 1)[-1]
                    ident = (trail.arn, account, region)
                    partition = key_partition(DeliveryKey(*ident).encode(), self._delivery_partitions)
                    if ident in self.chains or partition not in partitions:
                        continue
                    if self._chain(trail, account, region, partition, datetime.now(UTC)).previous is None:
                        del self.chains[ident]  # another trail's digests share this folder
        self.metrics.chains.set(len(self.chains))

    def _folders(self, bucket: str, prefix: str) -> list[str]:
        pages = self._call("ListObjectsV2", lambda token: self.s3.list_objects_v2(
            Bucket=bucket, Prefix=prefix, Delimiter="/", **({"ContinuationToken": token} if token else {})),
            paginate=True)
        return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]

    def _find_latest_digests(self, chain: ChainId) -> tuple[Previous | None, list[set[str]]]:
        """The newest digest of the chain (looking back day folder by day folder) and the files listed in it and
        in the digests before it, up to `REMEMBERED_DIGESTS` digests, oldest first."""
        anything = self._call("ListObjectsV2", lambda _: self.s3.list_objects_v2(
            Bucket=chain.bucket, Prefix=chain.folder, MaxKeys=1))
        if not anything.get("Contents"):
            return None, []
        today = datetime.now(UTC)
        for days_back in range(self.config.lookback_days + 1):
            folder = chain.day_folder(today - timedelta(days=days_back))
            pages = self._call("ListObjectsV2", lambda token, folder=folder: self.s3.list_objects_v2(
                Bucket=chain.bucket, Prefix=folder, **({"ContinuationToken": token} if token else {})), paginate=True)
            keys = [item["Key"] for page in pages for item in page.get("Contents", []) if chain.owns(item["Key"])]
            if keys:
                latest, listed, before = self._read_digest(chain.bucket, max(keys, key=key_time))
                lists = [listed]
                while before and len(lists) < REMEMBERED_DIGESTS:
                    _, listed, before = self._read_digest(*before)
                    lists.insert(0, listed)
                log.info("chain found again", extra={"digest": latest.key, "digests_read": len(lists)})
                return latest, lists
        return None, []

    def _read_digest(self, bucket: str, key: str) -> tuple[Previous, set[str], tuple[str, str] | None]:
        """The link a stored digest provides, the log files it lists and its predecessor's (bucket, key)."""
        response = self._call("GetObject", lambda _: self.s3.get_object(Bucket=bucket, Key=key))
        content = gzip.decompress(response["Body"].read())
        document = json.loads(content)
        before = document["previousDigestS3Object"]
        return (previous_from_digest(bucket, key, content, response["Metadata"]["signature"]),
                {entry["s3Object"] for entry in document["logFiles"]},
                (document["previousDigestS3Bucket"], before) if before else None)

    def _read_to_end(self) -> None:
        """Consume until every owned partition has been taken up to the end offset it has now.

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
            if all(self._next.get(p, 0) >= end for p, end in ends.items() if p in self.owned):
                return
            records, reached = self.sort(self.consumer.consume(1000, timeout=0.2))
            for message in records:
                self._take(message)
            for _, partition, offset in reached:
                self._reached(partition, offset)
        log.warning("journal not read to its end before the digest; late files go to the next digest")

    def _write_digests(self, end: datetime) -> None:
        """Every owned chain's digests up to `end`, one per period; a chain whose trail stopped validating gets
        its last ones for its pending files."""
        for ident, state in list(self.chains.items()):
            trail = self.trails.get(ident[0])
            active = validating(trail)
            if active:
                state.chain = chain_of(trail, ident[1], ident[2])  # type: ignore[arg-type]
            if (active or state.pending) and state.start < end:
                while state.start < end:
                    self._write_digest(state, period_end_after(state.start.timestamp(), self.config.period_s))
                self.status.report(ident[0], ident[2], "digest")
            if not active:
                del self.chains[ident]
        self.metrics.chains.set(len(self.chains))

    def _write_digest(self, state: ChainState, end: datetime) -> None:
        """Store the digest of the period ending at `end` unless one is stored there; else link to that one."""
        key = self.keys.current()
        files = sorted(state.pending.values(), key=lambda entry: entry.key)
        document = digest_document(state.chain, state.start, end, files, state.previous, key.fingerprint)
        signed = build_digest(document, lambda message: self.keys.sign(key, message))
        try:
            self.calls.call("PutObject", lambda: self.s3.put_object(
                Bucket=state.chain.bucket, Key=document["digestS3Object"], Body=signed.body, Metadata=signed.metadata,
                ServerSideEncryption="AES256", IfNoneMatch="*"), permanent=TAKEN)
        except ClientError:
            stored, listed, _ = self._read_digest(state.chain.bucket, document["digestS3Object"])
            state.adopt(stored, listed)
            self.metrics.adopted.inc()
            log.info("digest period stored by another worker: linked to it", extra={"digest": stored.key})
            return
        state.advance(signed.previous_for_next)
        log.info("digest stored", extra={"digest": document["digestS3Object"], "log_files": len(files)})
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
