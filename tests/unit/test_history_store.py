"""The event-history store: what append keeps (once), offsets, scoping, every lookup attribute with a time range
(against a brute-force reading of the same records), paging, the query plans, purge alongside readers, several
processes on one file, and a writer killed with SIGKILL mid-run."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafkatrail.sinks.history_fields import lookup_fields
from kafkatrail.sinks.history_store import ATTRIBUTE_KEYS, HistoryStore, Lookup, StoredEvent, _select

A1, A2 = "111122223333", "444455556666"
R1, R2 = "eu-west-1", "us-east-1"
T0 = 1_714_554_000_000  # 2024-05-01T09:00:00Z
ALL_TIME = (0, 2**62)


def guid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def stamp(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def record(n: int, *, account: str = A1, region: str = R1, second: int = 0, name: str = "RunInstances",
           source: str = "ec2.amazonaws.com", read_only: bool | None = False, user: str = "alice",
           key: str | None = "AKIAALICE", resources: list[dict[str, str]] | None = None,
           category: str = "Management") -> dict[str, Any]:
    """A record numbered `n` (its eventID is guid(n)) at T0 + `second` seconds."""
    value: dict[str, Any] = {
        "eventVersion": "1.11", "eventTime": stamp(T0 + second * 1000), "awsRegion": region,
        "eventID": guid(n), "eventType": "AwsApiCall", "recipientAccountId": account, "eventCategory": category,
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{account}:user/{user}", "userName": user,
                         **({"accessKeyId": key} if key else {})},
        "eventSource": source, "eventName": name, "managementEvent": category == "Management"}
    if read_only is not None:
        value["readOnly"] = read_only
    if resources is not None:
        value["resources"] = resources
    if category == "Insight":
        value = {k: v for k, v in value.items() if k not in ("eventSource", "eventName", "userIdentity", "readOnly")}
        value["insightDetails"] = {"state": "Start", "eventSource": source, "eventName": name,
                                   "insightType": "ApiCallRateInsight"}
    return value


def encoded(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) for r in records]


def time_of(value: dict[str, Any]) -> int:
    fields = lookup_fields(value)
    assert fields is not None
    return fields.event_time_ms


BUCKET = {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::audit"}
ROLE = {"type": "AWS::IAM::Role", "ARN": f"arn:aws:iam::{A1}:role/Deployer"}
UNTYPED = {"ARN": f"arn:aws:ssm:eu-west-1:{A1}:parameter/db-password"}


def dataset() -> list[dict[str, Any]]:
    """120 events in two accounts, two regions and both categories, often several in one second (ties), every
    attribute drawn independently (a seeded generator), in insertion order."""
    rng = random.Random(7)
    return [record(n, account=rng.choice((A1, A2)), region=rng.choice((R1, R1, R2)), second=n // 10,
                   name=rng.choice(("RunInstances", "DescribeInstances", "CreateBucket")),
                   source=rng.choice(("ec2.amazonaws.com", "s3.amazonaws.com")),
                   read_only=rng.choice((True, False, None)), user=rng.choice(("alice", "bob", "carol")),
                   key=rng.choice((None, "AKIAALICE", "ASIASESSION")),
                   resources=rng.choice(([], [BUCKET], [ROLE, UNTYPED], [BUCKET, BUCKET, ROLE])),
                   category=rng.choice(("Management",) * 9 + ("Insight",)))
            for n in range(120)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    opened = HistoryStore(tmp_path / "history.db")
    yield opened
    opened.close()


@pytest.fixture
def loaded(store: HistoryStore) -> tuple[HistoryStore, list[dict[str, Any]]]:
    records = dataset()
    for first in range(0, len(records), 25):  # several transactions, so ties span them
        store.append("h", {0: first + 25}, encoded(records[first:first + 25]))
    return store, records


def matches(value: dict[str, Any], key: str | None, wanted: str | None) -> bool:
    fields = lookup_fields(value)
    assert fields is not None
    if key is None:
        return True
    if key == "ResourceType":
        return any(kind == wanted for kind, _ in fields.resources)
    if key == "ResourceName":
        return any(name == wanted for _, name in fields.resources)
    return {"EventId": fields.event_id, "EventName": fields.event_name, "ReadOnly": fields.read_only,
            "Username": fields.username, "EventSource": fields.event_source,
            "AccessKeyId": fields.access_key_id}[key] == wanted


def expected_ids(records: list[dict[str, Any]], query: Lookup) -> list[str]:
    """Brute force: the eventIDs `query` must return over all pages, newest first, later-stored first on ties."""
    found = []
    for position, value in enumerate(records):
        fields = lookup_fields(value)
        assert fields is not None
        if ((fields.account, fields.region, fields.category) == (query.account, query.region, query.category)
                and query.start_ms <= fields.event_time_ms <= query.end_ms
                and matches(value, *(query.attribute or (None, None)))):
            found.append((fields.event_time_ms, position, fields.event_id))
    return [event_id for _, _, event_id in sorted(found, reverse=True)]


def all_pages(store: HistoryStore, query: Lookup) -> list[list[StoredEvent]]:
    pages = []
    while True:
        events, cursor = store.lookup(query)
        pages.append(events)
        if cursor is None:
            return pages
        assert len(events) == query.limit, "a page before the last is full"
        query = Lookup(**{**vars(query), "after": cursor})


def lookup(account: str = A1, region: str = R1, category: str = "management", start: int = ALL_TIME[0],
           end: int = ALL_TIME[1], attribute: tuple[str, str] | None = None, limit: int = 50) -> Lookup:
    return Lookup(account, region, category, start, end, attribute, limit, None)


SECOND = 1000
DAY = 86_400_000
WINDOW = (T0 + 2 * SECOND, T0 + 9 * SECOND)  # inclusive at both ends; several events sit on each edge
ATTRIBUTE_CASES = {
    "no attribute": None,
    "EventId": ("EventId", guid(27)),
    "EventId in upper case: an exact match, so none": ("EventId", guid(27).upper()),
    "EventId that is not a GUID": ("EventId", "27"),
    "EventName": ("EventName", "DescribeInstances"),
    "ReadOnly true": ("ReadOnly", "true"),
    "ReadOnly false": ("ReadOnly", "false"),
    "Username": ("Username", "bob"),
    "ResourceType": ("ResourceType", "AWS::S3::Bucket"),
    "ResourceType shared by two resources of one event": ("ResourceType", "AWS::IAM::Role"),
    "ResourceName": ("ResourceName", f"arn:aws:iam::{A1}:role/Deployer"),
    "ResourceName of an untyped resource": ("ResourceName", UNTYPED["ARN"]),
    "EventSource": ("EventSource", "s3.amazonaws.com"),
    "AccessKeyId": ("AccessKeyId", "ASIASESSION"),
    "a value no event has": ("EventName", "TerminateInstances"),
}


@pytest.mark.parametrize("time_range", [ALL_TIME, WINDOW], ids=["all time", "a window"])
@pytest.mark.parametrize("attribute", ATTRIBUTE_CASES.values(), ids=ATTRIBUTE_CASES.keys())
@pytest.mark.parametrize("limit", [1, 7, 50])
def test_every_attribute_with_a_time_range_pages_through_exactly_the_matching_events(
        loaded: tuple[HistoryStore, list[dict[str, Any]]], attribute: tuple[str, str] | None,
        time_range: tuple[int, int], limit: int) -> None:
    store, records = loaded
    for account in (A1, A2):
        query = lookup(account=account, start=time_range[0], end=time_range[1], attribute=attribute, limit=limit)
        pages = all_pages(store, query)
        got = [event.event_id for page in pages for event in page]
        assert got == expected_ids(records, query), (account, attribute)
        cursors = [event.cursor for page in pages for event in page]
        assert cursors == sorted(cursors, reverse=True) and len(set(cursors)) == len(cursors)


def test_the_dataset_exercises_what_the_lookups_claim(loaded: tuple[HistoryStore, list[dict[str, Any]]]) -> None:
    """Guards the table above: every case but the empty ones finds events in each account and time range (an
    EventId in one of them), and the window's edges fall on seconds shared by several events."""
    _, records = loaded
    for name, attribute in ATTRIBUTE_CASES.items():
        for start, end in (ALL_TIME, WINDOW):
            found = [bool(expected_ids(records, lookup(account, start=start, end=end, attribute=attribute)))
                     for account in (A1, A2)]
            if name == "EventId":
                assert sorted(found) == [False, True], name
            else:
                assert found == [not (name.startswith("EventId ") or name == "a value no event has")] * 2, name
    for edge in WINDOW:
        assert len(expected_ids(records, lookup(start=edge, end=edge))) >= 2


def test_a_page_that_ends_on_the_last_event_gives_no_cursor(store: HistoryStore) -> None:
    store.append("h", {}, encoded([record(n, second=n % 2) for n in range(6)]))
    events, cursor = store.lookup(lookup(limit=6))
    assert len(events) == 6 and cursor is None
    events, cursor = store.lookup(lookup(limit=5))
    assert len(events) == 5 and cursor == events[-1].cursor
    rest, cursor = store.lookup(Lookup(**{**vars(lookup(limit=5)), "after": cursor}))
    assert [e.event_id for e in rest] == [guid(0)] and cursor is None


SCOPE_CASES = {
    "the other account": (A2, R1, "management"),
    "the other region": (A1, R2, "management"),
    "Insights of the same account and region": (A1, R1, "insight"),
    "an account with no events at all": ("999999999999", R1, "management"),
}


@pytest.mark.parametrize(("account", "region", "category"), SCOPE_CASES.values(), ids=SCOPE_CASES.keys())
@pytest.mark.parametrize("attribute", [None, ("EventId", guid(0)), ("EventName", "RunInstances"),
                                       ("ResourceName", "arn:aws:s3:::audit")], ids=str)
def test_a_lookup_sees_only_its_account_region_and_category(
        store: HistoryStore, account: str, region: str, category: str, attribute: tuple[str, str] | None) -> None:
    store.append("h", {}, encoded([record(0, resources=[BUCKET])]))  # A1, R1, management
    assert store.lookup(lookup(attribute=attribute))[0], "the event is found in its own scope"
    assert store.lookup(lookup(account, region, category, attribute=attribute)) == ([], None)


def test_insights_are_stored_and_looked_up_apart(store: HistoryStore) -> None:
    store.append("insights", {0: 2}, encoded([record(1, category="Insight", name="RunInstances"),
                                              record(2, name="RunInstances")]))
    insight, = store.lookup(lookup(category="insight", attribute=("EventName", "RunInstances")))[0]
    management, = store.lookup(lookup(attribute=("EventName", "RunInstances")))[0]
    assert (insight.event_id, management.event_id) == (guid(1), guid(2))
    assert (insight.username, insight.read_only, insight.access_key_id) == (None, None, None)


def test_append_keeps_management_and_insights_once_and_skips_the_rest(store: HistoryStore) -> None:
    kept = [record(1), record(2, category="Insight")]
    skipped = [record(3, category="Data"), record(4, category="NetworkActivity")]
    not_records = [b"not json", b"[1, 2]", orjson.dumps({**record(5), "eventID": "not-a-guid"})]
    assert store.append("h", {0: 7}, [*encoded(kept + skipped), *not_records]) == 2
    assert store.count() == 2


REPEAT_CASES = {
    "the same record again": [record(1)],
    "its eventID in upper case (one GUID)": [{**record(1), "eventID": guid(1).upper()}],
    "twice in one batch": [record(2), record(2)],
    "a later copy with other content": [record(1, name="Other", second=99)],
}


@pytest.mark.parametrize("repeats", REPEAT_CASES.values(), ids=REPEAT_CASES.keys())
def test_a_repeated_event_id_is_ignored_never_doubled(store: HistoryStore, repeats: list[dict[str, Any]]) -> None:
    assert store.append("h", {0: 1}, encoded([record(1)])) == 1
    new = len({r["eventID"].lower() for r in repeats} - {guid(1)})
    assert store.append("h", {0: 3}, encoded(repeats)) == new
    assert store.count() == 1 + new
    original, = store.lookup(lookup(attribute=("EventId", guid(1))))[0]
    assert original.record == orjson.dumps(record(1)) and original.event_name == "RunInstances"
    assert store.lookup(lookup(attribute=("ResourceName", "arn:aws:s3:::audit")))[0] == []


def test_an_event_id_reused_on_another_day_is_a_second_event(store: HistoryStore) -> None:
    """Copies of a record share its eventTime; an eventID reused with another day's eventTime (a forgery older
    than the processor's dedupe window) is stored beside the first, and an EventId lookup shows both."""
    assert store.append("h", {}, encoded([record(1, name="First")])) == 1
    assert store.append("h", {}, encoded([record(1, name="Later", second=DAY // SECOND)])) == 1
    found = store.lookup(lookup(attribute=("EventId", guid(1))))[0]
    assert [event.event_name for event in found] == ["Later", "First"]


def test_offsets_round_trip_per_topic_and_partition(store: HistoryStore, tmp_path: Path) -> None:
    assert store.next_offsets("h") == {}
    store.append("h", {0: 10, 3: 7}, [])
    store.append("insights", {0: 2}, encoded([record(1, category="Insight")]))
    store.append("h", {3: 12, 5: 1}, encoded([record(2)]))
    assert store.next_offsets("h") == {0: 10, 3: 12, 5: 1}
    assert store.next_offsets("insights") == {0: 2}
    store.close()
    reopened = HistoryStore(tmp_path / "history.db", readonly=True)
    assert reopened.next_offsets("h") == {0: 10, 3: 12, 5: 1}
    reopened.close()


def test_a_stored_event_is_the_record_exactly_as_received_with_its_fields(store: HistoryStore) -> None:
    value = record(1, resources=[ROLE, UNTYPED], read_only=True)
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2)  # not compact: kept byte for byte
    store.append("h", {0: 1}, [text])
    event, = store.lookup(lookup())[0]
    fields = lookup_fields(value)
    assert fields is not None
    assert event == StoredEvent(event_id=guid(1), event_name="RunInstances", read_only="true",
                                access_key_id="AKIAALICE", event_time_ms=T0, event_source="ec2.amazonaws.com",
                                username="alice", resources=fields.resources, record=text, cursor=(T0, event.cursor[1]))
    assert event.resources == [("AWS::IAM::Role", ROLE["ARN"]), (None, UNTYPED["ARN"])]


def test_an_unknown_attribute_key_is_refused(store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="Color"):
        store.lookup(lookup(attribute=("Color", "red")))


EXPECTED_PLANS = {None: "events_by_time", "EventId": "events_by_event_id", "EventName": "events_by_event_name",
                  "ReadOnly": "events_by_read_only", "Username": "events_by_username",
                  "ResourceType": "PRIMARY KEY", "ResourceName": "PRIMARY KEY",
                  "EventSource": "events_by_event_source", "AccessKeyId": "events_by_access_key_id"}


@pytest.mark.parametrize("after", [None, (T0, 5)], ids=["first page", "next page"])
@pytest.mark.parametrize("key", [None, *ATTRIBUTE_KEYS], ids=str)
def test_every_lookup_is_served_by_an_index_never_a_scan(loaded: tuple[HistoryStore, list[dict[str, Any]]],
                                                         key: str | None, after: tuple[int, int] | None) -> None:
    assert set(EXPECTED_PLANS) == {None, *ATTRIBUTE_KEYS}
    store, _ = loaded
    query = Lookup(A1, R1, "management", T0, T0 + 60_000, None if key is None else (key, guid(1)), 50, after)
    sql, parameters = _select(1, query, range(T0 // DAY, T0 // DAY + 90))
    plan = [row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    assert not any(step.startswith("SCAN") for step in plan), plan
    if key == "EventId":  # one probe per day, then a sort of what they found: at most one event a day
        assert plan == ["SEARCH e USING INDEX events_by_event_id (event_key=?)", "USE TEMP B-TREE FOR ORDER BY"]
    else:
        assert not any("TEMP B-TREE" in step for step in plan), plan  # the order comes from the index
        assert EXPECTED_PLANS[key] in plan[0] and "time_ms>?" in plan[0], plan  # the range starts in the index
        assert "time_ms<?" in plan[0] or "(time_ms,event)<(?,?)" in plan[0], plan  # and ends there
    if key in ("ResourceType", "ResourceName"):
        assert plan[1] == "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)", plan


def test_purge_deletes_older_events_with_their_resource_keys(loaded: tuple[HistoryStore, list[dict[str, Any]]]
                                                             ) -> None:
    store, records = loaded
    cut = T0 + 10 * SECOND
    older = sum(1 for r in records if time_of(r) < cut)
    assert 0 < older < len(records)
    assert store.purge(cut, batch=4) == older
    assert store.count() == len(records) - older
    for account in (A1, A2):
        for attribute in (None, ("ResourceName", BUCKET["ARN"]), ("ResourceType", "AWS::IAM::Role")):
            query = lookup(account=account, attribute=attribute)
            got = [event.event_id for page in all_pages(store, query) for event in page]
            times = {r["eventID"]: time_of(r) for r in records}
            assert got == [e for e in expected_ids(records, query) if times[e] >= cut]
    assert store._db.execute("SELECT count(*) FROM resource_keys WHERE time_ms < ?", (cut,)).fetchone()[0] == 0
    assert store.purge(cut) == 0


def test_purge_runs_while_readers_read_and_writers_append(loaded: tuple[HistoryStore, list[dict[str, Any]]],
                                                          tmp_path: Path) -> None:
    store, _ = loaded
    failures: list[BaseException] = []
    pages = 0
    stop = threading.Event()

    def read() -> None:
        nonlocal pages
        reader = HistoryStore(tmp_path / "history.db", readonly=True)
        try:
            while not stop.is_set():
                for page in all_pages(reader, lookup(limit=3)):
                    cursors = [event.cursor for event in page]
                    assert cursors == sorted(cursors, reverse=True)
                    pages += 1
        except BaseException as error:  # reported below
            failures.append(error)
        finally:
            reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        purged = 0
        for n, cut in enumerate(range(T0, T0 + 31 * SECOND, SECOND)):
            store.append("h", {0: 200 + n}, encoded([record(1000 + n, second=40 + n)]))
            purged += store.purge(cut, batch=2)
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    assert pages > 0 and purged == 120 and store.count() == 31


WRITER = textwrap.dedent("""
    import sys, orjson
    from pathlib import Path
    from kafkatrail.sinks.history_store import HistoryStore

    path, topic = Path(sys.argv[1]), sys.argv[5]
    first, count, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = HistoryStore(path)

    def text(n):
        return orjson.dumps({"eventVersion": "1.11", "eventTime": "2024-05-01T09:00:00Z", "awsRegion": "eu-west-1",
                             "eventID": f"{n:08x}-0000-4000-8000-{n:012x}", "eventType": "AwsApiCall",
                             "recipientAccountId": "111122223333", "eventCategory": "Management",
                             "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                             "resources": [{"type": "AWS::EC2::Instance", "ARN": f"arn:aws:ec2:::instance/i-{n}"}]})

    # Offsets of two partitions: record n is offset n // 2 of partition n % 2. Resume where the store says.
    stored = store.next_offsets(topic)
    n = first + 2 * min(stored.get(0, 0), stored.get(1, 0))
    while n < first + count:
        chunk = range(n, min(n + batch, first + count))
        store.append(topic, {p: (chunk[-1] - first - p) // 2 + 1 for p in (0, 1) if any(m % 2 == p for m in chunk)},
                     [text(m) for m in chunk])
        n = chunk[-1] + 1
""")


def writer(path: Path, first: int, count: int, batch: int, topic: str = "h") -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first), str(count), str(batch), topic])


def count(path: Path) -> int:
    """How many events the store at `path` holds; 0 before a writer created it."""
    try:
        reader = HistoryStore(path, readonly=True)
    except sqlite3.OperationalError:
        return 0
    try:
        return reader.count()
    except sqlite3.OperationalError:  # no tables yet
        return 0
    finally:
        reader.close()


def stored_numbers(path: Path) -> list[int]:
    reader = HistoryStore(path, readonly=True)
    try:
        return sorted(int(event_id[-12:], 16) for (event_id,) in reader._db.execute("SELECT event_id FROM events"))
    finally:
        reader.close()


@pytest.mark.parametrize("kill_at", [0.05, 0.4, 0.7], ids=["early", "midway", "late"])
def test_a_writer_killed_mid_run_leaves_exactly_the_records_of_its_stored_offsets(tmp_path: Path,
                                                                                  kill_at: float) -> None:
    path = tmp_path / "history.db"
    total = 20_000
    process = writer(path, 0, total, 37)
    deadline = time.monotonic() + 120
    while count(path) < kill_at * total:
        assert process.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer is stuck"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    reopened = HistoryStore(path)
    offsets = reopened.next_offsets("h")
    reopened.close()
    committed = sorted(n for p, next_offset in offsets.items() for n in range(p, 2 * next_offset, 2))
    assert 0 < len(committed) < total, "killed mid-run"
    assert stored_numbers(path) == committed  # every record of the committed offsets, once; nothing beyond
    assert writer(path, 0, total, 37).wait() == 0  # the next owner resumes at the stored offsets
    assert stored_numbers(path) == list(range(total))


def test_several_processes_write_one_file_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    HistoryStore(path).close()
    writers = [writer(path, first, 6_000, 50, f"w{n}") for n, first in enumerate((0, 3_000, 3_000))]  # repeats
    assert [process.wait() for process in writers] == [0, 0, 0]
    assert stored_numbers(path) == list(range(9_000))


def test_a_readonly_store_cannot_write(store: HistoryStore, tmp_path: Path) -> None:
    reader = HistoryStore(tmp_path / "history.db", readonly=True)
    try:
        with pytest.raises(Exception, match="readonly"):
            reader.append("h", {0: 1}, encoded([record(1)]))
    finally:
        reader.close()


def test_a_reader_of_a_file_whose_tables_are_not_there_yet_finds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.touch()  # a writer has created the file, not yet its tables
    reader = HistoryStore(path, readonly=True)
    try:
        assert reader.lookup(lookup()) == ([], None)
    finally:
        reader.close()
