"""The one place a Kafka client's configuration is built from settings, so that librdkafka speaks through
kafkatrail's logs and metrics instead of its own stderr lines (`%3|...|FAIL|...`).

`kafka_config()` adds to every client:
- `logger`: librdkafka's log lines, delivered by the client's poll/consume/flush, become records of the
  `kafkatrail.kafka` logger. States librdkafka retries by itself (a coordinator still loading, a broker not
  up yet, a dropped connection) are debug; a broker that cannot be reached is a warning naming its
  address, once, then at most every `WARN_EVERY_S` per address while it stays so, with the count of lines
  folded into it;
- `error_cb`: the client-level errors librdkafka reports (all brokers down, a failed authentication), the
  same way, then the caller's own `error_cb` if it passed one;
and `statistics()` adds, for a client polled all the time such as a worker's consumer (an unpolled client
would pile its statistics up), a `stats_cb`: every `STATS_INTERVAL_MS`, whether a broker connection is up.
The process's `kafka` dependency (`kafkatrail.core.dependencies`) is down from a client's failure to reach a
broker until that client's statistics show a connection up again (or, for a client closed meanwhile, until
`STALE_AFTER_S` passes without another failure: librdkafka retries at least every 10 s).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from kafkatrail.core.dependencies import DEPENDENCIES, Dependencies
from kafkatrail.core.settings import Settings

log = logging.getLogger("kafkatrail.kafka")

WARN_EVERY_S = 60.0
STATS_INTERVAL_MS = 5_000
STALE_AFTER_S = 30.0
# librdkafka's syslog levels, as Python's (0-2 emergency..critical, 3 error, 4 warning, 5-6 info, 7 debug)
SYSLOG_LEVELS = (logging.CRITICAL,) * 3 + (logging.ERROR, logging.WARNING, logging.INFO, logging.INFO, logging.DEBUG)
TRANSIENT = re.compile(r"load in progress|not available|not coordinator|not leader|retrying|disconnected"
                       r"|timed out in queue|broker transport failure", re.IGNORECASE)
UNREACHABLE = re.compile(r"connect to .* failed|connection refused|failed to resolve|all broker connections are down"
                         r"|brokers are down|connection setup timed out", re.IGNORECASE)
THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")  # which librdkafka thread wrote the line: noise to a reader
BROKER = re.compile(r"([^\s\[\]/#]+:\d+)/(?:bootstrap|\d+)")


class BrokerWarnings:
    """Which unreachable addresses were warned about when, so each is reported once and then at a bounded rate."""

    def __init__(self, every_s: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._folded: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, address: str) -> int | None:
        """None if a warning about `address` was given within `every_s`; else how many were folded since."""
        now = self._clock()
        with self._lock:
            last = self._last.get(address)
            if last is not None and now - last < self.every_s:
                self._folded[address] = self._folded.get(address, 0) + 1
                return None
            self._last[address] = now
            return self._folded.pop(address, 0)


WARNINGS = BrokerWarnings()


class ConnectionStates:
    """Which clients failed to reach a broker and have not connected since, as the process's `kafka` dependency."""

    def __init__(self, dependencies: Dependencies = DEPENDENCIES, clock: Callable[[], float] = time.monotonic,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.dependencies = dependencies
        self._clock = clock
        self.stale_after_s = stale_after_s
        self._failing: dict[str, float] = {}  # client name -> when it last failed to connect
        self._lock = threading.Lock()

    def failing(self, client: str) -> None:
        """`client` could not reach a broker."""
        self._update(client, failing=True)

    def stats(self, text: str) -> None:
        """confluent-kafka's `stats_cb`: one JSON document of librdkafka statistics about one client."""
        stats = json.loads(text)
        up = any(broker.get("state") == "UP" for broker in stats.get("brokers", {}).values())
        self._update(stats.get("name", ""), failing=False, connected=up)

    def _update(self, client: str, *, failing: bool, connected: bool = False) -> None:
        now = self._clock()
        with self._lock:
            if failing:
                self._failing[client] = now
            elif connected:
                self._failing.pop(client, None)
            self._failing = {name: at for name, at in self._failing.items() if now - at < self.stale_after_s}
            up = not self._failing
        self.dependencies.report("kafka", up)


CONNECTION_STATES = ConnectionStates()


class LibrdkafkaLog:
    """Takes librdkafka's log lines and client errors (as confluent-kafka's `logger` and `error_cb`) into `log`."""

    def __init__(self, bootstrap_servers: str, warnings: BrokerWarnings = WARNINGS,
                 states: ConnectionStates = CONNECTION_STATES, target: logging.Logger = log) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.warnings = warnings
        self.states = states
        self.target = target
        self.client = ""  # librdkafka's name of the client, from its first log line

    def log(self, level: int, _format: str, facility: str = "", client: str = "", text: str = "") -> None:
        """What confluent-kafka calls with each line: its Python level, a format string, then the line's parts."""
        self.client = client or self.client
        fields = {"facility": facility, "client": client}
        text = THREAD.sub("", text)
        if UNREACHABLE.search(text):
            self.unreachable(_broker_of(text) or self.bootstrap_servers, text, fields)
        elif TRANSIENT.search(text):
            self.target.debug(text, extra=fields)
        else:
            self.target.log(level, text, extra=fields)

    def error(self, error: KafkaError) -> None:
        """A client-level error (confluent-kafka's `error_cb`)."""
        fields, text = {"code": error.name()}, error.str()
        if error.code() == KafkaError._ALL_BROKERS_DOWN or UNREACHABLE.search(text):
            self.unreachable(_broker_of(text) or self.bootstrap_servers, text, fields)
        elif error.code() == KafkaError._TRANSPORT or TRANSIENT.search(text):
            self.target.debug(text, extra=fields)
        else:
            self.target.log(logging.ERROR if error.fatal() else logging.WARNING, text, extra=fields)

    def unreachable(self, address: str, text: str, fields: dict[str, Any]) -> None:
        self.states.failing(self.client)
        folded = self.warnings.due(address)
        if folded is None:
            self.target.debug(text, extra={**fields, "broker": address})
            return
        self.target.warning("cannot reach the Kafka broker; retrying", extra={
            **fields, "broker": address, "detail": text[:300], "repeated": folded,
            "hint": "start it (`kafkatrail stack up`) or check KAFKATRAIL_BOOTSTRAP_SERVERS"})


def _broker_of(text: str) -> str | None:
    match = BROKER.search(text)
    return match.group(1) if match else None




def statistics() -> dict[str, Any]:
    """Overrides for `kafka_config` that report the client's connection state (module docstring)."""
    return {"stats_cb": CONNECTION_STATES.stats, "statistics.interval.ms": STATS_INTERVAL_MS}


def kafka_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """`settings.kafka_config(**overrides)` with librdkafka's logs and errors routed (module docstring). An
    `error_cb` among `overrides` is still called, after the routing."""
    router = LibrdkafkaLog(settings.bootstrap_servers)
    own_error_cb = overrides.pop("error_cb", None)

    def on_error(error: KafkaError) -> None:
        router.error(error)
        if own_error_cb is not None:
            own_error_cb(error)

    return settings.kafka_config(**{"logger": router, "error_cb": on_error, **overrides})
