"""A chain's pending files: each stored log file is listed once, also when the sink stores it again; and a
late writer of a chain it lost links to the digests stored meanwhile instead of forking the chain."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from kafkatrail.core.aws import AwsCalls
from kafkatrail.core.settings import DigestSettings
from kafkatrail.sinks.digest_files import ChainId, LogFileEntry, Previous, key_time, time_text
from kafkatrail.sinks.digests import REMEMBERED_DIGESTS, ChainState, DigestMetrics, DigestWorker
from kafkatrail.sinks.journal import FileSpan
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.sinks.status import StatusReporter
from kafkatrail.trails.model import Trail

CHAIN = ChainId("audit", "us-east-1", "bucket", "", None, "111122223333", "eu-west-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(name: str) -> LogFileEntry:
    return LogFileEntry("bucket", name, "00" * 32, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")


def stored(hours: int) -> Previous:
    end = T0 + timedelta(hours=hours)
    return Previous("bucket", CHAIN.key(end), "11" * 32, "22" * 256, end)


def test_a_repeated_stored_record_is_pending_once() -> None:
    state = ChainState(CHAIN, T0, None)
    assert state.add(entry("a")) and state.add(entry("b"))
    assert not state.add(entry("a"))
    assert sorted(state.pending) == ["a", "b"]


def test_a_file_stored_again_after_its_digest_is_not_listed_again() -> None:
    state = ChainState(CHAIN, T0, None)
    state.add(entry("a"))
    state.advance(stored(1))
    assert (state.start, state.previous, state.pending) == (T0 + timedelta(hours=1), stored(1), {})
    assert not state.add(entry("a")), "a file rebuilt by the S3 sink after a crash is already in a digest"
    assert state.add(entry("b"))


def test_a_period_another_writer_stored_is_linked_to_and_its_files_are_not_listed_again() -> None:
    state = ChainState(CHAIN, T0, stored(0))
    state.add(entry("a"))
    state.add(entry("b"))
    state.adopt(stored(1), {"a", "c"})
    assert (state.start, state.previous, sorted(state.pending)) == (T0 + timedelta(hours=1), stored(1), ["b"])
    assert not state.add(entry("c")), "a file the other writer listed is not listed again"


def test_files_are_remembered_for_a_bounded_number_of_digests() -> None:
    state = ChainState(CHAIN, T0, None)
    state.add(entry("a"))
    for hour in range(1, REMEMBERED_DIGESTS + 1):
        state.advance(stored(hour))
    assert not state.add(entry("a"))
    state.advance(stored(REMEMBERED_DIGESTS + 1))
    assert state.add(entry("a"))


class StoredRecord:
    """The journal message a `stored` record arrives as."""

    offsets = iter(range(1_000_000))

    def __init__(self, span: FileSpan) -> None:
        self.span = span
        self._offset = next(StoredRecord.offsets)

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self.span.to_journal("stored")


def span(key: str, trail_arn: str = "arn:aws:cloudtrail:us-east-1:111122223333:trail/audit") -> FileSpan:
    return FileSpan(partition=0, delivery_key=f"{trail_arn}|111122223333|eu-west-1", first_offset=0, last_offset=9,
                    bucket="bucket", object_key=key, records=10, sha256="00" * 32, compressed_bytes=100,
                    oldest_event_time="2026-01-01T00:00:00Z", newest_event_time="2026-01-01T00:00:05Z",
                    delivered_at="2026-01-01T00:01:00Z")


def test_files_stored_after_a_trail_stopped_validating_still_reach_its_last_digest() -> None:
    worker = DigestWorker.__new__(DigestWorker)
    state = ChainState(CHAIN, T0, None)
    worker.chains = {("arn:aws:cloudtrail:us-east-1:111122223333:trail/audit", "111122223333", "eu-west-1"): state}
    worker.trails = {}
    worker.owned = {0}
    worker._next = {}
    worker._take(StoredRecord(span("late-file")))
    worker._take(StoredRecord(span("other-trail", "arn:aws:cloudtrail:us-east-1:111122223333:trail/gone")))
    assert list(state.pending) == ["late-file"]
    assert len(worker.chains) == 1, "no chain starts for a trail that does not validate"


class UnreachableAdmin:
    """An admin client whose broker does not answer (it is down or restarting)."""

    def list_offsets(self, *args: object, **kwargs: object) -> dict:
        from confluent_kafka import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to query partition leaders: Local: Timed out"))


class UnreachableConsumer:
    def assignment(self) -> list:
        return []

    def commit(self, *args: object, **kwargs: object) -> None:
        from confluent_kafka import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))


def test_a_broker_that_does_not_answer_leaves_the_digest_worker_running() -> None:
    worker = DigestWorker.__new__(DigestWorker)
    worker.admin = UnreachableAdmin()
    worker.consumer = UnreachableConsumer()
    worker.topic = "journal"
    worker.owned = {0}
    worker._next = {0: 5}
    worker._read_to_end()    # the digests are then written with what was read
    worker._commit()         # the next period's commit covers these offsets


class ConditionalBucket:
    """S3 as the digest worker uses it, with `If-None-Match: *` refusing a key that is taken (412)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def put_object(self, *, Key: str, Body: bytes, Metadata: dict[str, str], IfNoneMatch: str,
                   **_: object) -> None:
        if Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
        self.objects[Key] = Body, Metadata

    def get_object(self, *, Key: str, **_: object) -> dict:
        body, metadata = self.objects[Key]
        return {"Body": io.BytesIO(body), "Metadata": metadata}

    def list_objects_v2(self, *, Prefix: str, **_: object) -> dict:
        return {"Contents": [{"Key": key} for key in sorted(self.objects) if key.startswith(Prefix)]}

    def documents(self) -> list[dict]:
        return [json.loads(gzip.decompress(self.objects[key][0])) for key in sorted(self.objects, key=key_time)]


def writer(tmp_path: Path, bucket: ConditionalBucket, start: datetime = T0) -> DigestWorker:
    """A digest worker with only what writing digests needs: the audit trail, signing keys and the bucket."""
    worker = DigestWorker.__new__(DigestWorker)
    trail = Trail(name="audit", home_region="us-east-1", account_id="111122223333", s3_bucket_name="bucket",
                  log_file_validation_enabled=True)
    worker.trails = {trail.arn: trail}
    worker.config = DigestSettings(period_s=3600)
    worker.keys = SigningKeys(tmp_path, rotation_s=86_400)
    worker.metrics = DigestMetrics(CollectorRegistry())
    worker.calls = AwsCalls(worker.metrics.aws, 1.0, lambda: False, lambda _: None)
    worker.s3 = bucket
    worker.status = StatusReporter(lambda _: None)
    worker.chains = {(trail.arn, CHAIN.account, CHAIN.region): ChainState(CHAIN, start, None)}
    return worker


def test_a_late_writer_links_to_the_periods_written_meanwhile_and_forks_nothing(tmp_path: Path) -> None:
    bucket = ConditionalBucket()
    owner, late = writer(tmp_path, bucket), writer(tmp_path, bucket)  # `late` lost the chain, not knowing yet
    for worker, files in ((owner, "ab"), (late, "abc")):
        for name in files:
            next(iter(worker.chains.values())).add(entry(name))
    owner._write_digests(T0 + timedelta(hours=3))
    late._write_digests(T0 + timedelta(hours=4))
    documents = bucket.documents()
    assert [d["digestEndTime"] for d in documents] == [time_text(T0 + timedelta(hours=h)) for h in range(1, 5)]
    for before, after in pairwise(documents):
        assert (after["previousDigestS3Object"], after["digestStartTime"]) == (
            before["digestS3Object"], before["digestEndTime"])
    assert [[f["s3Object"] for f in d["logFiles"]] for d in documents] == [["a", "b"], [], [], ["c"]]


def test_a_new_owner_does_not_list_again_a_file_its_predecessor_listed_digests_ago(tmp_path: Path) -> None:
    """An S3 sink that takes a partition over journals again the files its predecessor stored but did not
    commit (same key). When the repeat reaches a digest worker that has just taken the chain over, the file
    may be in an older digest than the newest: the new owner reads the last digests back from S3."""
    bucket = ConditionalBucket()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    owner = writer(tmp_path, bucket, start)
    state = next(iter(owner.chains.values()))
    for hour, name in enumerate("abc", start=1):
        state.add(entry(name))
        owner._write_digests(start + timedelta(hours=hour))
    owner._write_digests(start + timedelta(hours=4))  # an empty digest: "a" is four digests back

    successor = writer(tmp_path, bucket)
    successor.chains = {}
    trail = next(iter(successor.trails.values()))
    found = successor._chain(trail, CHAIN.account, CHAIN.region, 0, start)
    assert found.previous is not None and found.previous.key == CHAIN.key(start + timedelta(hours=4))
    assert [found.add(entry(name)) for name in "abcd"] == [False, False, False, True]


def test_an_end_of_partition_from_before_a_rebalance_in_the_batch_does_not_move_the_offsets() -> None:
    """The loop hands over the end-of-partition events of a batch after the batch; when reading the journal to
    its end inside the batch ran a rebalance, the partition was assigned again from its commit: that end is
    stale, and taking it would commit offsets past records not yet in any digest."""
    worker = DigestWorker.__new__(DigestWorker)
    worker.owned, worker._next = {0}, {0: 5}
    worker._assignments, worker._batch_assignment = 2, 1
    worker.reached_end(0, 50)
    assert worker._next == {0: 5}
    worker._batch_assignment = 2
    worker.reached_end(0, 50)
    assert worker._next == {0: 50}
