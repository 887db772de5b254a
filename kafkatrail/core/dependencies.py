"""Whether this process can reach what it depends on (Kafka, AWS): the `kafkatrail_dependency_up` gauge, and
what /readyz checks besides the worker's own readiness.

A dependency counts as up until something reports it down: a worker that has not tried yet is not yet
ready for its own reasons.
"""

from __future__ import annotations

import threading

from prometheus_client import Gauge

DEPENDENCY_UP = Gauge("kafkatrail_dependency_up", "1 while the dependency answers, 0 while it is unreachable",
                      ["dependency"])


class Dependencies:
    """The up/down state of each named dependency of the process."""

    def __init__(self, gauge: Gauge = DEPENDENCY_UP) -> None:
        self._gauge = gauge
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def report(self, dependency: str, up: bool) -> None:
        """`dependency` answered (`up`) or could not be reached."""
        with self._lock:
            if up:
                self._down.discard(dependency)
            else:
                self._down.add(dependency)
        self._gauge.labels(dependency).set(1 if up else 0)

    def down(self) -> list[str]:
        """The dependencies last reported unreachable, sorted."""
        with self._lock:
            return sorted(self._down)


DEPENDENCIES = Dependencies()
