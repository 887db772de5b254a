"""Generators over kafkatrail's output topics, on a confluent-kafka consumer in the caller's consumer group.

    for event in events(load_settings(), "my-group"):
        handle(event)

The consumer reads read_committed (the delivery topic is written in transactions; records of an aborted
transaction are never yielded) and auto-commits, but only offsets it has been told to store
(`enable.auto.offset.store=False`): a record's offset is stored when the caller asks for the next record,
that is once the caller is done with it. The record in hand when the loop is left (`break`, an exception,
closing the generator) is not stored, so the group gets it again: at-least-once. A record that does not
decode is logged (where it is and why, never its content), stored and skipped. The consumer is created on
the first `next()` and closed, committing what was stored, when the generator ends or is closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings
from kafkatrail.downstream.records import CloudTrailEvent, LogFileNotification

log = logging.getLogger(__name__)

POLL_S = 1.0

T = TypeVar("T")


def notifications(
    settings: Settings, group_id: str, *, from_beginning: bool = False, timeout_s: float | None = None,
) -> Generator[LogFileNotification, None, None]:
    """Notifications of stored log files, from `settings.topics.notifications`, in consumer group `group_id`.

    `from_beginning`: where a group without committed offsets starts (else: at the end of the topic).
    `timeout_s`: end after this many seconds without a new message, counted from the start (joining the
    group included) and again after each message (None: wait forever).
    """
    yield from _records(settings, settings.topics.notifications, group_id, LogFileNotification.from_message,
                        from_beginning, timeout_s)


def events(
    settings: Settings, group_id: str, *, from_beginning: bool = False, timeout_s: float | None = None,
) -> Generator[CloudTrailEvent, None, None]:
    """Committed CloudTrail event records from `settings.topics.delivery`, in consumer group `group_id`.

    `from_beginning` and `timeout_s` as for `notifications`.
    """
    yield from _records(settings, settings.topics.delivery, group_id, CloudTrailEvent.from_message,
                        from_beginning, timeout_s)


def _records(
    settings: Settings, topic: str, group_id: str, decode: Callable[[bytes | None, bytes], T],
    from_beginning: bool, timeout_s: float | None,
) -> Generator[T, None, None]:
    consumer = Consumer(kafka_config(settings, **{
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    }))
    try:
        consumer.subscribe([topic])
        idle_since = time.monotonic()
        while timeout_s is None or (left_s := timeout_s - (time.monotonic() - idle_since)) > 0:
            message = consumer.poll(POLL_S if timeout_s is None else min(POLL_S, left_s))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer error", extra={"topic": topic, "error": error.str()})
                continue
            try:
                record = decode(message.key(), message.value() or b"")
            except ValueError as exc:
                log.warning("skipped a record that does not decode", extra={
                    "topic": topic, "partition": message.partition(), "offset": message.offset(), "reason": str(exc)})
            else:
                yield record
            try:
                consumer.store_offsets(message=message)
            except KafkaException as exc:
                log.info("offset not stored: the partition was revoked; its new owner reads the record again",
                         extra={"topic": topic, "partition": message.partition(), "offset": message.offset(),
                                "error": str(exc)})
            idle_since = time.monotonic()
    finally:
        consumer.close()
