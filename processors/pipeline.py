"""What the processor does to one batch of one events partition, without Kafka: pure and testable.

For each message: decode (Avro) and validate; anything that fails becomes a dead-letter entry with the
original bytes and a reason. So does a valid record for an account its source topic may not write for
(`unauthorized.account`, `processors/sources.py`), one whose Kafka key is not its eventID in lower case
(`invalid.key`: a copy keyed otherwise could land in another partition, whose dedupe window never sees the
first), and one whose eventID the window holds with different content (`conflict.eventID`: the first record
stays). A copy of a record the window holds is dropped, also when its eventID differs only in letter case.
Every other record goes once to each trail whose selectors match it, as CloudTrail JSON keyed
`trailARN|account|region` (the unit a log file is written for), and, when it is a management event, once to the
history topic keyed by its eventID, whether or not a trail selects it (event history ignores trail selectors).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from kafkatrail.processors.dedupe import DedupeWindow, Seen, content_digest
from kafkatrail.processors.sources import OWNER_FIELD, UNAUTHORIZED_ACCOUNT, AccountAllowList
from kafkatrail.schemas.contract import DeliveryKey, record_category
from kafkatrail.schemas.errors import DecodeError
from kafkatrail.schemas.validation import InvalidEventError, validated_json


class InputMessage(NamedTuple):
    """One message of the events topic, as the pipeline needs it."""

    value: bytes | None
    key: bytes | None
    timestamp_s: float
    offset: int


class SelectedTrail(Protocol):
    @property
    def arn(self) -> str: ...

    @property
    def name(self) -> str: ...


class TrailSelection(Protocol):
    def select(self, record: Mapping[str, Any]) -> Sequence[SelectedTrail]: ...


_INDEX = re.compile(r"\[\d+\]")
KEY_RULE = "the Kafka key must be the record's eventID in lower case: it decides the partition all copies meet in"
CONFLICT_RULE = ("a record with this eventID and different content was accepted first, within the dedupe window; "
                 "that one was kept")


@dataclass
class Rejected:
    """A message for the dead-letter topic: the original bytes and why they were refused."""

    message: InputMessage
    reason: str
    detail: str

    @property
    def reason_label(self) -> str:
        """The reason with array indexes folded (`resources[292]` -> `resources[]`): a metric label whose number
        of values the input cannot grow."""
        return _INDEX.sub("[]", self.reason)


@dataclass
class BatchOutcome:
    """Everything one batch of one partition produces; the worker writes it in one transaction."""

    deliveries: list[tuple[bytes, bytes]] = field(default_factory=list)
    history: list[tuple[bytes, bytes]] = field(default_factory=list)  # (eventID, record) of management events
    rejected: list[Rejected] = field(default_factory=list)
    first_seen: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    duplicates: int = 0
    conflicts: int = 0
    selected: Counter[str] = field(default_factory=Counter)  # by trail ARN


class EventPipeline:
    """Decode, validate, dedupe and select, batch by batch."""

    def __init__(self, decode: Callable[[bytes], dict[str, Any]], trails: TrailSelection) -> None:
        self.decode = decode
        self.trails = trails

    def process(self, messages: Sequence[InputMessage], dedupe: DedupeWindow,
                allow: AccountAllowList | None = None) -> BatchOutcome:
        """Run one partition's messages, in offset order, against that partition's dedupe window; with `allow`,
        a valid record for an account not on it is rejected before it reaches the window
        (`processors/sources.py`)."""
        outcome = BatchOutcome()
        decode = self.decode
        select = self.trails.select
        deliveries = outcome.deliveries
        history = outcome.history
        for message in messages:
            try:
                if message.value is None:
                    raise DecodeError("no_value", "message has no value (a tombstone)")
                record = decode(message.value)
                body = validated_json(record)
            except DecodeError as exc:
                outcome.rejected.append(Rejected(message, f"undecodable.{exc.reason}", str(exc)))
                continue
            except InvalidEventError as exc:
                outcome.rejected.append(Rejected(message, f"invalid.{exc.field}.{exc.rule}", str(exc)))
                continue
            if allow is not None and record[OWNER_FIELD] not in allow.accounts:
                outcome.rejected.append(Rejected(message, UNAUTHORIZED_ACCOUNT, allow.refusal(record[OWNER_FIELD])))
                continue
            event_id = record["eventID"]
            canonical_id = event_id.lower()
            if message.key is None or message.key != canonical_id.encode():
                outcome.rejected.append(Rejected(message, "invalid.key", KEY_RULE))
                continue
            bucket = dedupe.bucket_of(message.timestamp_s)
            digest = content_digest(body if canonical_id == event_id else
                                    body.replace(event_id.encode(), canonical_id.encode()))
            seen = dedupe.first_seen(event_id, bucket, digest)
            if seen is Seen.COPY:
                outcome.duplicates += 1
                continue
            if seen is Seen.CONFLICT:
                outcome.conflicts += 1
                outcome.rejected.append(Rejected(message, "conflict.eventID", CONFLICT_RULE))
                continue
            outcome.first_seen[bucket].append((event_id, digest))
            if record_category(record) == "Management":
                history.append((canonical_id.encode(), body))
            for trail in select(record):
                deliveries.append((DeliveryKey.of_record(trail.arn, record).encode(), body))
                outcome.selected[trail.arn] += 1
        return outcome
