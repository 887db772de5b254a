"""The event-history store as the API reads it: one read-only connection per reader thread, opened on first use.

SQLite connections belong to the thread that opened them, and LookupEvents runs on a small pool of reader
threads (`kafkatrail.api.server`), so each thread keeps its own. Until a history worker has created the store,
every lookup finds nothing (event history exists before any trail or worker does, and is empty then).
"""

from __future__ import annotations

import threading
from pathlib import Path

from kafkatrail.sinks.history_store import HistoryStore, Lookup, StoredEvent


class StoreHistory:
    """`HistoryView` over the store file at `path` (`history.store_path`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[HistoryStore] = []
        self._lock = threading.Lock()

    def lookup(self, query: Lookup) -> tuple[list[StoredEvent], tuple[int, int] | None]:
        store = getattr(self._local, "store", None)
        if store is None:
            if not self.path.exists():
                return [], None
            store = HistoryStore(self.path, readonly=True)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store.lookup(query)

    def close(self) -> None:
        """Close every thread's connection (after the reader threads have stopped)."""
        with self._lock:
            for store in self._opened:
                store.close()
            self._opened.clear()
