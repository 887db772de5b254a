"""A chain's pending files: each stored log file is listed once, also when the sink stores it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kafkatrail.sinks.digest_files import ChainId, LogFileEntry, Previous
from kafkatrail.sinks.digests import REMEMBERED_DIGESTS, ChainState, DigestWorker
from kafkatrail.sinks.journal import FileSpan

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
    worker._adopted = {}
    worker._digested_to = {}
    assert not worker._read_to_end()    # the digests are then written with what was read
    worker._commit(T0)                  # the next period's commit covers these offsets
