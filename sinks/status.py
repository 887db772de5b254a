"""What the sinks report on the trail-status topic (`kafkatrail.schemas.contract.TrailStatusUpdate`).

`StatusReporter.report` is called after each outcome GetTrailStatus shows (a log file stored or refused, an SNS
publish or its failure, a digest stored, a CloudWatch Logs batch sent or refused). A sink may deliver hundreds of
files a second, so updates are coalesced: per trail, region, kind and outcome at most one record a second
(`min_interval_s`); a later update within that second waits in `pending` and goes out with the next
`report` or `flush` (each worker calls `flush` once per batch and at close), so the last outcome is never lost.
The S3 sink reports from its store and notify threads, so both methods hold a lock. Sending never blocks the
sink: the producer is asynchronous, and a record the broker never takes is only
logged, since the status is informational and the next outcome replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from kafkatrail.core.settings import Settings
from kafkatrail.schemas.contract import TrailStatusUpdate

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0
MAX_ERROR_CHARS = 500


class StatusReporter:
    """Coalesces status updates and produces them to the trail-status topic."""

    def __init__(self, send: Callable[[TrailStatusUpdate], None], min_interval_s: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self._send = send
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._last_sent: dict[str, float] = {}
        self.pending: dict[str, TrailStatusUpdate] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, producer: Producer) -> StatusReporter:
        topic = settings.topics.trail_status

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                log.warning("trail status not recorded", extra={"error": error.str()})

        def send(update: TrailStatusUpdate) -> None:
            producer.produce(topic, update.encode(), update.key.encode(), on_delivery=delivered)

        return cls(send)

    def report(self, trail_arn: str, region: str, kind: str, error: str | None = None) -> None:
        """One outcome now: a success (`error` None) or an error message (shortened; never a secret)."""
        if error is not None:
            error = error[:MAX_ERROR_CHARS]
        update = TrailStatusUpdate(trail_arn, region, kind, round(self._wall_clock(), 3), error)
        with self._lock:
            self.pending[update.key] = update
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Send every pending update whose key has not been sent within the interval (all of them if `force`)."""
        with self._lock:
            now = self._clock()
            for key, update in list(self.pending.items()):
                last = self._last_sent.get(key)
                if force or last is None or now - last >= self.min_interval_s:
                    self._send(update)
                    self._last_sent[key] = now
                    del self.pending[key]
