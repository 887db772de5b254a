"""The SDK services call to publish CloudTrail records to Kafka.

`EventProducer.emit()` validates a record (raising `InvalidEventError` that names the field and rule),
encodes it with the event codec and hands it to an idempotent confluent-kafka producer (acks=all),
keyed by eventID so every copy of a duplicate lands in the same partition, where the processors'
dedupe meets it. When librdkafka's queue is full, `emit()` waits for room by polling; it never drops.
A record the broker finally refuses is never forgotten: it is counted, passed to `on_error` if one is
given, and otherwise raised as `DeliveryError` from the next `flush()` or `close()`.

`emit()` is the hot path, so it does no per-record bookkeeping beyond a count: accepted records are added
to the Prometheus counter in batches (by the first `emit()` after each second, and by `flush()`), and the
delivery callback is registered once with the client rather than passed with every record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings
from kafkatrail.schemas.codec import EventCodec, make_codec
from kafkatrail.schemas.validation import InvalidEventError, validate_event

__all__ = ["DeliveryError", "EventProducer", "InvalidEventError"]

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "queue.buffering.max.kbytes": 262_144,
    "delivery.report.only.error": True,
}
POLL_EVERY = 1000
_INDEX = re.compile(r"\[\d+\]")  # array indexes, folded out of metric labels
FULL_QUEUE_WAIT_S = 0.001  # only failed deliveries wake poll(), so it sleeps this long each time
METRICS_EVERY_S = 1.0  # how stale kafkatrail_producer_events_accepted_total may get while emitting

EVENTS_ACCEPTED = Counter("kafkatrail_producer_events_accepted_total", "Records validated and queued for Kafka")
EVENTS_REJECTED = Counter("kafkatrail_producer_events_rejected_total", "Records refused by validation",
                          ["field", "rule"])
DELIVERY_FAILURES = Counter("kafkatrail_producer_delivery_failures_total",
                            "Records the broker did not acknowledge", ["reason"])


class DeliveryError(RuntimeError):
    """Records that Kafka did not acknowledge; `failures` holds (eventID, reason) pairs."""

    def __init__(self, failures: list[tuple[str, str]], unsent: int = 0) -> None:
        self.failures = failures
        self.unsent = unsent
        parts = []
        if failures:
            sample = ", ".join(f"{event_id} ({reason})" for event_id, reason in failures[:3])
            parts.append(f"{len(failures)} record(s) were not delivered, e.g. {sample}")
        if unsent:
            parts.append(f"{unsent} record(s) were still unacknowledged when the flush timed out")
        super().__init__("; ".join(parts))


class EventProducer:
    """Publishes validated CloudTrail records to the events topic. Use as a context manager or close()."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        codec: EventCodec | None = None,
        on_error: Callable[[str, KafkaError], None] | None = None,
        **producer_config: Any,
    ) -> None:
        self.topic = topic or settings.topics.events
        self.codec = codec or make_codec()
        self._encode = self.codec.encode
        self.on_error = on_error
        self.accepted = 0
        self._accepted_reported = 0
        self._metrics_due = monotonic() + METRICS_EVERY_S
        self.failures: list[tuple[str, str]] = []
        self._client_errors: list[KafkaError] = []
        config = kafka_config(
            settings, **{**PRODUCER_DEFAULTS, **producer_config}, error_cb=self._on_client_error,
            on_delivery=self._on_delivery)
        self._producer = Producer(config)

    def emit(self, record: Mapping[str, Any] | bytes | str) -> str:
        """Validate, encode and queue one record; returns its eventID. Raises InvalidEventError."""
        try:
            try:
                event = validate_event(record)
                value = self._encode(event)
            except RecursionError:
                raise InvalidEventError("record", "depth", "is nested too deeply to encode") from None
        except InvalidEventError as exc:
            EVENTS_REJECTED.labels(_INDEX.sub("[]", exc.field), exc.rule).inc()
            raise
        event_id = event["eventID"]
        key = event_id.lower().encode()  # canonical: every spelling of an eventID lands in the same partition
        try:
            self._producer.produce(self.topic, value, key)
        except BufferError:
            self._produce_when_there_is_room(key, value)
        self.accepted += 1
        if self.accepted % POLL_EVERY == 0:
            self._producer.poll(0)
        if monotonic() >= self._metrics_due:
            self._report_accepted()
        return event_id

    def _produce_when_there_is_room(self, key: bytes, value: bytes) -> None:
        while True:
            self._producer.poll(FULL_QUEUE_WAIT_S)
            try:
                self._producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def _report_accepted(self) -> None:
        EVENTS_ACCEPTED.inc(self.accepted - self._accepted_reported)
        self._accepted_reported = self.accepted
        self._metrics_due = monotonic() + METRICS_EVERY_S

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        event_id = (message.key() or b"").decode(errors="replace")
        DELIVERY_FAILURES.labels(error.name()).inc()
        if self.on_error is not None:
            self.on_error(event_id, error)
        else:
            self.failures.append((event_id, error.str()))

    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._client_errors.append(error)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued record is acknowledged; raise DeliveryError for any that was not."""
        self._report_accepted()
        unsent = self._producer.flush(timeout_s)
        if self._client_errors:
            raise DeliveryError([("*", f"fatal producer error: {e.str()}") for e in self._client_errors], unsent)
        if self.failures or unsent:
            failures, self.failures = self.failures, []
            raise DeliveryError(failures, unsent)

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush, then release librdkafka's client; the producer cannot be used afterwards."""
        try:
            self.flush(timeout_s)
        finally:
            self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
