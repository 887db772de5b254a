"""The Insights detector on constructed per-minute series: baseline, start/end rule, records."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest

from kafkatrail.core.settings import SettingsError, load_settings
from kafkatrail.processors.insights import (
    CALL_RATE,
    ERROR_RATE,
    MINUTES_PER_DAY,
    InsightsConfig,
    InsightsDetector,
    Unit,
    event_units,
    poisson_upper,
)
from kafkatrail.processors.insights_evaluation import band_of, evaluate
from kafkatrail.processors.insights_state import changed_records, restore
from kafkatrail.processors.insights_worker import insight_types
from kafkatrail.producers.simulator import poisson
from kafkatrail.trails.model import Trail

DAY = MINUTES_PER_DAY
TRAIL = "arn:aws:cloudtrail:eu-west-1:111122223333:trail/main"
UNIT = Unit(TRAIL, "111122223333", "eu-west-1", "ec2.amazonaws.com", "RunInstances", CALL_RATE)
OTHER = Unit(TRAIL, "111122223333", "eu-west-1", "iam.amazonaws.com", "CreateRole", CALL_RATE)


def diurnal(peak: float) -> Callable[[int], float]:
    """Night at 15 % of `peak`, a sine-shaped working day from 06:00 to 18:00 UTC."""
    def rate(minute: int) -> float:
        hour = (minute % DAY) / 60
        return peak * (0.15 + 0.85 * max(0.0, math.sin(math.pi * (hour - 6) / 12)))
    return rate


def weekly(rate: Callable[[int], float], weekend: float) -> Callable[[int], float]:
    """`rate` on weekdays, times `weekend` on days 5 and 6 of each week."""
    return lambda minute: rate(minute) * (weekend if (minute // DAY) % 7 in (5, 6) else 1.0)


def burst(rate: Callable[[int], float], start: int, length: int, size: float) -> Callable[[int], float]:
    return lambda minute: rate(minute) * (size if start <= minute < start + length else 1.0)


def run(series: dict[Unit, Callable[[int], float]], minutes: int, *, noise: bool = True,
        config: InsightsConfig | None = None) -> list[dict]:
    """Feed `minutes` of each unit's rate (Poisson counts, or rounded rates) and return the records."""
    rng = random.Random(7)
    detector = InsightsDetector(config)
    records = []
    for minute in range(minutes):
        for unit, rate in series.items():
            count = poisson(rng, rate(minute), normal_above=60) if noise else round(rate(minute))
            if count:
                detector.observe(unit, minute, count, {"userIdentityArn": Counter({"arn:aws:iam::1:user/a": count}),
                                                       "userAgent": Counter({"cli": count}),
                                                       "errorCode": Counter({"null": count})})
        records.extend(record for _, record in detector.close_until(minute + 1))
    return records


def starts(records: list[dict]) -> list[dict]:
    return [r for r in records if r["insightDetails"]["state"] == "Start"]


def minute_of(record: dict) -> int:
    hours, minutes = record["eventTime"][11:16].split(":")
    return (int(record["eventTime"][8:10]) - 1) * DAY + int(hours) * 60 + int(minutes)


@pytest.mark.parametrize("name, rate, days", [
    ("steady", lambda m: 20.0, 9),
    ("steady low rate", lambda m: 0.3, 9),
    ("diurnal", diurnal(40.0), 9),
    ("weekly quiet weekends", weekly(diurnal(40.0), 0.3), 15),
    ("slow ramp to twice the rate over a week", lambda m: 20.0 * (1 + max(0, m - 7 * DAY) / (7 * DAY)), 14),
])
def test_no_insight_on_normal_traffic(name: str, rate: Callable[[int], float], days: int) -> None:
    assert run({UNIT: rate}, days * DAY) == [], name


def test_busy_weekend_is_normal_once_a_week_of_history_has_it() -> None:
    """The first busy weekend is unusual (nothing like it in the history); the second one is not."""
    records = run({UNIT: weekly(diurnal(40.0), 3.0)}, 14 * DAY)
    assert records and all(minute_of(r) <= 7 * DAY for r in records)


@pytest.mark.parametrize("name, base, size, length", [
    ("5x for 5 minutes, steady", lambda m: 20.0, 5, 5),
    ("5x for 30 minutes at the morning rise", diurnal(40.0), 5, 30),
    ("10x for 5 minutes at night", diurnal(40.0), 10, 5),
])
def test_burst_starts_within_two_minutes_and_ends(name: str, base: Callable[[int], float], size: float,
                                                  length: int) -> None:
    begin = 8 * DAY + (7 * 60 if "morning" in name else 2 * 60 if "night" in name else 12 * 60)
    records = run({UNIT: burst(base, begin, length, size)}, begin + length + 30)
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"], name
    start, end = records
    assert minute_of(start) == begin
    assert start["insightDetails"]["insightContext"]["statistics"]["insightDuration"] <= 2
    assert abs(minute_of(end) - (begin + length)) <= 1
    assert start["sharedEventID"] == end["sharedEventID"] and start["eventID"] != end["eventID"]


def test_fast_ramp_is_an_insight_and_slow_is_not() -> None:
    begin = 8 * DAY + 600
    fast = lambda m: 20.0 * (1 + 9 * min(1.0, max(0, m - begin) / 10))  # noqa: E731
    assert starts(run({UNIT: fast}, begin + 60)) != []


def test_zero_traffic_api_and_brand_new_api() -> None:
    begin = 8 * DAY + 600
    single_new = lambda m: 1.0 if m in (begin, begin + 40) else 0.0  # noqa: E731
    sustained_new = lambda m: 1.0 if m >= begin else 0.0  # noqa: E731
    loud_new = lambda m: 40.0 if begin <= m < begin + 10 else 0.0  # noqa: E731
    records = run({UNIT: lambda m: 20.0, OTHER: single_new}, begin + 120, noise=False)
    assert records == [], "single calls of a new API are no Insight"
    records = run({UNIT: lambda m: 20.0, OTHER: sustained_new}, begin + 30, noise=False)
    assert [r["insightDetails"]["state"] for r in records] == ["Start"], "a new API called every minute is one"
    assert minute_of(records[0]) == begin
    records = run({UNIT: lambda m: 20.0, OTHER: loud_new}, begin + 30)
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"]
    assert records[0]["insightDetails"]["eventName"] == "CreateRole"
    assert records[0]["insightDetails"]["insightContext"]["statistics"]["baseline"]["average"] == 0


def test_no_insight_before_min_history() -> None:
    records = run({UNIT: burst(lambda m: 20.0, 600, 30, 10)}, DAY)
    assert records == []
    config = InsightsConfig(min_history_days=1)
    records = run({UNIT: burst(lambda m: 20.0, DAY + 600, 30, 10)}, DAY + 700, config=config)
    assert starts(records)[0]["insightDetails"]["insightContext"]["statistics"]["baselineDuration"] == DAY


def test_statistics_and_attributions_of_a_constructed_burst() -> None:
    begin = 8 * DAY + 600
    records = run({UNIT: burst(lambda m: 10.0, begin, 10, 6)}, begin + 30, noise=False)
    start, end = records
    stats = start["insightDetails"]["insightContext"]["statistics"]
    assert stats == {"baseline": {"average": 10.0}, "insight": {"average": 60.0}, "insightDuration": 1,
                     "baselineDuration": 7 * DAY}
    end_stats = end["insightDetails"]["insightContext"]["statistics"]
    assert end_stats == {"baseline": {"average": 10.0}, "insight": {"average": 60.0}, "insightDuration": 10,
                         "baselineDuration": 7 * DAY}
    attributions = start["insightDetails"]["insightContext"]["attributions"]
    assert [a["attribute"] for a in attributions] == ["userIdentityArn", "userAgent", "errorCode"]
    assert attributions[0]["insight"] == [{"value": "arn:aws:iam::1:user/a", "average": 60.0}]
    assert attributions[0]["baseline"] == [{"value": "arn:aws:iam::1:user/a", "average": 10.0}]
    assert attributions[2]["insight"] == [{"value": "null", "average": 60.0}]
    assert "attributions" not in end["insightDetails"]["insightContext"]
    assert start["eventType"] == "AwsCloudTrailInsight" and start["eventCategory"] == "Insight"
    assert set(start) == {"eventVersion", "eventTime", "awsRegion", "eventID", "eventType", "recipientAccountId",
                          "sharedEventID", "insightDetails", "eventCategory"}
    assert run({UNIT: burst(lambda m: 10.0, begin, 10, 6)}, begin + 30, noise=False) == records, "deterministic"


def event(minute_s: int, *, read_only: bool = False, error: str | None = None, name: str = "RunInstances") -> dict:
    record = {"eventTime": f"1970-01-{minute_s // 86400 + 1:02d}T{minute_s % 86400 // 3600:02d}:"
                           f"{minute_s % 3600 // 60:02d}:{minute_s % 60:02d}Z",
              "eventSource": "ec2.amazonaws.com", "eventName": name, "awsRegion": "eu-west-1",
              "recipientAccountId": "111122223333", "readOnly": read_only, "managementEvent": True,
              "eventCategory": "Management", "userAgent": "cli",
              "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"}}
    if error:
        record["errorCode"] = error
    return record


def test_event_units_follow_the_insight_types() -> None:
    both = (CALL_RATE, ERROR_RATE)
    assert event_units(TRAIL, event(0), both) == [UNIT]
    assert event_units(TRAIL, event(0, read_only=True), both) == []
    read_error = event_units(TRAIL, event(0, read_only=True, error="AccessDenied"), both)
    assert read_error == [Unit(*UNIT.scope, "ec2.amazonaws.com", "RunInstances", ERROR_RATE, "AccessDenied")]
    assert event_units(TRAIL, event(0, error="AccessDenied"), (CALL_RATE,)) == [UNIT]
    assert event_units(TRAIL, {**event(0), "eventCategory": "Data"}, both) == []


def test_error_storm_through_events_with_lateness() -> None:
    """Errors at 1/min for 8 days, then 20/min for 10 minutes; events arrive up to 60 s out of order."""
    detector = InsightsDetector(InsightsConfig(allowed_lateness_s=120))
    records = []
    begin = 8 * DAY + 600
    for minute in range(begin + 30):
        events = [event(minute * 60 + 30, read_only=True, error="AccessDenied")]
        if begin <= minute < begin + 10:
            events += [event(minute * 60 + s, read_only=True, error="AccessDenied") for s in range(0, 60, 3)]
        for item in reversed(events):  # out of order within the minute
            detector.add_event(TRAIL, item, (ERROR_RATE,))
        records.extend(r for _, r in detector.advance())
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"]
    details = records[0]["insightDetails"]
    assert details["insightType"] == ERROR_RATE and details["errorCode"] == "AccessDenied"
    assert minute_of(records[0]) == begin
    assert [a["attribute"] for a in details["insightContext"]["attributions"]] == ["userIdentityArn", "userAgent"]
    late_before = detector.late
    detector.add_event(TRAIL, event(60, read_only=True, error="AccessDenied"), (ERROR_RATE,))
    assert detector.late == late_before + 1


@pytest.mark.parametrize("name, expected, dispersion, needed", [
    ("never seen, 30 minutes at the floor rate", 0.15, 1.0, 6),
    ("0.5/min over 8 minutes", 4.0, 1.0, 19),
    ("... counts twice as variable", 4.0, 2.0, 28),
    ("15/min over 1 minute: the Poisson tail", 15.0, 1.0, 45),
    ("300/min over 1 minute: the ratio", 300.0, 1.0, 900),
])
def test_start_threshold(name: str, expected: float, dispersion: float, needed: float) -> None:
    assert InsightsDetector().start_threshold(expected, dispersion) == pytest.approx(needed, abs=1), name


@pytest.mark.parametrize("insight_rate, length", [(60.0, 3), (2.5, 4), (1.0, 10), (0.1, 30), (0.0, 30)])
def test_end_rule_looks_back_longer_at_low_rates(insight_rate: float, length: int) -> None:
    assert InsightsDetector().end_length(insight_rate) == length


def low_rate_run(rate: float, extra: Callable[[int], float], minutes: int, unit: Unit = UNIT) -> list[dict]:
    """`unit` at `rate`/min (Poisson) with `extra(m)` more calls in minute m; another API of the same account and
    region is called 5 times a minute, so the account has history even when `unit` has none."""
    detector, records = InsightsDetector(), []
    for minute in range(minutes):
        count = poisson(random.Random(minute), rate) + round(extra(minute))
        if count:
            detector.observe(unit, minute, count, {})
        detector.observe(OTHER, minute, 5, {})
        records.extend(r for _, r in detector.close_until(minute + 1))
    return records


ERRORS = Unit(TRAIL, "111122223333", "eu-west-1", "ec2.amazonaws.com", "RunInstances", ERROR_RATE,
              "UnauthorizedOperation")


@pytest.mark.parametrize("name, unit, rate, extra, found", [
    ("5x burst for 10 minutes at 0.5/min", UNIT, 0.5, 2.0, True),
    ("a single error of a never-seen code", ERRORS, 0.0, "single", False),
    ("3 errors at once of a never-seen code (one retried call)", ERRORS, 0.0, "cluster", False),
    ("a storm of 1 error/min of a never-seen code", ERRORS, 0.0, 1.0, True),
])
def test_low_rates(name: str, unit: Unit, rate: float, extra: float | str, found: bool) -> None:
    begin = 8 * DAY + 600
    if extra == "single":
        added = lambda m: 1.0 if m == begin else 0.0  # noqa: E731
    elif extra == "cluster":
        added = lambda m: 3.0 if m == begin else 0.0  # noqa: E731
    else:
        added = lambda m: float(extra) if begin <= m < begin + 10 else 0.0  # noqa: E731
    records = starts(low_rate_run(rate, added, begin + 60, unit))
    assert bool(records) == found, name
    if found:
        assert len(records) == 1 and begin - 1 <= minute_of(records[0]) < begin + 10
        stats = records[0]["insightDetails"]["insightContext"]["statistics"]
        assert minute_of(records[0]) + stats["insightDuration"] - begin <= 10, "detected within 10 minutes"


def test_idle_partition_ends_its_open_insight() -> None:
    """Events stop mid-burst: nothing ends until `idle_end_s` after the last event's Kafka timestamp, then one
    End at the first minute without calls; the state round trip keeps the idle clock."""
    config = InsightsConfig(idle_end_s=300)
    detector = InsightsDetector(config)
    begin = DAY + 600
    for minute in range(begin + 6):
        for n in range(60 if minute >= begin else 6):
            detector.add_event(TRAIL, event(minute * 60 + n), (CALL_RATE,), received_s=minute * 60 + 61)
        detector.advance()
    assert detector.units[UNIT].open is not None
    last = (begin + 5) * 60 + 61
    restored = InsightsDetector(config)
    for key, value in changed_records(detector):
        restore(restored, key, value)
    assert restored.last_received_s == last
    assert not restored.idle_due(last + 299)
    assert restored.idle_due(last + 300)
    records = [r for _, r in restored.end_idle()]
    assert [r["insightDetails"]["state"] for r in records] == ["End"]
    assert minute_of(records[0]) == begin + 6
    assert records[0]["insightDetails"]["insightContext"]["statistics"]["insight"]["average"] == 60
    assert not restored.idle_due(last + 10_000), "nothing left open"


def test_poisson_upper() -> None:
    assert poisson_upper(0, 1e-6) == 1
    assert poisson_upper(4, 1e-3) == 12  # P(X >= 12 | 4) = 0.00091, P(X >= 11 | 4) = 0.0028
    assert poisson_upper(1000, 1e-6) > 1000 + 4 * math.sqrt(1000)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="slot_minutes"):
        InsightsConfig(slot_minutes=7)
    with pytest.raises(ValueError, match="hysteresis"):
        InsightsConfig(start_ratio=2, end_ratio=3)


def test_evaluation_scores_a_short_labelled_scenario() -> None:
    """A week of history, one quiet day and one day of injections: every band and type is in the table."""
    lines, _ = evaluate(seeds=[21], regions=1, quiet_days=1, days=1, bursts=6, storms=6)
    assert "Insights on the quiet days: 0" in lines, "\n".join(lines)
    assert any(line.startswith("PASS  recall") and "bursts" in line for line in lines), "\n".join(lines)
    rows = [line for line in lines if line[:1].isdigit() or line.startswith(">=")]
    assert sum(int(row[31:36]) for row in rows) == 12


def test_evaluation_fails_a_detector_that_cannot_start() -> None:
    lines, passed = evaluate(seeds=[3], baseline_days=1, quiet_days=0, days=1, bursts=8, storms=0,
                             config=InsightsConfig(start_ratio=1000.0))
    assert not passed and any(line.startswith("FAIL  recall 0.000 >= 0.95 for bursts in the target at")
                              for line in lines), \
        "\n".join(lines)


@pytest.mark.parametrize("rate, band", [(0.1, "0-0.3"), (0.3, "0.3-0.5"), (0.6, "0.5-2"), (14.9, "2-15"),
                                        (15, "15-60"), (300, ">=60")])
def test_rate_bands(rate: float, band: str) -> None:
    assert band_of(rate) == band


def test_settings_build_the_detector_config() -> None:
    settings = load_settings(insights={"baseline_days": 14, "start_ratio": 4.0})
    config = InsightsConfig.from_settings(settings.insights)
    assert (config.baseline_days, config.start_ratio, config.end_ratio) == (14, 4.0, 2.0)
    with pytest.raises(SettingsError, match="insights: slot_minutes must divide a day"):
        InsightsConfig.from_settings(load_settings(insights={"slot_minutes": 7}).insights)


def test_state_round_trip_mid_insight_neither_loses_nor_repeats_it() -> None:
    """A detector restored from its changelog records mid-burst ends the Insight once, like the original."""
    begin = 8 * DAY + 600
    rate = burst(lambda m: 10.0, begin, 10, 6)
    whole = run({UNIT: rate}, begin + 30, noise=False)
    first = InsightsDetector()
    records = []
    for minute in range(begin + 30):
        if minute == begin + 4:
            restored = InsightsDetector()
            for key, value in changed_records(first):
                restore(restored, key, value)
            first = restored
        count = round(rate(minute))
        first.observe(UNIT, minute, count, {"userIdentityArn": Counter({"arn:aws:iam::1:user/a": count}),
                                            "userAgent": Counter({"cli": count}),
                                            "errorCode": Counter({"null": count})})
        records.extend(r for _, r in first.close_until(minute + 1))
    assert [(r["eventID"], r["insightDetails"]["state"]) for r in records] == [
        (r["eventID"], r["insightDetails"]["state"]) for r in whole]
    assert records == whole


def test_insight_types_of_a_trail() -> None:
    def trail(*selectors: dict) -> Trail:
        return Trail(name="main", home_region="eu-west-1", account_id="111122223333", s3_bucket_name="audit-logs",
                     event_selectors=({"ReadWriteType": "All", "IncludeManagementEvents": True,
                                       "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]},),
                     insight_selectors=selectors)
    assert insight_types(trail()) == frozenset()
    assert insight_types(trail({"InsightType": CALL_RATE})) == {CALL_RATE}
    assert insight_types(trail({"InsightType": CALL_RATE, "EventCategories": ["Data"]},
                               {"InsightType": ERROR_RATE, "EventCategories": ["Management", "Data"]})) == {ERROR_RATE}


def test_an_event_from_the_future_does_not_close_everyone_else_s_minutes() -> None:
    detector = InsightsDetector()
    received = 8 * DAY * 60 + 600 * 60
    detector.add_event(TRAIL, event(received - 60), (CALL_RATE,), received_s=received)
    detector.add_event(TRAIL, event(received + 3 * DAY * 60), (CALL_RATE,), received_s=received)
    detector.advance()
    assert detector.closed_until == (received - 120) // 60
    detector.add_event(TRAIL, event(received), (CALL_RATE,), received_s=received + 1)
    assert detector.late == 0


def test_an_insight_ends_after_max_insight_minutes() -> None:
    """A unit that jumps from 2 to 20 calls/min for good: each Insight ends after `max_insight_minutes`."""
    config = InsightsConfig(max_insight_minutes=60)
    begin = 8 * DAY + 600
    records = run({UNIT: lambda m: 20.0 if m >= begin else 2.0}, begin + 150, noise=False, config=config)
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End", "Start", "End", "Start"]
    assert [minute_of(r) - begin for r in records] == [0, 60, 60, 120, 120]


@pytest.mark.parametrize("name, cluster, low, high", [
    ("calls one by one: Poisson", 1, 0.8, 1.3),
    ("calls in pairs: twice as variable", 2, 1.7, 2.4),
    ("calls in fives", 5, 4.0, 6.0),
])
def test_dispersion_is_learned_from_the_history(name: str, cluster: int, low: float, high: float) -> None:
    rng, detector = random.Random(3), InsightsDetector()
    for minute in range(3 * DAY):
        count = cluster * poisson(rng, 6.0 / cluster)
        if count:
            detector.observe(UNIT, minute, count, {})
        detector.close_until(minute + 1)
    assert low <= detector.dispersion(detector.units[UNIT]) <= high, name
