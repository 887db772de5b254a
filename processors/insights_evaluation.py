"""`kafkatrail insights evaluate`: the detector on labelled synthetic traffic, scored against its targets.

The scenario is per-minute counts, not events (the detector's `observe` input), so two weeks run in
seconds. Traffic: write APIs (call rate) and read APIs, a working-day sine from 06:00 to 18:00 UTC over
a 15 % night floor, weekends at 40 %, Poisson noise, 5 % of calls failing with `AccessDenied`.
The first `warmup_days` are history only; bursts (extra successful write calls at `size` times the
expected rate) and error storms (extra `AccessDenied` errors on read APIs) are injected in the evaluated
days at known start, length and size. The detector raises no Insight below `min_rate` by design, and
a Poisson rate a little above it clears the start rule's Poisson tail within 2 minutes only by chance;
so an injected rate (normal plus added) below `FLOOR_FACTOR` (3) times `min_rate` is raised to that
(15 calls or errors per minute by default), and the table shows the normal and the injected rate.
A second run of the same traffic without injections counts the Insights raised on normal traffic.
"""

from __future__ import annotations

import math
import random
from collections import Counter
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

TRAIL = "arn:aws:cloudtrail:eu-west-1:111122223333:trail/insights-evaluation"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
EPOCH_MINUTE = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) // 60  # a Monday, 00:00 UTC
ERROR_SHARE = 0.05
WRITE_APIS = (("ec2.amazonaws.com", "RunInstances", 40.0), ("ec2.amazonaws.com", "CreateTags", 80.0),
              ("iam.amazonaws.com", "CreateRole", 20.0), ("s3.amazonaws.com", "PutBucketPolicy", 20.0),
              ("lambda.amazonaws.com", "UpdateFunctionCode", 30.0), ("sts.amazonaws.com", "AssumeRole", 160.0))
READ_APIS = (("ec2.amazonaws.com", "DescribeInstances", 200.0), ("s3.amazonaws.com", "ListBuckets", 60.0),
             ("kms.amazonaws.com", "Decrypt", 120.0))
BURST_SIZES = (5.0, 6.0, 8.0, 10.0)
STORM_SIZES = (10.0, 15.0, 20.0)
LENGTHS = (5, 10, 20, 45)
TARGET_DELAY_MIN = 2
FLOOR_FACTOR = 3


@dataclass(frozen=True)
class Injection:
    """One labelled burst or error storm."""

    kind: str
    unit: Unit
    start: int
    length: int
    size: float
    baseline_rate: float
    added_rate: float


@dataclass(frozen=True)
class Outcome:
    injection: Injection
    delay: int | None
    duration: int | None


def _normal_rate(peak: float, minute: int) -> float:
    hour = (minute % MINUTES_PER_DAY) / 60
    day = (minute - EPOCH_MINUTE) // MINUTES_PER_DAY % 7
    shape = 0.15 + 0.85 * max(0.0, math.sin(math.pi * (hour - 6) / 12))
    return peak * shape * (0.4 if day in (5, 6) else 1.0)


class Scenario:
    """Labelled traffic: the APIs, their normal rates and the injected bursts and storms."""

    def __init__(self, *, warmup_days: int, days: int, bursts: int, storms: int, seed: int,
                 min_rate: float) -> None:
        self.warmup_days, self.days, self.seed = warmup_days, days, seed
        rng = random.Random(seed)
        first = EPOCH_MINUTE + warmup_days * MINUTES_PER_DAY
        slots = list(range(first + 60, first + days * MINUTES_PER_DAY - 120, 180))  # 3 h apart: no overlap
        if days < 1 or warmup_days < 1 or bursts < 0 or storms < 0:
            raise ValueError("days and warmup days must be at least 1, bursts and storms not negative")
        if bursts + storms > len(slots):
            raise ValueError(f"at most {len(slots)} bursts and storms fit in {days} days (3 hours apart)")
        rng.shuffle(slots)
        self.injections: list[Injection] = []
        for index in range(bursts + storms):
            start = slots[index] + rng.randrange(0, 60)
            length = rng.choice(LENGTHS)
            if index < bursts:
                source, name, peak = rng.choice(WRITE_APIS)
                unit = Unit(TRAIL, ACCOUNT, REGION, source, name, CALL_RATE)
                size, baseline = rng.choice(BURST_SIZES), _normal_rate(peak, start)
            else:
                source, name, peak = rng.choice(READ_APIS)
                unit = Unit(TRAIL, ACCOUNT, REGION, source, name, ERROR_RATE, "AccessDenied")
                size, baseline = rng.choice(STORM_SIZES), ERROR_SHARE * _normal_rate(peak, start)
            added = max(size * baseline, FLOOR_FACTOR * min_rate) - baseline
            self.injections.append(Injection("burst" if index < bursts else "error storm", unit, start, length,
                                             size, baseline, added))
        self.injections.sort(key=lambda item: item.start)

    @property
    def minutes(self) -> range:
        return range(EPOCH_MINUTE, EPOCH_MINUTE + (self.warmup_days + self.days) * MINUTES_PER_DAY)

    def run(self, config: InsightsConfig, *, inject: bool) -> list[dict]:
        """The Insights records the detector raises on this traffic."""
        rng = random.Random(self.seed + 1)
        detector = InsightsDetector(config)
        active = {(item.unit, m): item.added_rate for item in self.injections if inject
                  for m in range(item.start, item.start + item.length)}
        records: list[dict] = []
        for minute in self.minutes:
            for source, name, peak, write in [(*api, True) for api in WRITE_APIS] + [(*api, False) for api in
                                                                                     READ_APIS]:
                rate = _normal_rate(peak, minute)
                errors = poisson(rng, ERROR_SHARE * rate, normal_above=60)
                ok = poisson(rng, (1 - ERROR_SHARE) * rate, normal_above=60)
                error_unit = Unit(TRAIL, ACCOUNT, REGION, source, name, ERROR_RATE, "AccessDenied")
                errors += poisson(rng, active.get((error_unit, minute), 0.0), normal_above=60)
                if write:
                    call_unit = Unit(TRAIL, ACCOUNT, REGION, source, name, CALL_RATE)
                    ok += poisson(rng, active.get((call_unit, minute), 0.0), normal_above=60)
                    if ok + errors:
                        detector.observe(call_unit, minute, ok + errors, {
                            "userIdentityArn": Counter({f"arn:aws:iam::{ACCOUNT}:role/deployer": ok + errors}),
                            "userAgent": Counter({"aws-cli/2": ok + errors}),
                            "errorCode": Counter({"null": ok, "AccessDenied": errors})})
                if errors:
                    detector.observe(error_unit, minute, errors, {
                        "userIdentityArn": Counter({f"arn:aws:iam::{ACCOUNT}:role/app": errors}),
                        "userAgent": Counter({"boto3/1.34": errors})})
            records.extend(record for _, record in detector.close_until(minute + 1))
        return records


def _unit_of(record: dict) -> Unit:
    details = record["insightDetails"]
    return Unit(TRAIL, record["recipientAccountId"], record["awsRegion"], details["eventSource"],
                details["eventName"], details["insightType"], details.get("errorCode", ""))


def _minute(record: dict) -> int:
    return event_minute(record["eventTime"])


def score(scenario: Scenario, records: list[dict]) -> tuple[list[Outcome], int, int]:
    """Per injection its outcome; and how many Starts in the evaluated days matched one, out of how many."""
    starts = [r for r in records if r["insightDetails"]["state"] == "Start"]
    evaluated_from = EPOCH_MINUTE + scenario.warmup_days * MINUTES_PER_DAY
    outcomes, matched = [], set()
    for item in scenario.injections:
        found = None
        for index, record in enumerate(starts):
            minute = _minute(record)
            if _unit_of(record) == item.unit and item.start - 2 <= minute < item.start + item.length:
                found = index
                break
        if found is None:
            outcomes.append(Outcome(item, None, None))
            continue
        matched.add(found)
        record = starts[found]
        decided = _minute(record) + record["insightDetails"]["insightContext"]["statistics"]["insightDuration"]
        end = next((r for r in records if r["sharedEventID"] == record["sharedEventID"]
                    and r["insightDetails"]["state"] == "End"), None)
        duration = end["insightDetails"]["insightContext"]["statistics"]["insightDuration"] if end else None
        outcomes.append(Outcome(item, decided - item.start, duration))
    evaluated = [i for i, r in enumerate(starts) if _minute(r) >= evaluated_from]
    return outcomes, len(matched & set(evaluated)), len(evaluated)


def _clock(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%a %H:%M")


def evaluate(*, warmup_days: int = 7, days: int = 7, bursts: int = 12, storms: int = 6, seed: int = 1,
             config: InsightsConfig | None = None) -> tuple[list[str], bool]:
    """Run the labelled and the steady scenario; the printed report and whether every target holds."""
    config = config or InsightsConfig()
    scenario = Scenario(warmup_days=warmup_days, days=days, bursts=bursts, storms=storms, seed=seed,
                        min_rate=config.min_rate)
    outcomes, true_starts, all_starts = score(scenario, scenario.run(config, inject=True))
    steady = [r for r in scenario.run(config, inject=False) if r["insightDetails"]["state"] == "Start"
              and _minute(r) >= EPOCH_MINUTE + warmup_days * MINUTES_PER_DAY]
    lines = [f"scenario: {len(WRITE_APIS)} write + {len(READ_APIS)} read APIs, {warmup_days} days of history then "
             f"{days} evaluated days, diurnal + weekly rhythm, seed {seed}",
             f"rule: start_ratio {config.start_ratio}, start_window {config.start_window} min, start_alpha "
             f"{config.start_alpha}, min_rate {config.min_rate}/min, end_ratio {config.end_ratio}, end_minutes "
             f"{config.end_minutes}, baseline {config.baseline_days} days, slots {config.slot_minutes} min", "",
             f"{'kind':<12}{'API':<34}{'start':>10}{'len':>5}{'size':>6}{'base/min':>10}{'burst/min':>10}"
             f"{'detected':>10}{'delay':>7}{'insight':>9}"]
    for outcome in outcomes:
        item = outcome.injection
        api = f"{item.unit.event_source.split('.')[0]}:{item.unit.event_name}"
        lines.append(f"{item.kind:<12}{api:<34}{_clock(item.start):>10}{item.length:>5}{item.size:>5.0f}x"
                     f"{item.baseline_rate:>10.2f}{item.baseline_rate + item.added_rate:>10.2f}"
                     f"{'yes' if outcome.delay is not None else 'NO':>10}"
                     f"{'' if outcome.delay is None else f'{outcome.delay} min':>7}"
                     f"{'' if outcome.duration is None else f'{outcome.duration} min':>9}")
    detected = [o for o in outcomes if o.delay is not None]
    in_time = {kind: all(o.delay is not None and o.delay <= TARGET_DELAY_MIN for o in outcomes
                         if o.injection.kind == kind) for kind in ("burst", "error storm")}
    precision = true_starts / all_starts if all_starts else 1.0
    recall = len(detected) / len(outcomes) if outcomes else 1.0
    delays = sorted(o.delay for o in detected if o.delay is not None)
    lines += ["", f"precision {precision:.3f} ({true_starts}/{all_starts} Insights match an injection)",
              f"recall {recall:.3f} ({len(detected)}/{len(outcomes)} injections detected)",
              f"detection delay (event time): median {delays[len(delays) // 2] if delays else '-'} min, "
              f"max {delays[-1] if delays else '-'} min",
              f"steady traffic: {len(steady)} Insights over {days} days", ""]
    targets = [("every burst >= 5x for >= 5 min detected within 2 min", in_time["burst"]),
               ("every error storm >= 10x detected within 2 min", in_time["error storm"]),
               (f"no Insight over {days} days of steady diurnal traffic", not steady)]
    lines += [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in targets]
    return lines, all(ok for _, ok in targets)
