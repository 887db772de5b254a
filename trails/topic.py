"""The compacted trails topic: publishing a trails file or one trail to it, and following it from a worker.

Key: the trail ARN; value: the trail's document (`Trail.to_document()`); a tombstone deletes the trail.
Header `kafkatrail.origin` says who wrote a definition: `file` (`kafkatrail trails apply`) or `api` (the
CloudTrail API); a definition without it counts as `file` (what `trails apply` wrote before the header existed).
Every worker reads the whole topic at start (`TrailFeed.catch_up`) before it processes any event, then
keeps polling it, so a changed trail takes effect without a restart.

Two writers share the topic, so neither removes what the other made: `apply_trails` creates and updates the
file's trails and deletes nothing, unless asked to prune, and then only trails a file put there
(origin `file`) that the file no longer holds. A trail created through the API is deleted only by DeleteTrail
(or by a file that names it, takes it over, and is later pruned).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kafkatrail.core.compacted import CompactedFeed
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings
from kafkatrail.trails.errors import TrailError
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

TrailChange = Callable[[str, Trail | None], None]
ORIGIN_HEADER = "kafkatrail.origin"
FILE_ORIGIN = "file"
API_ORIGIN = "api"


class TrailFeed(CompactedFeed):
    """Follows the trails topic; calls `on_change(arn, trail)` for each definition, `trail=None` for a deletion."""

    def __init__(self, settings: Settings, on_change: TrailChange) -> None:
        self.on_change = on_change
        self.origins: dict[str, str] = {}  # trail ARN -> who wrote its current definition
        super().__init__(settings, settings.topics.trails, "trails topic")

    def apply(self, message: Message) -> None:
        arn = (message.key() or b"").decode()
        value = message.value()
        if value is None:
            self.origins.pop(arn, None)
            self.on_change(arn, None)
            return
        try:
            trail = Trail.from_document(orjson.loads(value))
        except (TrailError, orjson.JSONDecodeError) as exc:
            log.error("ignored an invalid trail definition on the trails topic",
                      extra={"trail_arn": arn, "offset": message.offset(), "reason": str(exc)})
            return
        if trail.arn != arn:
            log.error("ignored a trail definition whose key is not its ARN", extra={"key": arn, "arn": trail.arn})
            return
        self.origins[arn] = origin_of(message)
        self.on_change(arn, trail)


def origin_of(message: Message) -> str:
    """Who wrote a trail definition (the `kafkatrail.origin` header; `file` when absent)."""
    for name, value in message.headers() or []:
        if name == ORIGIN_HEADER and value:
            return bytes(value).decode()
    return FILE_ORIGIN


def current_trails(settings: Settings) -> dict[str, Trail]:
    """The trails the topic holds now, by ARN."""
    return current_trails_and_origins(settings)[0]


def current_trails_and_origins(settings: Settings) -> tuple[dict[str, Trail], dict[str, str]]:
    """The trails the topic holds now and who wrote each one, by ARN."""
    trails: dict[str, Trail] = {}

    def change(arn: str, trail: Trail | None) -> None:
        if trail is None:
            trails.pop(arn, None)
        else:
            trails[arn] = trail

    feed = TrailFeed(settings, change)
    try:
        feed.catch_up()
    finally:
        feed.close()
    return trails, dict(feed.origins)


def apply_trails(settings: Settings, trails: Iterable[Trail], timeout_s: float = 30.0, *, prune: bool = False,
                 clock: Callable[[], float] = time.time) -> dict[str, str]:
    """Publish the file's `trails` (each changed one); with `prune`, delete the trails an earlier file put on the
    topic that this one no longer holds. Trails the API created are never deleted here.

    A trail keeps its logging times while its IsLogging stays as it was; a change (or a new logging trail)
    stamps the time now. Returns what happened per trail ARN: created, updated, unchanged or deleted.
    """
    wanted = {trail.arn: trail for trail in trails}
    present, origins = current_trails_and_origins(settings)
    outcome: dict[str, str] = {}
    changes: list[tuple[str, Trail | None, str]] = []
    now = clock()
    for arn, trail in wanted.items():
        before = present.get(arn)
        trail = with_logging_times(trail, before, now)
        if before is not None and before.to_document() == trail.to_document() and origins.get(arn) == FILE_ORIGIN:
            outcome[arn] = "unchanged"
            continue
        changes.append((arn, trail, FILE_ORIGIN))
        outcome[arn] = "updated" if before is not None else "created"
    if prune:
        for arn in present.keys() - wanted.keys():
            if origins.get(arn, FILE_ORIGIN) == FILE_ORIGIN:
                changes.append((arn, None, FILE_ORIGIN))
                outcome[arn] = "deleted"
    publish_changes(settings, changes, timeout_s)
    return outcome


def with_logging_times(trail: Trail, before: Trail | None, now: float) -> Trail:
    """`trail` carrying the logging times it should have after replacing `before` (None: a new trail)."""
    if before is not None and before.logging == trail.logging:
        return dataclasses.replace(trail, start_logging_time=before.start_logging_time,
                                   stop_logging_time=before.stop_logging_time)
    start = before.start_logging_time if before is not None else None
    stop = before.stop_logging_time if before is not None else None
    if trail.logging:
        start = now
    elif before is not None:
        stop = now
    return dataclasses.replace(trail, start_logging_time=start, stop_logging_time=stop)


def publish_changes(settings: Settings, changes: list[tuple[str, Trail | None, str]],
                    timeout_s: float = 30.0) -> dict[str, tuple[int, int]]:
    """Publish each (ARN, trail or None for a deletion, origin) and wait until the broker has every one.

    Touches no other trail. Returns, per ARN, the (partition, offset) the change landed at; raises
    KafkaException when a change is not acknowledged within `timeout_s`.
    """
    failures: list[str] = []
    landed: dict[str, tuple[int, int]] = {}

    def delivered(error: KafkaError | None, message: Message) -> None:
        arn = (message.key() or b"").decode()
        if error is not None:
            failures.append(f"{arn}: {error.str()}")
        else:
            landed[arn] = (message.partition(), message.offset())

    producer = Producer(kafka_config(settings, **{"enable.idempotence": True, "acks": "all", "linger.ms": 0}))
    for arn, trail, origin in changes:
        value = None if trail is None else orjson.dumps(trail.to_document())
        producer.produce(settings.topics.trails, key=arn.encode(), value=value, on_delivery=delivered,
                         headers=[(ORIGIN_HEADER, origin.encode())])
    unsent = producer.flush(timeout_s)
    producer.close()
    if failures or unsent:
        raise KafkaException(KafkaError(KafkaError._FAIL, "trails not published: " + "; ".join(
            failures or [f"{unsent} definition(s) unacknowledged after {timeout_s:.0f} s"])))
    return landed


def publish_trail(settings: Settings, trail: Trail, origin: str = API_ORIGIN,
                  timeout_s: float = 30.0) -> tuple[int, int]:
    """Publish one trail's definition, leaving every other trail as it is; where it landed."""
    return publish_changes(settings, [(trail.arn, trail, origin)], timeout_s)[trail.arn]


def delete_trail(settings: Settings, arn: str, origin: str = API_ORIGIN, timeout_s: float = 30.0) -> tuple[int, int]:
    """Delete one trail (a tombstone for its ARN), leaving every other trail as it is; where it landed."""
    return publish_changes(settings, [(arn, None, origin)], timeout_s)[arn]
