"""The event-history store: one SQLite file (WAL) that history workers append to and LookupEvents reads.

Why SQLite
    LookupEvents is a point query: one account, region and category, one attribute equal to a value, a time
    range, newest first, 50 at a time. Both candidates were measured on this project's 2-core machine (shared, so
    absolute figures are rough: `sum(range(1000))` took 16-20 µs there, about twice a current desktop) with the
    same 1,000,000 management events of `bench/history_lookup.py`'s mix, stored in batches of 2,000 with every
    index in place, then 1,580 lookups (every key and no key, over 90 days, the last day and a week):

    | | ingest (CPU per event) | lookup p50 / p95 / p99 | bytes per event |
    | --- | --- | --- | --- |
    | SQLite 3.40, `append` (event key without its day, below) | 3,800/s (138 µs) | 0.53 / 1.5 / 3.4 ms | 1,730 |
    | DuckDB 2.0, same tables, ART index on each attribute, Arrow inserts | 5,800/s (146 µs) | 24 / 213 / 954 ms | 869 |

    DuckDB compresses columns (half the size) but answers such a query by scanning column segments: its ART
    indexes serve plain equality, not "equal, in a time range, newest first", so a lookup costs tens to hundreds
    of milliseconds and grows with the store, where SQLite walks one B-tree range. SQLite is also in the
    standard library and lets several processes share one file: writers take turns (`BEGIN IMMEDIATE`, busy
    timeout), readers never wait for them (WAL).

Schema
    `events` holds one row per stored event: a scope id (the (account, region, category) triple, from
    `scopes`, so indexes repeat a small integer instead of three strings), the event time in milliseconds, the
    fields LookupEvents returns (`kafkatrail.sinks.history_fields`) and the record's JSON text. Its rowid is
    the tiebreak between events of the same millisecond: (event time, rowid) orders events newest first and
    is the cursor a page ends at. Each lookup but EventId's is served by one index whose key is the scope, the
    attribute and the time, in that order, so SQLite reads exactly the rows of the page (plus those of the
    cursor's millisecond it has already returned), whatever the size of the store:

    - no attribute: `(scope, time_ms)`; `EventName`, `EventSource`: `(scope, <column>, time_ms)`;
    - `ReadOnly`, `Username`, `AccessKeyId`: the same, partial (`WHERE <column> IS NOT NULL`): events without
      the field cost no index entry;
    - `EventId`: the unique index on `event_key`: the day of the event's time, then the eventID's 16 bytes
      (validation admits GUIDs only). It refuses a second copy of an event (an `INSERT OR IGNORE` skips it):
      copies of a record share its eventTime, hence its day, and an eventID in another case is the same GUID.
      A lookup probes the key once per day of its range that the scope holds events in (at most the retention,
      90 probes), then filters the exact text, the scope and the time; it sorts the few rows found (one per day
      at most). Keyed by eventID alone, this index took an insert at a random place of a B-tree as large as the
      store, and `append`'s CPU per event grew from 82 to 142 µs between 250,000 and 2,000,000 events (90 to 111
      µs without the index); keyed by day first, inserts stay in the current day's part (86 to 117 µs). A record
      that reuses an eventID with another day's eventTime (a forgery: the processor refuses one within its
      dedupe window) is therefore kept as a second event rather than ignored;
    - `ResourceType`, `ResourceName`: `resource_keys`, a clustered (WITHOUT ROWID) table keyed (scope, kind,
      value, time_ms, event), one row per value of an event's `Resources`, joined to `events` by rowid.

    `tests/unit/test_history_store.py` asserts each of these plans with EXPLAIN QUERY PLAN.

Offsets
    `offsets` holds, per topic and partition, the next offset to read. `append` writes a batch's events and the
    offsets after it in one transaction, so a writer killed at any moment leaves either both or neither: the
    next owner of the partitions reads again exactly the records that are not stored. A repeat that is stored
    anyway (a rebalance race, at-least-once upstream) meets the unique event key and is ignored.

Record text
    Stored as received, uncompressed. Compressing each record (zlib level 1, 4 KiB window, a preset dictionary
    of CloudTrail's field names) took the store from 1,732 to 778 bytes per event but `append` from 82-90 to
    110-113 µs of CPU per event (200,000 events, batches of 5,000), and ingest speed is what the history worker
    is short of; stock SQLite has no page compression.

Speed
    `append`'s CPU per event on the machine above (batches of 5,000, 200,000 events): parsing and deriving the
    fields 21 µs, the row with its 7 index entries 36 µs (10 without indexes), resource keys 4 µs, the commit
    (writing the WAL) 22 µs (10 without indexes): about 12,000 events/s for the store alone. Larger
    transactions make the commit cheaper per event (each index has a few hot pages per key, written once per
    transaction); 16 KiB pages saved 10% of the CPU but made lookups half as slow again, so pages stay 4 KiB.

Retention
    `purge` deletes events older than a time in transactions of `batch` events, each also deleting the
    resource keys those events had (their keys are known from the stored Resources), so `resource_keys` needs no
    index on time; appends wait at most one small transaction, lookups never wait.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kafkatrail.sinks.history_fields import LookupFields, lookup_fields

ATTRIBUTE_KEYS: tuple[str, ...] = ("EventId", "EventName", "ReadOnly", "Username", "ResourceType", "ResourceName",
                                   "EventSource", "AccessKeyId")
INSIGHT_ATTRIBUTE_KEYS: tuple[str, ...] = ("EventId", "EventName", "EventSource")

BUSY_TIMEOUT_MS = 30_000
DAY_MS = 86_400_000
WRITER_CACHE_KIB = 65_536

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    category TEXT NOT NULL,
    UNIQUE (account, region, category));
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    event_key BLOB NOT NULL,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_source TEXT NOT NULL,
    read_only TEXT,
    username TEXT,
    access_key_id TEXT,
    resources BLOB,
    record BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_event_id ON events (event_key);
CREATE INDEX IF NOT EXISTS events_by_time ON events (scope, time_ms);
CREATE INDEX IF NOT EXISTS events_by_event_name ON events (scope, event_name, time_ms);
CREATE INDEX IF NOT EXISTS events_by_event_source ON events (scope, event_source, time_ms);
CREATE INDEX IF NOT EXISTS events_by_read_only ON events (scope, read_only, time_ms) WHERE read_only IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_username ON events (scope, username, time_ms) WHERE username IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_access_key_id ON events (scope, access_key_id, time_ms)
    WHERE access_key_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS resource_keys (
    scope INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    value TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    event INTEGER NOT NULL,
    PRIMARY KEY (scope, kind, value, time_ms, event)) WITHOUT ROWID;
"""

# Attribute key -> (index, column) of `events`; the resource keys' `kind` in resource_keys.
_COLUMNS = {"EventName": ("events_by_event_name", "event_name"),
            "EventSource": ("events_by_event_source", "event_source"),
            "ReadOnly": ("events_by_read_only", "read_only"),
            "Username": ("events_by_username", "username"),
            "AccessKeyId": ("events_by_access_key_id", "access_key_id")}
_TYPE, _NAME = 0, 1
_RESOURCE_KINDS = {"ResourceType": _TYPE, "ResourceName": _NAME}

_FIELDS = "e.id, e.time_ms, e.event_id, e.event_name, e.read_only, e.access_key_id, e.event_source, e.username, " \
          "e.resources, e.record"
_INSERT_EVENT = "INSERT OR IGNORE INTO events (id, scope, time_ms, event_key, event_id, event_name, event_source, " \
                "read_only, username, access_key_id, resources, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_SCOPE = "SELECT id FROM scopes WHERE account = ? AND region = ? AND category = ?"
# A resource key is written only when its event was (a repeat's row was ignored, so its fresh rowid is absent).
_INSERT_RESOURCE = "INSERT OR IGNORE INTO resource_keys (scope, kind, value, time_ms, event) " \
                   "SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM events WHERE id = ?5)"


@dataclass(frozen=True)
class Lookup:
    """One page of a lookup: scope, time range (inclusive), at most one attribute, and where the last page ended."""

    account: str
    region: str
    category: str  # "management" | "insight"
    start_ms: int
    end_ms: int
    attribute: tuple[str, str] | None  # (key from ATTRIBUTE_KEYS, value), exact match
    limit: int  # 1..50
    after: tuple[int, int] | None  # the previous page's cursor: continue strictly after it (older)


@dataclass(frozen=True)
class StoredEvent:
    """One stored event as LookupEvents returns it."""

    event_id: str
    event_name: str
    read_only: str | None
    access_key_id: str | None
    event_time_ms: int
    event_source: str
    username: str | None
    resources: list[tuple[str | None, str]]
    record: bytes  # the whole record's JSON text, exactly as received
    cursor: tuple[int, int]  # (event_time_ms, tiebreak): the newest-first order key


class HistoryStore:
    """The store file at `path`; several processes may open it at once (writers take turns, readers never wait)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        if readonly:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        self.path = path
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            self._db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        self._scopes: dict[tuple[str, str, str], int] = {}

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> the next offset to read, as the last `append` for `topic` stored it."""
        rows = self._db.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,))
        return dict(rows.fetchall())

    def append(self, topic: str, next_offsets: Mapping[int, int], records: Sequence[bytes]) -> int:
        """Store every kept record (JSON text) whose eventID is new, and `next_offsets` of `topic`, in one
        transaction; returns how many events were stored. Records event history does not keep are skipped.

        Records come as the bytes the topic holds, parsed here: the history worker parses nothing itself, so
        taking already-parsed records as well would save it nothing."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            next_id = db.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()[0]
            rows: list[tuple[Any, ...]] = []
            keys: list[tuple[int, int, str, int, int]] = []
            for text in records:
                fields = _fields(text)
                guid = None if fields is None else _guid(fields.event_id)
                if fields is None or guid is None:
                    continue
                where = (fields.account, fields.region, fields.category)
                scope = self._scopes.get(where) or self._create_scope(where)
                time_ms, resources = fields.event_time_ms, fields.resources
                rows.append((next_id, scope, time_ms, _event_key(time_ms // DAY_MS, guid), fields.event_id,
                             fields.event_name,
                             fields.event_source, fields.read_only, fields.username, fields.access_key_id,
                             orjson.dumps(resources) if resources else None, text))
                for kind, name in resources:
                    keys.extend((scope, key_kind, value, time_ms, next_id)
                                for key_kind, value in _resource_keys(kind, name))
                next_id += 1
            stored = db.executemany(_INSERT_EVENT, rows).rowcount
            db.executemany(_INSERT_RESOURCE, keys)
            db.executemany("INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                           "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                           [(topic, partition, offset) for partition, offset in next_offsets.items()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._scopes.clear()  # a scope created in the rolled-back transaction does not exist
            raise
        return stored

    def lookup(self, query: Lookup) -> tuple[list[StoredEvent], tuple[int, int] | None]:
        """One page of `query`, newest first, and the cursor of the next page (None after the last event)."""
        if query.attribute is not None and query.attribute[0] not in ATTRIBUTE_KEYS:
            raise ValueError(f"attribute: {query.attribute[0]!r} is not one of {', '.join(ATTRIBUTE_KEYS)}")
        scope = self._scope_id((query.account, query.region, query.category))
        if scope is None:
            return [], None
        sql, parameters = _select(scope, query, self._days(scope, query))
        rows = self._db.execute(sql, parameters).fetchall()
        events = [StoredEvent(event_id, event_name, read_only, access_key_id, time_ms, event_source, username,
                              [(kind, name) for kind, name in orjson.loads(resources)] if resources else [],
                              record, (time_ms, tiebreak))
                  for (tiebreak, time_ms, event_id, event_name, read_only, access_key_id, event_source, username,
                       resources, record) in rows[:query.limit]]
        return events, events[-1].cursor if len(rows) > query.limit else None

    def purge(self, before_ms: int, batch: int = 10_000) -> int:
        """Delete the events older than `before_ms` (event time), `batch` per transaction; returns how many."""
        db = self._db
        purged = 0
        for (scope,) in db.execute("SELECT id FROM scopes").fetchall():
            while True:
                db.execute("BEGIN IMMEDIATE")
                try:
                    rows = db.execute("SELECT id, time_ms, resources FROM events INDEXED BY events_by_time "
                                      "WHERE scope = ? AND time_ms < ? ORDER BY time_ms LIMIT ?",
                                      (scope, before_ms, batch)).fetchall()
                    keys = [(scope, key_kind, value, time_ms, event) for event, time_ms, resources in rows if resources
                            for kind, name in orjson.loads(resources) for key_kind, value in _resource_keys(kind, name)]
                    db.executemany("DELETE FROM resource_keys WHERE scope = ? AND kind = ? AND value = ? "
                                   "AND time_ms = ? AND event = ?", keys)
                    db.executemany("DELETE FROM events WHERE id = ?", [(event,) for event, _, _ in rows])
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                purged += len(rows)
                if len(rows) < batch:
                    break
        return purged

    def count(self) -> int:
        """How many events the store holds."""
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def size_bytes(self) -> int:
        """The size of the store file and its write-ahead log."""
        return sum(candidate.stat().st_size for candidate in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if candidate.exists())

    def close(self) -> None:
        """Close the connection (a writer's last close also folds the write-ahead log into the file)."""
        self._db.close()

    def _days(self, scope: int, query: Lookup) -> range:
        """The days (since the epoch) of `query`'s time range that the scope holds events in, for an EventId
        lookup (its index is keyed by day); empty for any other lookup."""
        if query.attribute is None or query.attribute[0] != "EventId":
            return range(0)
        oldest, newest = self._db.execute(
            "SELECT (SELECT min(time_ms) FROM events INDEXED BY events_by_time WHERE scope = ?1), "
            "(SELECT max(time_ms) FROM events INDEXED BY events_by_time WHERE scope = ?1)", (scope,)).fetchone()
        if oldest is None:
            return range(0)
        return range(max(query.start_ms, oldest) // DAY_MS, min(query.end_ms, newest) // DAY_MS + 1)

    def _scope_id(self, scope: tuple[str, str, str]) -> int | None:
        """The id of an (account, region, category) scope; None when nothing was ever stored in it."""
        known = self._scopes.get(scope)
        if known is not None:
            return known
        try:
            row = self._db.execute(_SELECT_SCOPE, scope).fetchone()
        except sqlite3.OperationalError as error:
            if not str(error).startswith("no such table"):
                raise
            return None  # a reader that opened the file before its writer created the tables: nothing stored yet
        if row is None:
            return None
        self._scopes[scope] = int(row[0])
        return int(row[0])

    def _create_scope(self, scope: tuple[str, str, str]) -> int:
        """The id of a scope, created in the writer's transaction when it has none yet."""
        self._db.execute("INSERT OR IGNORE INTO scopes (account, region, category) VALUES (?, ?, ?)", scope)
        (created,) = self._db.execute(_SELECT_SCOPE, scope).fetchone()
        self._scopes[scope] = int(created)
        return int(created)


def _select(scope: int, query: Lookup, days: range) -> tuple[str, tuple[Any, ...]]:
    """The SQL of one page of `query` (limit + 1 rows, so that a further page shows) and its parameters; an
    EventId lookup probes its event key on each of `days`."""
    after = "" if query.after is None else " AND (time_ms, id) < (?, ?)"
    page = (*(query.after or ()), query.limit + 1)
    key, value = query.attribute or (None, None)
    if key is None:
        return (f"SELECT {_FIELDS} FROM events AS e INDEXED BY events_by_time WHERE scope = ? "
                f"AND time_ms BETWEEN ? AND ?{after} ORDER BY time_ms DESC, id DESC LIMIT ?",
                (scope, query.start_ms, query.end_ms, *page))
    if key == "EventId":
        guid = _guid(value or "")
        keys = [_event_key(day, guid) for day in days] if guid is not None else []
        return (f"SELECT {_FIELDS} FROM events AS e INDEXED BY events_by_event_id WHERE event_key IN "
                f"({', '.join('?' * len(keys))}) AND event_id = ? AND scope = ? AND time_ms BETWEEN ? AND ?{after} "
                f"ORDER BY time_ms DESC, id DESC LIMIT ?", (*keys, value, scope, query.start_ms, query.end_ms, *page))
    if key in _COLUMNS:
        index, column = _COLUMNS[key]
        return (f"SELECT {_FIELDS} FROM events AS e INDEXED BY {index} WHERE scope = ? AND {column} = ? "
                f"AND time_ms BETWEEN ? AND ?{after} ORDER BY time_ms DESC, id DESC LIMIT ?",
                (scope, value, query.start_ms, query.end_ms, *page))
    after = "" if query.after is None else " AND (k.time_ms, k.event) < (?, ?)"
    return (f"SELECT {_FIELDS} FROM resource_keys AS k JOIN events AS e ON e.id = k.event "
            f"WHERE k.scope = ? AND k.kind = ? AND k.value = ? AND k.time_ms BETWEEN ? AND ?{after} "
            f"ORDER BY k.time_ms DESC, k.event DESC LIMIT ?",
            (scope, _RESOURCE_KINDS[key], value, query.start_ms, query.end_ms, *page))


def _fields(text: bytes) -> LookupFields | None:
    """The lookup fields of one record's JSON text; None when event history does not keep it, or it is not a
    JSON object (never so on the history topic, whose records passed validation; a stray one must not stop
    the worker)."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return lookup_fields(record) if isinstance(record, dict) else None


def _event_key(day: int, guid: bytes) -> bytes:
    """The unique key of an event: the day of its eventTime (3 bytes, big-endian) and its eventID's 16 bytes."""
    return day.to_bytes(3, "big") + guid


def _guid(event_id: str) -> bytes | None:
    """The 16 bytes of a GUID eventID (either case: one event); None for any other text, which validation refuses."""
    if len(event_id) != 36 or not event_id[8] == event_id[13] == event_id[18] == event_id[23] == "-":
        return None
    try:
        key = bytes.fromhex(event_id.replace("-", ""))
    except ValueError:
        return None
    return key if len(key) == 16 else None


def _resource_keys(kind: str | None, name: str) -> list[tuple[int, str]]:
    """The (kind, value) rows of resource_keys for one resource: its name, and its type when it has one."""
    return [(_NAME, name)] if kind is None else [(_NAME, name), (_TYPE, kind)]
