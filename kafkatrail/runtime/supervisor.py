"""Keeping a worker role alive through broker outages of any length: rebuild and rerun it after a Kafka failure.

Short broker hiccups are ridden out inside a role's loop: librdkafka reconnects and retries, the runtime
logs consumer errors, the trails feed skips transport errors. A longer outage surfaces as an exception
somewhere in a role: a metadata or committed-offsets request that timed out, a transaction that could not
complete, a journal write the broker did not acknowledge in time, a consumer that cannot even be built.

Every role is restart-safe by design (its kill tests: nothing lost or doubled whatever moment the process
dies at), so `Supervisor` treats such a failure as a crash without the process exit: the worker is closed,
the supervisor waits with jittered exponential back-off (1 s doubling to 60 s; back to 1 s after 5 minutes
of running), then builds a fresh worker with the same metrics and the same /healthz and /readyz (not ready
meanwhile), and runs it. It never gives up on an outage; `stop()` ends it within the back-off wait.

What does not end in a rebuild, but in the process's exit (for an operator, or a supervisor of processes
such as Kubernetes, to see): a producer fenced by a newer instance of the same transactional id (a second
copy with the same `--instance-id` runs: taking the id back would fence that one in turn), Kafka refusing
authentication or authorization (settings, not an outage), and any exception that is not a Kafka failure.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from kafkatrail.core.metrics import Health
from kafkatrail.runtime.worker import Worker

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 300.0
# A newer epoch of the producer's transactional id exists (another instance, or the broker timed out a transaction).
FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
EXIT_CODES = FENCED_CODES | frozenset({
    KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
})


def recoverable(exc: BaseException) -> bool:
    """True for a Kafka failure an outage explains (rebuild the worker); False for one that must end the process."""
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code() not in EXIT_CODES
    return False


class SupervisorMetrics:
    """What the supervisor adds to a role's /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.restarts = Counter("kafkatrail_worker_restarts_total",
                                "Workers rebuilt after a Kafka failure, by the failure's error name", ["error"],
                                registry=registry)


class Supervisor:
    """Runs the worker `build(metrics, health)` returns until `stop()`, rebuilding it after each recoverable failure.

    `build` gets None the first time, then the first worker's `metrics`, so every rebuilt worker counts into the
    same Prometheus series; and always the supervisor's `health`, which the endpoints serve."""

    def __init__(self, build: Callable[[Any, Health], Worker], metrics: SupervisorMetrics | None = None) -> None:
        self.build = build
        self.health = Health()
        self.metrics = metrics or SupervisorMetrics()
        self._stopped = threading.Event()
        self._worker: Worker | None = None
        self._role_metrics: Any = None

    def stop(self) -> None:
        """End the worker's loop after the batch in hand, or the back-off wait at once (safe in a signal handler)."""
        self._stopped.set()
        if self._worker is not None:
            self._worker.stop()

    def run(self) -> None:
        delay = FIRST_BACKOFF_S
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                worker = self.build(self._role_metrics, self.health)
                self._role_metrics = getattr(worker, "metrics", None)
                self._worker = worker
                if self._stopped.is_set():
                    worker.stop()
                worker.run()
                return
            except (KafkaException, TimeoutError) as exc:
                if not recoverable(exc):
                    raise
                self.health.ready = False
                if time.monotonic() - started >= HEALTHY_AFTER_S:
                    delay = FIRST_BACKOFF_S
                name = exc.args[0].name() if isinstance(exc, KafkaException) else type(exc).__name__
                self.metrics.restarts.labels(name).inc()
                log.error("worker failed on a Kafka error; rebuilding it", extra={
                    "error": str(exc)[:300], "retry_in_s": round(delay, 1)})
                self._stopped.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MAX_BACKOFF_S)
