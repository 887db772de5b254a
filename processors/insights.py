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

Baseline (robust to daily and weekly rhythm, pooled at low rates)
    History is kept as counts per slot of `slot_minutes` (default 10) for `baseline_days` (default 7)
    days. The expected rate of minute m, e(m), compares m with the same time of day on other days: each
    day's rate is pooled over the slot of m and `neighbour_slots` (1) slots on each side, widened up to
    `max_pool_slots` (6, two hours in all) until the reference day holds `pool_calls` (60) calls, so an
    API called once a minute is not judged on ten calls. With a week of history the reference day is
    the same day last week, and e(m) is the pooled rate of the days *like* it (within a factor of 2:
    the weekdays on a Tuesday, the weekend days on a Sunday), at least the `floor_rank`-th (2nd) lowest
    day; before a week, the median day. A busy Saturday is thus compared with Saturdays, a Tuesday with
    five weekdays rather than one. The rate is raised by one standard error of its pooled count (a thin
    history errs towards fewer Insights) and is at least `min_baseline_rate` (0.005/min, about 50 a
    week): the rate an error code never seen is taken to have.
    No Insight is started before the trail has `min_history_days` (default 1) of history in that
    account and region: a new trail replayed from past logs or a fast-forward simulation is ready as
    soon as that much event time has gone through it.

Start rule (one false-alarm budget at every rate)
    At the close of minute m (one with more calls than expected), for each window length w in `windows`
    (1, 2, 3, 5, 8, 12, 20, 30 minutes), W is the calls of the last w minutes and E their expected calls.
    A window shorter than `min_active_minutes` (3) counts only once E >= `min_expected` (2): a busy API
    is judged on one minute, a quiet one on several. An Insight starts when some counted window has
    calls in at least min(w, 3) of its minutes (one retried call that fails three times is no storm) and
        W >= max(start_ratio * E,  D * poisson_upper(E / D, start_alpha))
    with start_ratio 3, start_alpha 1e-7 (the same tail probability whatever the rate) and D the unit's
    dispersion: the variance-to-mean ratio of its minute counts against e(m), learned from the slots in
    which it expected at least 2 calls (decayed over a week; between 1 and `max_dispersion` 10). Calls
    arrive in clusters (retries, scripts), so a pure Poisson tail would alarm on normal traffic; the
    quasi-Poisson tail counts in units of D calls. There is no absolute rate floor.
    What the windows can see (D = 1; the minutes a burst of the given size needs before the window it
    fills crosses the threshold on average: a 3x burst only passes the ratio once the baseline is
    exact; `kafkatrail insights evaluate` measures the real figures):
        normal rate   4x        5x        10x       20x
        300/min       1 min     1 min     1 min     1 min
        15/min        1 min     1 min     1 min     1 min
        5/min         2 min     1 min     1 min     1 min
        2/min         3 min     2 min     1 min     1 min
        1/min         7 min     5 min     2 min     2 min
        0.5/min       12 min    8 min     3 min     3 min
        0.3/min       20 min    15 min    5 min     3 min
        never seen    4 calls within 5 minutes, 5 within 20, 6 within 30 (in at least 3 different minutes)
    The Start time is the first minute, above its expected calls, of the trailing run of the window with
    the largest Poisson likelihood ratio against the expected calls (where the unusual activity began).
End rule
    While an Insight is open, each minute looks back L = max(`end_minutes` (3), the minutes in which the
    Insight's own mean rate gives `end_calls` (10) calls) minutes, at most the longest window; when those
    L minutes hold at most `end_ratio` (2) times their expected calls, the Insight ends at the first of
    them. At 60 calls/min that is 3 minutes, at 1 error/min 10: a low-rate Insight is neither ended by
    one empty minute nor kept open by one call. An Insight open for `max_insight_minutes` (1440) ends
    then; a level that stays changed starts a new one, at most once a day, until the history has it.
    A partition that receives no event for `idle_end_s` (900 s) of wall-clock time, measured from the
    Kafka timestamp of its last event (`end_idle`, called by the worker), closes its minutes up to the
    latest event time and ends each open Insight at the first minute of its trailing run of minutes
    without calls. Later events still count in the history; for the closed minutes they are late.
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
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from kafkatrail.core.settings import InsightsSettings, SettingsError
from kafkatrail.schemas.contract import event_minute as minute_of

CALL_RATE = "ApiCallRateInsight"
ERROR_RATE = "ApiErrorRateInsight"
INSIGHT_TYPES = (CALL_RATE, ERROR_RATE)
MINUTES_PER_DAY = 1440
NULL_VALUE = "null"
EVENT_VERSION = "1.11"
DISPERSION_MIN_CALLS = 2
DISPERSION_PRIOR = 6.0
_ID_NAMESPACE = uuid.UUID("6b1f3c52-8d0e-4f7a-9c21-5e4b7a9d0c13")


@dataclass(frozen=True, kw_only=True)
class InsightsConfig:
    """The detector's parameters; see the module docstring for the rule they tune."""

    baseline_days: int = 7
    min_history_days: int = 1
    slot_minutes: int = 10
    neighbour_slots: int = 1
    max_pool_slots: int = 6
    pool_calls: int = 60
    floor_rank: int = 2
    min_baseline_rate: float = 0.005
    windows: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 20, 30)
    min_expected: float = 2.0
    min_active_minutes: int = 3
    start_ratio: float = 3.0
    start_alpha: float = 1e-7
    end_ratio: float = 2.0
    end_minutes: int = 3
    end_calls: float = 10.0
    max_insight_minutes: int = 1440
    max_dispersion: float = 10.0
    allowed_lateness_s: int = 120
    idle_end_s: int = 900
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
        if not self.windows or min(self.windows) < 1 or list(self.windows) != sorted(set(self.windows)):
            raise ValueError("windows must be increasing minute counts, the first at least 1")
        if self.end_minutes < 1 or self.end_minutes > self.windows[-1]:
            raise ValueError("end_minutes must be between 1 and the longest window")
        if not 1 <= self.neighbour_slots <= self.max_pool_slots:
            raise ValueError("neighbour_slots must be between 1 and max_pool_slots")

    @classmethod
    def from_settings(cls, settings: InsightsSettings) -> InsightsConfig:
        """The rule's parameters from the `[insights]` settings; SettingsError when they contradict each other."""
        values = settings.model_dump(include={f.name for f in fields(cls)})
        if "windows" in values:
            values["windows"] = tuple(values["windows"])
        try:
            return cls(**values)
        except ValueError as exc:
            raise SettingsError(f"insights: {exc}") from None


class Unit(NamedTuple):
    """What one Insight is about (a tuple: hashed and compared in C, once per event and unit)."""

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


@dataclass
class UnitState:
    """Per unit: history slots, daily attributions, open minutes, the last closed minutes, an open Insight.

    `squares` and `slot_calls` sum c^2 and c over the
    closed minutes of slot `square_slot`; `dispersion_sum / dispersion_weight` is the decayed mean of the
    finished slots' dispersion index (see `InsightsDetector.dispersion`).
    """

    slots: dict[int, int] = field(default_factory=dict)
    days: dict[int, Attributes] = field(default_factory=dict)
    pending: dict[int, tuple[int, Attributes]] = field(default_factory=dict)
    recent: dict[int, tuple[int, Attributes]] = field(default_factory=dict)
    expected: dict[tuple[int, int], float] = field(default_factory=dict)
    open: OpenInsight | None = None
    square_slot: int = -1
    squares: int = 0
    slot_calls: int = 0
    dispersion_sum: float = 0.0
    dispersion_weight: float = 0.0


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


def event_attributes(event: Mapping[str, Any], insight_type: str) -> tuple[tuple[str, str], ...]:
    """The (attribute, value) pairs one CloudTrail event is attributed by."""
    identity = event.get("userIdentity") or {}
    arn = identity.get("arn") or identity.get("invokedBy") or identity.get("type") or NULL_VALUE
    user_agent = event.get("userAgent") or NULL_VALUE
    if insight_type == CALL_RATE:
        return ("userIdentityArn", arn), ("userAgent", user_agent), ("errorCode", event.get("errorCode") or NULL_VALUE)
    return ("userIdentityArn", arn), ("userAgent", user_agent)


def _count_one(into: Attributes, values: tuple[tuple[str, str], ...], limit: int) -> None:
    """Add one event's attribute values: `_merge` of a single event, without building a Counter for it (a value
    not yet counted where `limit` values already are is left out, as `_merge` would cut it)."""
    for attribute, value in values:
        counts = into.get(attribute)
        if counts is None:
            into[attribute] = Counter({value: 1})
        elif value in counts:
            counts[value] += 1
        elif len(counts) < limit:
            counts[value] = 1


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
        self.last_received_s = -1.0  # Kafka timestamp of the latest event, for the idle end
        self._idle_seen = -1.0
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
        if received_s is not None:
            self.last_received_s = max(self.last_received_s, received_s)
        limit = self.config.attribution_values
        for unit in event_units(trail_arn, event, types):
            values = event_attributes(event, unit.insight_type)
            for attributes in self._count(unit, minute, 1):
                _count_one(attributes, values, limit)
        scope = (trail_arn, str(event.get("recipientAccountId", "")), str(event.get("awsRegion", "")))
        self._see_scope(scope, minute)

    def observe(self, unit: Unit, minute: int, count: int, attributes: Attributes) -> None:
        """Add `count` calls of `unit` in `minute` (aggregated input, as the evaluator feeds it)."""
        for into in self._count(unit, minute, count):
            _merge(into, attributes, self.config.attribution_values)

    def _count(self, unit: Unit, minute: int, count: int) -> tuple[Attributes, ...]:
        """Count `count` calls of `unit` in `minute`; the attribution maps their values belong in: the day's, and
        the minute's unless the minute is closed (the calls are then late)."""
        self._see_scope(unit.scope, minute)
        state = self.units.get(unit)
        if state is None:
            state = self.units[unit] = UnitState()
        self.dirty.add(unit)
        slot = minute // self.config.slot_minutes
        state.slots[slot] = state.slots.get(slot, 0) + count
        day = state.days.get(minute // MINUTES_PER_DAY)
        if day is None:
            day = state.days[minute // MINUTES_PER_DAY] = {}
        if minute < self.closed_until:
            self.late += count
            return (day,)
        pending_count, pending_attributes = state.pending.get(minute, (0, {}))
        state.pending[minute] = (pending_count + count, pending_attributes)
        return day, pending_attributes

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

    def idle_due(self, now_s: float) -> bool:
        """True when no event has arrived for `idle_end_s` before `now_s` and an Insight is still open."""
        if not 0 <= self.last_received_s <= now_s - self.config.idle_end_s or self._idle_seen == self.last_received_s:
            return False
        if any(state.open is not None for state in self.units.values()):
            return True
        self._idle_seen = self.last_received_s  # nothing opens without an event: no need to look again
        return False

    def end_idle(self) -> list[tuple[bytes, dict[str, Any]]]:
        """End every open Insight of a partition that has received nothing for `idle_end_s` of wall-clock time.

        Every minute up to the latest event time is closed (nothing more is coming for them), and an
        Insight still open then ends at the first minute of its trailing run of minutes without calls
        (or at the watermark). Later events still count; they are late for the closed minutes.
        """
        records = self.close_until(self.max_event_s // 60 + 1) if self.max_event_s >= 0 else []
        for unit, state in self.units.items():
            if state.open is None:
                continue
            end = self.closed_until
            while end - 1 > state.open.start and state.recent.get(end - 1, (0, {}))[0] == 0:
                end -= 1
            records.append(self._end(unit, state, end))
        return records

    def close_until(self, end_minute: int) -> list[tuple[bytes, dict[str, Any]]]:
        """Close every minute before `end_minute`, in order, per unit.

        A unit with an open Insight is evaluated at every minute (silence ends an Insight); any other
        unit only at minutes in which it had calls (a minute without calls cannot start one).
        """
        if end_minute <= self.closed_until:
            return []
        start = self.closed_until
        self.closed_until = end_minute
        new_slot = start // self.config.slot_minutes != end_minute // self.config.slot_minutes
        records: list[tuple[bytes, dict[str, Any]]] = []
        for unit, state in self.units.items():
            due = sorted(m for m in state.pending if m < end_minute)
            if state.open is not None:
                due = list(range(max(start, state.open.start + 1), end_minute))
            if due:
                self.dirty.add(unit)
            for minute in due:
                records.extend(self._close_minute(unit, state, minute))
            if new_slot:
                self._prune(state, end_minute)
        return records

    def expected(self, unit: Unit, minute: int) -> float | None:
        """e(m): the expected calls of `unit` in `minute`, or None before `min_history_days` of history."""
        config = self.config
        days = self._history_days(unit, minute)
        if days < config.min_history_days:
            return None
        state = self.units.get(unit)
        slot = minute // config.slot_minutes
        cached = state.expected.get((slot, days)) if state else None
        if cached is None:
            first_slot = self.scope_first[unit.scope] // config.slot_minutes
            cached = self._profile(state.slots if state else {}, slot, days, first_slot)
            if state:
                state.expected[(slot, days)] = cached
        return cached

    def _profile(self, slots: Mapping[int, int], slot: int, days: int, first_slot: int) -> float:
        """The baseline rate at `slot` from `days` days of history (only slots from `first_slot` on count).

        Each day's rate is pooled over the slot and its neighbours, widened until the reference day holds
        `pool_calls` calls. With a week of history the rate is the pooled rate of the days *like* the same
        day last week (within a factor of 2 of it: the weekdays on a weekday, the weekend on a Sunday), at
        least the `floor_rank`-th lowest day; before, the median day. It is then raised by one standard
        error of its Poisson count, so a thin history errs towards fewer Insights.
        """
        config = self.config
        per_day = MINUTES_PER_DAY // config.slot_minutes
        reference = 7 if days >= 7 else 1
        for width in range(config.neighbour_slots, config.max_pool_slots + 1):
            around = range(slot - width, slot + width + 1)
            if sum(slots.get(s - reference * per_day, 0) for s in around) >= config.pool_calls:
                break
        counts, minutes = [], []
        for day in range(1, days + 1):
            known = [s - day * per_day for s in around if s - day * per_day >= first_slot]
            counts.append(sum(slots.get(s, 0) for s in known))
            minutes.append(max(1, len(known)) * config.slot_minutes)
        rates = [count / span for count, span in zip(counts, minutes, strict=True)]
        if days >= 7:
            like = [d for d in range(days) if rates[6] / 2 <= rates[d] <= rates[6] * 2] or [6]
            pooled = sum(counts[d] for d in like)
            rate = max(pooled / sum(minutes[d] for d in like), sorted(rates)[config.floor_rank - 1])
        else:
            middle = sorted(range(days), key=rates.__getitem__)[(days - 1) // 2]
            pooled, rate = counts[middle], rates[middle]
        rate *= 1 + 1 / math.sqrt(pooled + 1)
        return max(rate, config.min_baseline_rate)

    def _history_days(self, unit: Unit, minute: int) -> int:
        first = self.scope_first.get(unit.scope)
        if first is None:
            return 0
        return min(self.config.baseline_days, (minute - first) // MINUTES_PER_DAY)

    def _window(self, unit: Unit, state: UnitState, minute: int,
                length: int) -> list[tuple[int, int, Attributes, float]]:
        """(minute, calls, attributes, expected) of the `length` minutes ending with `minute`, leaving out
        minutes before the unit's history was long enough to have an expected rate."""
        window: list[tuple[int, int, Attributes, float]] = []
        memo: dict[int, float | None] = {}
        for m in range(minute - length + 1, minute + 1):
            key = m // self.config.slot_minutes
            expected = memo[key] if key in memo else memo.setdefault(key, self.expected(unit, m))
            if expected is not None:
                window.append((m, *state.recent.get(m, (0, {})), expected))
        return window

    def start_threshold(self, expected: float, dispersion: float = 1.0) -> float:
        """The calls a window with `expected` expected calls needs to start an Insight, when counts vary
        `dispersion` times as much as Poisson counts (quasi-Poisson: the tail is taken in units of
        `dispersion` calls)."""
        config = self.config
        return max(config.start_ratio * expected, dispersion * poisson_upper(expected / dispersion, config.start_alpha))

    def dispersion(self, state: UnitState) -> float:
        """How much more a unit's per-minute counts vary than Poisson counts: the variance-to-mean ratio of
        its minutes against their expected calls, over the slots whose expected calls were at least
        `DISPERSION_MIN_CALLS` (decayed over about a week; 1 before any, at most `max_dispersion`)."""
        index = (state.dispersion_sum + DISPERSION_PRIOR) / (state.dispersion_weight + DISPERSION_PRIOR)
        return min(self.config.max_dispersion, max(1.0, index))

    def _track_dispersion(self, unit: Unit, state: UnitState, minute: int, count: int) -> None:
        slot_minutes = self.config.slot_minutes
        slot = minute // slot_minutes
        if slot != state.square_slot:
            expected = self.expected(unit, state.square_slot * slot_minutes) if state.square_slot >= 0 else None
            if expected is not None and expected * slot_minutes >= DISPERSION_MIN_CALLS:
                spread = state.squares - 2 * expected * state.slot_calls + slot_minutes * expected ** 2
                keep = 1 - slot_minutes / (self.config.baseline_days * MINUTES_PER_DAY)
                state.dispersion_sum = state.dispersion_sum * keep + spread / (slot_minutes * expected)
                state.dispersion_weight = state.dispersion_weight * keep + 1
            state.square_slot, state.squares, state.slot_calls = slot, 0, 0
        state.squares += count * count
        state.slot_calls += count

    def _close_minute(self, unit: Unit, state: UnitState, minute: int) -> list[tuple[bytes, dict[str, Any]]]:
        config = self.config
        count, attributes = state.pending.pop(minute, (0, {}))
        state.recent[minute] = (count, attributes)
        for old in [m for m in state.recent if m <= minute - config.windows[-1]]:
            del state.recent[old]
        expected = self.expected(unit, minute)
        if expected is None:
            return []
        self._track_dispersion(unit, state, minute, count)
        if state.open is not None:
            return self._continue(unit, state, minute)
        if count <= expected:
            return []
        window = self._window(unit, state, minute, config.windows[-1])
        dispersion = self.dispersion(state)
        calls, window_expected, active, lengths = 0, 0.0, 0, set(config.windows)
        for back, (_, count, _, rate) in enumerate(reversed(window), start=1):
            calls, window_expected, active = calls + count, window_expected + rate, active + (count > 0)
            if back not in lengths or (window_expected < config.min_expected and back < config.min_active_minutes):
                continue
            if active >= min(back, config.min_active_minutes) and calls >= self.start_threshold(
                    window_expected, dispersion):
                part = window[-back:]
                return [self._start(unit, state, part[self._onset(part):], minute)]
        return []

    @staticmethod
    def _onset(window: list[tuple[int, int, Attributes, float]]) -> int:
        """The index in `window` where the unusual activity most likely began: the first minute above its
        expected calls of the trailing run with the largest Poisson likelihood ratio against the expected."""
        best, best_score, calls, expected = len(window) - 1, -1.0, 0, 0.0
        for index in range(len(window) - 1, -1, -1):
            _, count, _, rate = window[index]
            calls, expected = calls + count, expected + rate
            if count > rate and expected > 0:
                score = calls * math.log(calls / expected) - (calls - expected)
                if score > best_score:
                    best, best_score = index, score
        return best

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

    def end_length(self, insight_rate: float) -> int:
        """Minutes the end rule looks back over: `end_minutes`, longer when the Insight's own rate is so low
        that fewer than `end_calls` calls would fall in them (at most the longest window)."""
        config = self.config
        needed = math.ceil(config.end_calls / insight_rate) if insight_rate > 0 else config.windows[-1]
        return min(config.windows[-1], max(config.end_minutes, needed))

    def _continue(self, unit: Unit, state: UnitState, minute: int) -> list[tuple[bytes, dict[str, Any]]]:
        config = self.config
        opened = state.open
        assert opened is not None
        count, attributes = state.recent[minute]
        opened.calls += count
        _merge(opened.attributes, attributes, config.attribution_values)
        elapsed = minute + 1 - opened.start
        if elapsed >= config.max_insight_minutes:
            return [self._end(unit, state, minute + 1)]
        length = self.end_length(opened.calls / elapsed)
        if elapsed < length + 1:
            return []
        window = self._window(unit, state, minute, length)
        if sum(item[1] for item in window) > config.end_ratio * sum(item[3] for item in window):
            return []
        return [self._end(unit, state, minute + 1 - length)]

    def _end(self, unit: Unit, state: UnitState, end: int) -> tuple[bytes, dict[str, Any]]:
        """The End record of `unit`'s open Insight, which stopped at minute `end`."""
        opened = state.open
        assert opened is not None
        after = sum(count for m, (count, _) in state.recent.items() if m >= end)
        duration = max(1, end - opened.start)
        state.open = None
        state.recent.clear()
        self.dirty.add(unit)
        return unit.output_key, self._record(unit, opened, "End", end, (opened.calls - after) / duration, duration,
                                             None)

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
        """Drop history older than `baseline_days` + 1 days and cached rates no window uses any more (entries
        are dropped from the oldest inserted on: history is written in time order, late events aside)."""
        keep_days = self.config.baseline_days + 1
        _drop_before(state.slots, (end_minute - keep_days * MINUTES_PER_DAY) // self.config.slot_minutes)
        _drop_before(state.days, end_minute // MINUTES_PER_DAY - keep_days)
        oldest_used = (end_minute - self.config.windows[-1]) // self.config.slot_minutes - 1
        while state.expected and next(iter(state.expected))[0] < oldest_used:
            del state.expected[next(iter(state.expected))]


def _drop_before(items: dict[int, Any], oldest: int) -> None:
    while items and next(iter(items)) < oldest:
        del items[next(iter(items))]
