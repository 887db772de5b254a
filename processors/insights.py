"""CloudTrail Insights detector: per-minute counts in event time, a seasonal baseline, Start/End records.

What is counted
    A *unit* is one (trail, account, region, eventSource, eventName, insightType[, errorCode]).
    `ApiCallRateInsight` counts write management events (`readOnly` false); `ApiErrorRateInsight` counts
    read and write management events that carry an `errorCode`, one unit per error code (the Insights
    record carries it in `insightDetails`, docs/cloudtrail.md §9). Counts are per minute of `eventTime`.

Event time and allowed lateness
    The detector's watermark is the latest `eventTime` seen minus `allowed_lateness_s` (default 120 s).
    Minute m is *closed* (evaluated, never again) once the watermark passes its end. An event for a closed
    minute still counts in the baseline history but changes no decision already taken; it is reported
    as late. The watermark is shared by all units so a unit that falls silent still closes its minutes.
    An event stamped in the future moves the watermark no further than the time it was received (its
    Kafka timestamp), so one bad clock cannot close the minutes of everyone else's events.

Baseline (robust to daily and weekly rhythm)
    History is kept as counts per slot of `slot_minutes` (default 10) for `baseline_days` (default 7)
    days. The expected rate of minute m, e(m), is
        max over the slot s of m and its `neighbour_slots` neighbours on each side of
            with a week of history:  max( count(s - 7 days),  `floor_rank`-th lowest of count(s - d days), d = 1..7 )
            before that:             median over d = 1..D of count(s - d days)
        divided by slot_minutes,
    where D is the number of whole days of history the trail has for that account and region (at most
    `baseline_days`). Every term compares a minute with the same time of day on other days, so the
    morning rise is compared with previous mornings, not with a flat mean that includes the night.
    The same slot one week earlier carries the weekly rhythm: a busy Saturday is compared with last
    Saturday, and a quiet Sunday with last Sunday (a median over the week would let the weekdays
    outvote it and hide a weekend burst). The `floor_rank`-th (2nd) lowest day guards against last
    week's slot being unusually low (a holiday, an outage) without letting one busy day in. Neighbour
    slots absorb a daily rhythm that comes a little early. A unit seen for the first time has zero
    history, so its expected rate is 0.
    No Insight is started before the trail has `min_history_days` (default 1) of history in that
    account and region: a new trail replayed from past logs or a fast-forward simulation is ready as
    soon as that much event time has gone through it.

Start rule
    At the close of minute m, with W = c(m-1) + c(m) the calls of the last `start_window` (2) minutes
    and E = e(m-1) + e(m) their expected calls, an Insight starts when
        W >= max(start_ratio * E, poisson_upper(E, start_alpha), start_window * min_rate)
    with start_ratio 3, start_alpha 1e-6 (the Poisson tail keeps low-rate APIs from alarming on noise),
    min_rate 5 calls (or errors) per minute. Its start time is minute m-1 if c(m-1) was already above
    end_ratio * e(m-1), else minute m. The decision is taken at the end of minute m, so a burst that
    begins at or after the start of minute m-1 is detected within 2 minutes of event time.
End rule (hysteresis)
    A minute is quiet when c(m) < max(end_ratio * e(m), min_rate) with end_ratio 2. The Insight ends at
    the first minute of `end_minutes` (3) consecutive quiet minutes.
Statistics
    baseline.average is the plain mean rate over the whole days of history before the start (the
    baselineDuration, in minutes); insight.average is the first minute's rate in the Start record and
    the mean over the Insight in the End record; insightDuration is the minutes from the start to the
    decision (Start) or to the end (End). Attributions (user identity ARN, user agent and, for call
    rate, error code) are kept per unit and day, each bounded to `attribution_values` values.
Identifiers are UUIDv5 of the unit and start minute, so replaying the same input yields the same records.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from kafkatrail.core.settings import InsightsSettings, SettingsError
from kafkatrail.schemas.contract import event_minute as minute_of

CALL_RATE = "ApiCallRateInsight"
ERROR_RATE = "ApiErrorRateInsight"
INSIGHT_TYPES = (CALL_RATE, ERROR_RATE)
MINUTES_PER_DAY = 1440
NULL_VALUE = "null"
EVENT_VERSION = "1.11"
_ID_NAMESPACE = uuid.UUID("6b1f3c52-8d0e-4f7a-9c21-5e4b7a9d0c13")


@dataclass(frozen=True, kw_only=True)
class InsightsConfig:
    """The detector's parameters; see the module docstring for the rule they tune."""

    baseline_days: int = 7
    min_history_days: int = 1
    slot_minutes: int = 10
    neighbour_slots: int = 1
    floor_rank: int = 2
    start_window: int = 2
    start_ratio: float = 3.0
    start_alpha: float = 1e-6
    min_rate: float = 5.0
    end_ratio: float = 2.0
    end_minutes: int = 3
    allowed_lateness_s: int = 120
    attribution_values: int = 50

    def __post_init__(self) -> None:
        if MINUTES_PER_DAY % self.slot_minutes:
            raise ValueError(f"slot_minutes must divide a day, got {self.slot_minutes}")
        if not 1 <= self.min_history_days <= self.baseline_days:
            raise ValueError("min_history_days must be between 1 and baseline_days")
        if self.end_ratio > self.start_ratio:
            raise ValueError("end_ratio must not exceed start_ratio (hysteresis)")
        if not 1 <= self.floor_rank <= 7:
            raise ValueError("floor_rank must be between 1 and 7")
        if self.start_window < 1 or self.end_minutes < 1:
            raise ValueError("start_window and end_minutes must be at least 1")

    @classmethod
    def from_settings(cls, settings: InsightsSettings) -> InsightsConfig:
        """The rule's parameters from the `[insights]` settings; SettingsError when they contradict each other."""
        try:
            return cls(**settings.model_dump(include={f.name for f in fields(cls)}))
        except ValueError as exc:
            raise SettingsError(f"insights: {exc}") from None


@dataclass(frozen=True)
class Unit:
    """What one Insight is about."""

    trail_arn: str
    account: str
    region: str
    event_source: str
    event_name: str
    insight_type: str
    error_code: str = ""

    @property
    def scope(self) -> tuple[str, str, str]:
        return self.trail_arn, self.account, self.region

    @property
    def output_key(self) -> bytes:
        """The key of the Insights topic, as the delivery topic's: `trailARN|account|region`."""
        return "|".join(self.scope).encode()


Attributes = dict[str, Counter[str]]


@dataclass
class OpenInsight:
    """An Insight whose Start is out and whose End is not."""

    shared_id: str
    start: int
    baseline_average: float
    baseline_minutes: int
    baseline_attributions: list[dict[str, Any]]
    calls: int = 0
    attributes: Attributes = field(default_factory=dict)
    quiet: int = 0
    quiet_calls: int = 0


@dataclass
class UnitState:
    """Per unit: history slots, daily attributions, open minutes, the last closed minutes, an open Insight."""

    slots: dict[int, int] = field(default_factory=dict)
    days: dict[int, Attributes] = field(default_factory=dict)
    pending: dict[int, tuple[int, Attributes]] = field(default_factory=dict)
    recent: dict[int, tuple[int, Attributes]] = field(default_factory=dict)
    expected: dict[tuple[int, int], float] = field(default_factory=dict)
    open: OpenInsight | None = None


@lru_cache(maxsize=4096)
def _poisson_upper_cached(mean: float, alpha: float) -> int:
    if mean <= 0:
        return 1
    term = math.exp(-mean) if mean < 700 else 0.0
    if term == 0.0:  # far in the normal regime: a generous normal bound
        return math.ceil(mean + 6 * math.sqrt(mean))
    k, below = 0, term
    while 1.0 - below > alpha:
        k += 1
        term *= mean / k
        below += term
    return k + 1


def poisson_upper(mean: float, alpha: float) -> int:
    """Smallest k with P(X >= k) <= alpha for X ~ Poisson(mean); mean rounded up to 2 significant digits."""
    if mean > 0:
        scale = 10 ** (math.floor(math.log10(mean)) - 1)
        mean = math.ceil(mean / scale) * scale
    return _poisson_upper_cached(mean, alpha)


def _merge(into: Attributes, other: Mapping[str, Counter[str]], limit: int) -> None:
    for attribute, counts in other.items():
        target = into.setdefault(attribute, Counter())
        target.update(counts)
        if len(target) > limit:
            into[attribute] = Counter(dict(target.most_common(limit)))


def _top(counts: Counter[str], minutes: int) -> list[dict[str, Any]]:
    return [{"value": value, "average": round(count / minutes, 6)} for value, count in counts.most_common(5)]


def _time(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_attributes(event: Mapping[str, Any], insight_type: str) -> Attributes:
    """The attribution values of one CloudTrail event."""
    identity = event.get("userIdentity") or {}
    arn = identity.get("arn") or identity.get("invokedBy") or identity.get("type") or NULL_VALUE
    attributes: Attributes = {"userIdentityArn": Counter([arn]),
                              "userAgent": Counter([event.get("userAgent") or NULL_VALUE])}
    if insight_type == CALL_RATE:
        attributes["errorCode"] = Counter([event.get("errorCode") or NULL_VALUE])
    return attributes


def event_units(trail_arn: str, event: Mapping[str, Any], types: Iterable[str]) -> list[Unit]:
    """The units a CloudTrail event counts in, for a trail whose Insights selectors enable `types`."""
    if event.get("eventCategory", "Management") != "Management" or event.get("managementEvent") is False:
        return []
    base = (trail_arn, str(event.get("recipientAccountId", "")), str(event.get("awsRegion", "")),
            str(event.get("eventSource", "")), str(event.get("eventName", "")))
    units = []
    if CALL_RATE in types and event.get("readOnly") is False:
        units.append(Unit(*base, CALL_RATE))
    if ERROR_RATE in types and event.get("errorCode"):
        units.append(Unit(*base, ERROR_RATE, str(event["errorCode"])))
    return units


def event_minute(event: Mapping[str, Any]) -> int:
    """The minute since the epoch of the event's eventTime."""
    return minute_of(str(event["eventTime"]))


class InsightsDetector:
    """Counts events per unit and minute and turns closed minutes into Insights Start/End records."""

    def __init__(self, config: InsightsConfig | None = None) -> None:
        self.config = config or InsightsConfig()
        self.units: dict[Unit, UnitState] = {}
        self.scope_first: dict[tuple[str, str, str], int] = {}
        self.closed_until = -1  # minutes < closed_until are closed
        self.max_event_s = -1
        self.late = 0
        self.dirty: set[Unit] = set()

    # -- input -------------------------------------------------------------------------------------
    def add_event(self, trail_arn: str, event: Mapping[str, Any], types: Iterable[str],
                  received_s: float | None = None) -> None:
        """Count one CloudTrail event for a trail whose Insights selectors enable `types`.

        `received_s` (epoch seconds the event reached Kafka) caps how far the event moves the watermark.
        """
        minute = event_minute(event)
        event_s = minute * 60 + int(str(event["eventTime"])[17:19] or 0)
        self.max_event_s = max(self.max_event_s, event_s if received_s is None else min(event_s, int(received_s)))
        for unit in event_units(trail_arn, event, types):
            self.observe(unit, minute, 1, event_attributes(event, unit.insight_type))
        scope = (trail_arn, str(event.get("recipientAccountId", "")), str(event.get("awsRegion", "")))
        self._see_scope(scope, minute)

    def observe(self, unit: Unit, minute: int, count: int, attributes: Attributes) -> None:
        """Add `count` calls of `unit` in `minute` (aggregated input, as the evaluator feeds it)."""
        self._see_scope(unit.scope, minute)
        state = self.units.setdefault(unit, UnitState())
        self.dirty.add(unit)
        slot = minute // self.config.slot_minutes
        state.slots[slot] = state.slots.get(slot, 0) + count
        _merge(state.days.setdefault(minute // MINUTES_PER_DAY, {}), attributes, self.config.attribution_values)
        if minute < self.closed_until:
            self.late += count
            return
        pending_count, pending_attributes = state.pending.get(minute, (0, {}))
        _merge(pending_attributes, attributes, self.config.attribution_values)
        state.pending[minute] = (pending_count + count, pending_attributes)

    def _see_scope(self, scope: tuple[str, str, str], minute: int) -> None:
        first = self.scope_first.get(scope)
        if first is None or minute < first:
            self.scope_first[scope] = minute

    # -- evaluation --------------------------------------------------------------------------------
    def advance(self) -> list[tuple[bytes, dict[str, Any]]]:
        """Close the minutes the watermark has passed; the Insights records they produce."""
        if self.max_event_s < 0:
            return []
        return self.close_until((self.max_event_s - self.config.allowed_lateness_s) // 60)

    def close_until(self, end_minute: int) -> list[tuple[bytes, dict[str, Any]]]:
        """Close every minute before `end_minute`, in order, per unit.

        A unit with an open Insight is evaluated at every minute (silence ends an Insight); any other
        unit only at minutes in which it had calls (a minute without calls cannot start one).
        """
        if end_minute <= self.closed_until:
            return []
        start = self.closed_until
        self.closed_until = end_minute
        records: list[tuple[bytes, dict[str, Any]]] = []
        for unit, state in self.units.items():
            due = sorted(m for m in state.pending if m < end_minute)
            if state.open is not None:
                due = list(range(max(start, state.open.start + 1), end_minute))
            if due:
                self.dirty.add(unit)
            for minute in due:
                records.extend(self._close_minute(unit, state, minute))
            self._prune(state, end_minute)
        return records

    def expected(self, unit: Unit, minute: int) -> float | None:
        """e(m): the expected calls of `unit` in `minute`, or None before `min_history_days` of history."""
        config = self.config
        days = self._history_days(unit, minute)
        if days < config.min_history_days:
            return None
        state = self.units.get(unit)
        slots = state.slots if state else {}
        per_day = MINUTES_PER_DAY // config.slot_minutes
        slot = minute // config.slot_minutes
        cached = state.expected.get((slot, days)) if state else None
        if cached is not None:
            return cached
        best = 0.0
        for s in range(slot - config.neighbour_slots, slot + config.neighbour_slots + 1):
            daily = [slots.get(s - d * per_day, 0) for d in range(1, days + 1)]
            if days >= 7:
                best = max(best, slots.get(s - 7 * per_day, 0), sorted(daily)[config.floor_rank - 1])
            else:
                best = max(best, statistics.median(daily))
        if state:
            state.expected[(slot, days)] = best / config.slot_minutes
        return best / config.slot_minutes

    def _history_days(self, unit: Unit, minute: int) -> int:
        first = self.scope_first.get(unit.scope)
        if first is None:
            return 0
        return min(self.config.baseline_days, (minute - first) // MINUTES_PER_DAY)

    def _close_minute(self, unit: Unit, state: UnitState, minute: int) -> list[tuple[bytes, dict[str, Any]]]:
        config = self.config
        count, attributes = state.pending.pop(minute, (0, {}))
        state.recent[minute] = (count, attributes)
        for old in [m for m in state.recent if m <= minute - config.start_window]:
            del state.recent[old]
        expected = self.expected(unit, minute)
        if expected is None:
            return []
        if state.open is not None:
            return self._continue(unit, state, count, expected, attributes)
        window = [(m, *state.recent.get(m, (0, {})), self.expected(unit, m) or 0.0)
                  for m in range(minute - config.start_window + 1, minute + 1)]
        calls = sum(item[1] for item in window)
        window_expected = sum(item[3] for item in window)
        threshold = max(config.start_ratio * window_expected, poisson_upper(window_expected, config.start_alpha),
                        config.start_window * config.min_rate)
        if calls < threshold:
            return []
        begin = next(i for i, item in enumerate(window) if item[1] > config.end_ratio * item[3] or item[0] == minute)
        return [self._start(unit, state, window[begin:], minute)]

    def _start(self, unit: Unit, state: UnitState, minutes: list[tuple[int, int, Attributes, float]],
               decided: int) -> tuple[bytes, dict[str, Any]]:
        start = minutes[0][0]
        days = self._history_days(unit, start)
        first_day = start // MINUTES_PER_DAY - days
        baseline_minutes = days * MINUTES_PER_DAY
        lo, hi = (start - baseline_minutes) // self.config.slot_minutes, start // self.config.slot_minutes
        total = sum(count for slot, count in state.slots.items() if lo <= slot < hi)
        baseline_attributes: Attributes = {}
        for day in range(first_day, start // MINUTES_PER_DAY):
            _merge(baseline_attributes, state.days.get(day, {}), self.config.attribution_values)
        opened = OpenInsight(shared_id=str(uuid.uuid5(_ID_NAMESPACE, f"{unit}|{start}")), start=start,
                       baseline_average=total / baseline_minutes, baseline_minutes=baseline_minutes,
                       baseline_attributions=[])
        for _, count, attributes, _ in minutes:
            opened.calls += count
            _merge(opened.attributes, attributes, self.config.attribution_values)
        opened.baseline_attributions = [
            {"attribute": name, "baseline": _top(baseline_attributes.get(name, Counter()), baseline_minutes)}
            for name in self._attribute_names(unit)]
        state.open = opened
        first_rate = float(minutes[0][1])
        attributions = [{"attribute": item["attribute"],
                         "insight": _top(minutes[0][2].get(item["attribute"], Counter()), 1),
                         "baseline": item["baseline"]} for item in opened.baseline_attributions]
        return unit.output_key, self._record(unit, opened, "Start", start, first_rate, decided + 1 - start,
                                             attributions)

    def _continue(self, unit: Unit, state: UnitState, count: int, expected: float,
                  attributes: Attributes) -> list[tuple[bytes, dict[str, Any]]]:
        config = self.config
        opened = state.open
        assert opened is not None
        opened.calls += count
        _merge(opened.attributes, attributes, config.attribution_values)
        if count < max(config.end_ratio * expected, config.min_rate):
            opened.quiet += 1
            opened.quiet_calls += count
        else:
            opened.quiet = opened.quiet_calls = 0
        if opened.quiet < config.end_minutes:
            return []
        end = max(state.recent) + 1 - opened.quiet
        duration = max(1, end - opened.start)
        state.open = None
        state.recent.clear()
        average = (opened.calls - opened.quiet_calls) / duration
        return [(unit.output_key, self._record(unit, opened, "End", end, average, duration, None))]

    @staticmethod
    def _attribute_names(unit: Unit) -> tuple[str, ...]:
        if unit.insight_type == CALL_RATE:
            return "userIdentityArn", "userAgent", "errorCode"
        return "userIdentityArn", "userAgent"

    def _record(self, unit: Unit, opened: OpenInsight, state: str, minute: int, average: float, duration: int,
                attributions: list[dict[str, Any]] | None) -> dict[str, Any]:
        details: dict[str, Any] = {"state": state, "eventSource": unit.event_source, "eventName": unit.event_name,
                                   "insightType": unit.insight_type}
        if unit.error_code:
            details["errorCode"] = unit.error_code
        context: dict[str, Any] = {"statistics": {
            "baseline": {"average": round(opened.baseline_average, 6)},
            "insight": {"average": round(average, 6)},
            "insightDuration": duration,
            "baselineDuration": opened.baseline_minutes}}
        if attributions is not None:
            context["attributions"] = attributions
        details["insightContext"] = context
        return {"eventVersion": EVENT_VERSION, "eventTime": _time(minute), "awsRegion": unit.region,
                "eventID": str(uuid.uuid5(_ID_NAMESPACE, f"{opened.shared_id}|{state}")),
                "eventType": "AwsCloudTrailInsight", "recipientAccountId": unit.account,
                "sharedEventID": opened.shared_id, "insightDetails": details, "eventCategory": "Insight"}

    def _prune(self, state: UnitState, end_minute: int) -> None:
        keep_days = self.config.baseline_days + 1
        oldest_slot = (end_minute - keep_days * MINUTES_PER_DAY) // self.config.slot_minutes
        for slot in [s for s in state.slots if s < oldest_slot]:
            del state.slots[slot]
        for day in [d for d in state.days if d < end_minute // MINUTES_PER_DAY - keep_days]:
            del state.days[day]
        for key in [k for k in state.expected if k[0] < end_minute // self.config.slot_minutes - 1]:
            del state.expected[key]
