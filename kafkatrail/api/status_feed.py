"""Follows the compacted trail-status topic (`kafkatrail.schemas.contract.TrailStatusUpdate`) for GetTrailStatus."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Message

from kafkatrail.core.compacted import CompactedFeed
from kafkatrail.core.settings import Settings
from kafkatrail.schemas.contract import TrailStatusUpdate

log = logging.getLogger(__name__)


class StatusFeed(CompactedFeed):
    """Calls `on_update` for each status record, from the start of the topic, then as they arrive."""

    def __init__(self, settings: Settings, on_update: Callable[[TrailStatusUpdate], None]) -> None:
        self.on_update = on_update
        super().__init__(settings, settings.topics.trail_status, "trail-status topic")

    def apply(self, message: Message) -> None:
        value = message.value()
        if value is None:
            return
        try:
            self.on_update(TrailStatusUpdate.decode(value))
        except ValueError as exc:
            log.warning("ignored an unreadable trail status record", extra={"offset": message.offset(),
                                                                              "reason": str(exc)[:200]})
