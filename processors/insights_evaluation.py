"""`kafkatrail insights evaluate`: the detector on labelled synthetic traffic, scored per rate band and type.

The traffic model is written apart from the detector's rule and shares none of its shapes:

- Each region holds APIs whose daytime level spans 0.3 to 300 calls per minute (two per rate band, levels
  drawn log-uniformly within the band); about two thirds are write APIs (call-rate Insights count only those).
- Daily rhythm: a night floor of 10-60 % of the level, a working day whose start (06-10 h) and end (16-21 h)
  differ per API, in the region's own time zone, with one-hour cosine ramps. Weekends at 20-100 % of a
  weekday, per API; the first simulated day is a different weekday for every seed.
- Noise beyond Poisson ("bursty but normal"): each day's level varies by a log-normal factor (8 %), each
  quarter hour by a gamma factor (15 %), and calls arrive in clusters of 1-3 (mean 1.25), so counts are
  over-dispersed against the Poisson law the detector's tail test assumes.
- Errors: every call fails with `AccessDenied` (0.4-1.2 %), `ValidationException` (0.1-0.3 %) and, on
  APIs at 5 calls/min or more, `ThrottlingException` (0-0.8 %): 1-2 % errors in all.
- Timeline: `baseline_days` (7) of history, then `quiet_days` (3) on which every Insight is a false one,
  then `days` with injections.
- Bursts: extra successful calls of a write API at (size - 1) times its normal rate (size 5, 7, 10, 15 or
  20), lasting 5, 10, 15, 20 or 30 minutes. Error storms: one error code (an existing one, or one never seen
  in the baseline) at r errors per minute, r log-uniform in 0.3-60, for 5-30 minutes; where r is at most
  60 % of the API's calls the volume is unchanged (existing calls fail), else failing calls are added.
  No injected rate depends on the detector; an injection's band is the API's normal rate at its start.

Scoring: a Start of the injected unit between 5 minutes before the injection and its end detects it; its
delay is from the injection's start to the end of the minute the Start was decided in (event time). A Start
of another unit of the same API during an injection (a storm that adds calls raises the call rate too) is
counted as related, neither true nor false; every other Start in the quiet and injection days is false.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from kafkatrail.processors.insights import (
    CALL_RATE,
    ERROR_RATE,
    MINUTES_PER_DAY,
    InsightsConfig,
    InsightsDetector,
    Unit,
)
from kafkatrail.producers.simulator import poisson
from kafkatrail.schemas.contract import event_minute

ACCOUNT = "111122223333"
TRAIL = f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/insights-evaluation"
EPOCH_MINUTE = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) // 60  # a Monday, 00:00 UTC
REGIONS = (("eu-west-1", 0), ("us-east-1", -5), ("ap-southeast-1", 8))
BANDS = ((0.0, 0.3), (0.3, 0.5), (0.5, 2.0), (2.0, 15.0), (15.0, 60.0), (60.0, math.inf))
LEVEL_BANDS = ((0.3, 0.5), (0.5, 2.0), (2.0, 15.0), (15.0, 60.0), (60.0, 300.0))
API_NAMES = (("ec2.amazonaws.com", "RunInstances"), ("ec2.amazonaws.com", "CreateTags"),
             ("iam.amazonaws.com", "CreateRole"), ("s3.amazonaws.com", "PutBucketPolicy"),
             ("lambda.amazonaws.com", "UpdateFunctionCode"), ("sts.amazonaws.com", "AssumeRole"),
             ("ec2.amazonaws.com", "DescribeInstances"), ("s3.amazonaws.com", "ListBuckets"),
             ("kms.amazonaws.com", "Decrypt"), ("ssm.amazonaws.com", "GetParameter"))
WRITE_NAMES = {"RunInstances", "CreateTags", "CreateRole", "PutBucketPolicy", "UpdateFunctionCode", "AssumeRole",
               "Decrypt"}
NEW_CODES = ("UnauthorizedOperation", "KMS.DisabledException", "InvalidClientTokenId")
BURST_SIZES = (5.0, 7.0, 10.0, 15.0, 20.0)
LENGTHS = (5, 10, 15, 20, 30)
CLUSTER = ((1, 0.8), (2, 0.15), (3, 0.05))
CLUSTER_MEAN = sum(size * p for size, p in CLUSTER)
FULL = {"seeds": 5, "regions": 3, "days": 2, "bursts": 30, "storms": 30}  # `evaluate --full`, the README's figures
DELAY_TARGETS = ((15.0, 2), (0.5, 10))  # (lowest normal rate in calls/min, median delay in minutes)


def band_of(rate: float) -> str:
    """The label of the rate band `rate` (calls per minute) falls in."""
    for low, high in BANDS:
        if low <= rate < high:
            return f"{low:g}-{high:g}" if high < math.inf else f">={low:g}"
    raise ValueError(rate)


@dataclass(frozen=True)
class Api:
    """One API in one region and its normal traffic."""

    region: str
    offset_h: int
    source: str
    name: str
    write: bool
    level: float
    night: float
    opens_h: float
    closes_h: float
    weekend: float
    errors: tuple[tuple[str, float], ...]

    def rate(self, minute: int) -> float:
        """The normal calls per minute at `minute` (without the day and quarter-hour noise)."""
        local = minute + self.offset_h * 60
        hour = (local % MINUTES_PER_DAY) / 60
        ramp = min(1.0, max(0.0, hour - self.opens_h + 0.5), max(0.0, self.closes_h + 0.5 - hour))
        day_shape = self.night + (1 - self.night) * (0.5 - 0.5 * math.cos(math.pi * ramp))
        weekday = (local // MINUTES_PER_DAY - EPOCH_MINUTE // MINUTES_PER_DAY) % 7
        return self.level * day_shape * (self.weekend if weekday >= 5 else 1.0)

    def unit(self, insight_type: str, error_code: str = "") -> Unit:
        """The detector's unit of this API for `insight_type`."""
        return Unit(TRAIL, ACCOUNT, self.region, self.source, self.name, insight_type, error_code)


@dataclass(frozen=True)
class Injection:
    """One labelled burst or error storm."""

    kind: str
    api: Api
    unit: Unit
    start: int
    length: int
    size: float
    normal_rate: float
    added_rate: float
    unchanged_volume: bool = False

    @property
    def band(self) -> str:
        return band_of(self.normal_rate)


@dataclass(frozen=True)
class Outcome:
    """What the detector made of one injection."""

    injection: Injection
    delay: int | None


def _apis(rng: random.Random, regions: int) -> list[Api]:
    apis = []
    for region, offset in REGIONS[:regions]:
        names = list(API_NAMES)
        rng.shuffle(names)
        for index, (source, name) in enumerate(names):
            low, high = LEVEL_BANDS[index % len(LEVEL_BANDS)]
            level = math.exp(rng.uniform(math.log(low), math.log(high)))
            errors = [("AccessDenied", rng.uniform(0.004, 0.012)), ("ValidationException", rng.uniform(0.001, 0.003))]
            if level >= 5:
                errors.append(("ThrottlingException", rng.uniform(0.0, 0.008)))
            apis.append(Api(region, offset, source, name, name in WRITE_NAMES, level, rng.uniform(0.1, 0.6),
                            rng.uniform(6, 10), rng.uniform(16, 21), rng.choice((0.2, 0.4, 0.7, 1.0)),
                            tuple(errors)))
    return apis


def _clustered(rng: random.Random, mean: float) -> int:
    """Calls in a minute when calls arrive in clusters of 1-3 whose expected total is `mean`."""
    clusters = poisson(rng, mean / CLUSTER_MEAN, normal_above=60)
    if clusters > 200:  # the cluster sizes average out
        return round(clusters * CLUSTER_MEAN)
    return sum(1 if (draw := rng.random()) < CLUSTER[0][1] else 2 if draw < 1 - CLUSTER[2][1] else 3
               for _ in range(clusters))


class Scenario:
    """Labelled traffic of one seed: the APIs, the timeline and the injected bursts and storms."""

    def __init__(self, *, seed: int, regions: int = 1, baseline_days: int = 7, quiet_days: int = 3, days: int = 1,
                 bursts: int = 10, storms: int = 10) -> None:
        if baseline_days < 1 or quiet_days < 0 or days < 1 or bursts < 0 or storms < 0:
            raise ValueError("baseline days and days must be at least 1, quiet days, bursts and storms not negative")
        if not 1 <= regions <= len(REGIONS):
            raise ValueError(f"regions must be between 1 and {len(REGIONS)}")
        rng = random.Random(seed)
        self.seed = seed
        self.first = EPOCH_MINUTE + rng.randrange(7) * MINUTES_PER_DAY
        self.quiet_from = self.first + baseline_days * MINUTES_PER_DAY
        self.inject_from = self.quiet_from + quiet_days * MINUTES_PER_DAY
        self.last = self.inject_from + days * MINUTES_PER_DAY
        self.apis = _apis(rng, regions)
        self.injections: list[Injection] = []
        busy: dict[Api, list[int]] = defaultdict(list)
        writers = [api for api in self.apis if api.write]
        for index in range(bursts + storms):
            burst = index < bursts
            for _ in range(100):
                api = rng.choice(writers if burst else self.apis)
                start = rng.randrange(self.inject_from, self.last - 60)
                if all(abs(start - other) > 120 for other in busy[api]):
                    break
            else:
                raise ValueError("too many injections for the injection days: add days or regions")
            busy[api].append(start)
            length, normal = rng.choice(LENGTHS), api.rate(start)
            if burst:
                size = rng.choice(BURST_SIZES)
                self.injections.append(Injection("burst", api, api.unit(CALL_RATE), start, length, size, normal,
                                                 (size - 1) * normal))
                continue
            errors = math.exp(rng.uniform(math.log(0.3), math.log(60)))
            code, share = (rng.choice(NEW_CODES), 0.0) if rng.random() < 0.3 else api.errors[0]
            size = math.inf if share == 0 else (share * normal + errors) / (share * normal)
            self.injections.append(Injection("error storm", api, api.unit(ERROR_RATE, code), start, length, size,
                                             normal, errors, unchanged_volume=errors <= 0.6 * normal))
        self.injections.sort(key=lambda item: item.start)

    def run(self, config: InsightsConfig) -> list[dict]:
        """The Insights records the detector raises on this traffic."""
        rng = random.Random(self.seed * 7919 + 1)
        detector = InsightsDetector(config)
        active: dict[Api, list[Injection]] = defaultdict(list)
        for item in self.injections:
            active[item.api].append(item)
        records: list[dict] = []
        day_factor: dict[tuple[Api, int], float] = {}
        quarter_factor: dict[Api, float] = {}
        for minute in range(self.first, self.last):
            for api in self.apis:
                if minute % 15 == 0 or api not in quarter_factor:
                    quarter_factor[api] = rng.gammavariate(44.0, 1 / 44.0)
                day = minute // MINUTES_PER_DAY
                if (api, day) not in day_factor:
                    day_factor[api, day] = math.exp(rng.gauss(0, 0.08))
                calls = _clustered(rng, api.rate(minute) * day_factor[api, day] * quarter_factor[api])
                errors: Counter[str] = Counter()
                for code, share in api.errors:
                    errors[code] = min(calls - sum(errors.values()), poisson(rng, calls * share, normal_above=60))
                for item in active.get(api, ()):
                    if not item.start <= minute < item.start + item.length:
                        continue
                    extra = _clustered(rng, item.added_rate)
                    if item.kind == "burst":
                        calls += extra
                    else:
                        errors[item.unit.error_code] += extra
                        if not item.unchanged_volume:
                            calls += extra
                errors = +errors
                failed = sum(errors.values())
                calls = max(calls, failed)
                if api.write and calls:  # attributions are not scored: none are passed
                    detector.observe(api.unit(CALL_RATE), minute, calls, {})
                for code, count in errors.items():
                    detector.observe(api.unit(ERROR_RATE, code), minute, count, {})
            records.extend(record for _, record in detector.close_until(minute + 1))
        return records


def _unit_of(record: dict) -> Unit:
    details = record["insightDetails"]
    return Unit(TRAIL, record["recipientAccountId"], record["awsRegion"], details["eventSource"],
                details["eventName"], details["insightType"], details.get("errorCode", ""))


@dataclass
class Score:
    """One seed's outcomes and the Starts that matched nothing, by insight type."""

    outcomes: list[Outcome]
    true_starts: Counter[str]
    false_starts: Counter[str]
    quiet_starts: int
    related_starts: int


def score(scenario: Scenario, records: list[dict]) -> Score:
    """Match the Start records against the injections."""
    starts = [r for r in records if r["insightDetails"]["state"] == "Start"
              and event_minute(r["eventTime"]) >= scenario.quiet_from]
    found: dict[int, int] = {}
    result = Score([], Counter(), Counter(), 0, 0)
    for record in starts:
        unit, minute = _unit_of(record), event_minute(record["eventTime"])
        decided = minute + record["insightDetails"]["insightContext"]["statistics"]["insightDuration"]
        kind = record["insightDetails"]["insightType"]
        match = next((i for i, item in enumerate(scenario.injections) if item.unit == unit
                      and item.start - 5 <= minute < item.start + item.length), None)
        if match is not None:
            result.true_starts[kind] += 1
            found.setdefault(match, decided - scenario.injections[match].start)
        elif any((item.api.region, item.api.source, item.api.name) == (unit.region, unit.event_source, unit.event_name)
                 and item.start - 5 <= minute < item.start + item.length + 5
                 for item in scenario.injections):
            result.related_starts += 1
        else:
            result.false_starts[kind] += 1
            result.quiet_starts += minute < scenario.inject_from
    result.outcomes = [Outcome(item, found.get(index)) for index, item in enumerate(scenario.injections)]
    return result


def _median(values: list[int]) -> str:
    return f"{statistics.median(values):g}" if values else "-"


def _in_target(outcome: Outcome) -> bool:
    """Whether the issue's recall target covers this injection (>= 10 min at a normal rate >= 0.5/min; bursts
    >= 5x, storms >= 10x and >= 1 error per minute)."""
    item = outcome.injection
    if item.length < 10 or item.normal_rate < 0.5:
        return False
    return item.size >= 5 if item.kind == "burst" else item.size >= 10 and item.added_rate >= 1


def report(scores: list[Score], seeds: list[int]) -> tuple[list[str], bool]:
    """The table per band and type, the targets and whether all of them hold."""
    outcomes = [o for s in scores for o in s.outcomes]
    lines = [f"{'band (calls/min)':<18}{'type':<13}{'n':>5}{'recall':>8}{'target n':>10}{'target recall':>15}"
             f"{'delay p50':>11}{'p90':>6}{'max':>6}"]
    band_names = [band_of(low) for low, _ in BANDS]
    for band in band_names:
        for kind in ("burst", "error storm"):
            group = [o for o in outcomes if o.injection.band == band and o.injection.kind == kind]
            if not group:
                continue
            target = [o for o in group if _in_target(o)]
            delays = sorted(o.delay for o in group if o.delay is not None)
            lines.append(
                f"{band:<18}{kind:<13}{len(group):>5}{sum(o.delay is not None for o in group) / len(group):>8.2f}"
                f"{len(target):>10}"
                f"{(f'{sum(o.delay is not None for o in target) / len(target):.2f}' if target else '-'):>15}"
                f"{_median(delays):>11}{(delays[int(0.9 * (len(delays) - 1))] if delays else '-'):>6}"
                f"{(delays[-1] if delays else '-'):>6}")
    lines.append("")
    storms = [o for o in outcomes if o.injection.kind == "error storm"]
    for label, chosen in (("storms below 1 error/min", [o for o in storms if o.injection.added_rate < 1]),
                          ("storms of a never-seen code", [o for o in storms if o.injection.size == math.inf]),
                          ("storms at unchanged volume", [o for o in storms if o.injection.unchanged_volume]),
                          ("bursts of 5 min", [o for o in outcomes if o.injection.kind == "burst"
                                               and o.injection.length == 5])):
        if chosen:
            lines.append(f"{label}: recall {sum(o.delay is not None for o in chosen) / len(chosen):.2f} "
                         f"({sum(o.delay is not None for o in chosen)}/{len(chosen)})")
    trues, falses = Counter[str](), Counter[str]()
    for s in scores:
        trues.update(s.true_starts)
        falses.update(s.false_starts)
    for kind in (CALL_RATE, ERROR_RATE):
        total = trues[kind] + falses[kind]
        lines.append(f"precision {kind}: {trues[kind] / total if total else 1.0:.3f} "
                     f"({trues[kind]} true, {falses[kind]} false Starts)")
    quiet = sum(s.quiet_starts for s in scores)
    lines.append(f"related Starts (another unit of an injected API): {sum(s.related_starts for s in scores)}")
    lines.append(f"Insights on the quiet days: {quiet}")
    target = [o for o in outcomes if _in_target(o)]
    checks = []
    for kind in ("burst", "error storm"):
        for band in band_names:
            chosen = [o for o in target if o.injection.kind == kind and o.injection.band == band]
            if chosen:
                found = sum(o.delay is not None for o in chosen)
                checks.append((f"recall {found / len(chosen):.3f} >= 0.95 for {kind}s in the target at {band} "
                               f"calls/min ({found}/{len(chosen)})", found / len(chosen) >= 0.95))
    checks.append((f"{quiet} Insights on the quiet days", quiet == 0))
    for low, limit in DELAY_TARGETS:
        delays = [o.delay for o in target if o.delay is not None and o.injection.normal_rate >= low]
        median = statistics.median(delays) if delays else 0
        checks.append((f"median delay {median:g} min <= {limit} min at >= {low:g} calls/min", median <= limit))
    lines += ["", f"seeds {', '.join(map(str, seeds))}"] + [f"{'PASS' if ok else 'FAIL'}  {text}"
                                                           for text, ok in checks]
    return lines, all(ok for _, ok in checks)


def evaluate(*, seeds: list[int], regions: int = 1, baseline_days: int = 7, quiet_days: int = 3, days: int = 1,
             bursts: int = 10, storms: int = 10, config: InsightsConfig | None = None) -> tuple[list[str], bool]:
    """Run one scenario per seed; the printed report and whether every target holds."""
    config = config or InsightsConfig()
    scores = []
    for seed in seeds:
        scenario = Scenario(seed=seed, regions=regions, baseline_days=baseline_days, quiet_days=quiet_days,
                            days=days, bursts=bursts, storms=storms)
        scores.append(score(scenario, scenario.run(config)))
    head = [f"scenario: {regions} region(s) x {len(API_NAMES)} APIs (levels 0.3-300 calls/min), {baseline_days} "
            f"days of history, {quiet_days} quiet days, {days} day(s) with {bursts} bursts and {storms} error storms "
            f"per seed", ""]
    lines, passed = report(scores, seeds)
    return head + lines, passed
