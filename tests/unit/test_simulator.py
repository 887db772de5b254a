"""The traffic simulator and the log-file layout: pure logic, no broker."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from kafkatrail.producers.simulator import IDENTITY_WEIGHTS, Burst, Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.log_files import log_file_body, log_file_key, unique_part
from kafkatrail.schemas.validation import validate_event

MONDAY_NOON = datetime(2026, 1, 5, 12, tzinfo=UTC)


def simulate(count: int = 5000, **model: object) -> tuple[TrafficSimulator, list[dict]]:
    simulator = TrafficSimulator(TrafficModel(**{"rate": 200, "start": MONDAY_NOON, **model}))
    return simulator, list(simulator.records(Limit(count=count)))


def test_same_seed_and_start_give_identical_records() -> None:
    assert orjson.dumps(simulate(seed=4)[1]) == orjson.dumps(simulate(seed=4)[1])
    assert simulate(seed=4)[1] != simulate(seed=5)[1]


def test_every_record_passes_validation_and_covers_the_identity_types() -> None:
    _, records = simulate(count=20_000)
    for record in records:
        validate_event(record)
    seen = Counter(r["userIdentity"]["type"] for r in records)
    assert set(seen) == set(IDENTITY_WEIGHTS) | {"SAMLUser", "WebIdentityUser"}
    assert {r["eventCategory"] for r in records} == {"Management", "Data"}
    assert 0.005 < sum("errorCode" in r for r in records) / len(records) < 0.05
    assert {r["awsRegion"] for r in records if r["eventSource"] == "iam.amazonaws.com"} == {"us-east-1"}


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.10])
def test_duplicate_rate_repeats_earlier_event_ids(rate: float) -> None:
    simulator, records = simulate(count=20_000, duplicate_rate=rate)
    repeats = len(records) - len({r["eventID"] for r in records})
    assert repeats == simulator.duplicates
    assert abs(repeats / len(records) - rate / (1 + rate)) < 0.01


@pytest.mark.parametrize(
    ("limit", "expected_records", "expected_seconds"),
    [(Limit(count=1234), 1234, None), (Limit(duration_s=30), None, 30), (Limit(count=10**9, duration_s=5), None, 5)],
)
def test_limits_stop_exactly(limit: Limit, expected_records: int | None, expected_seconds: int | None) -> None:
    simulator = TrafficSimulator(TrafficModel(rate=100, start=MONDAY_NOON, duplicate_rate=0.05))
    seconds = list(simulator.seconds(limit))
    emitted = sum(len(batch) for _, batch in seconds)
    assert emitted == simulator.generated + simulator.duplicates
    if expected_records is not None:
        assert emitted == expected_records
    if expected_seconds is not None:
        assert len(seconds) == expected_seconds


@pytest.mark.parametrize(
    ("moment", "relation"),
    [(datetime(2026, 1, 5, 15, tzinfo=UTC), "peak"), (datetime(2026, 1, 5, 3, tzinfo=UTC), "trough"),
     (datetime(2026, 1, 10, 15, tzinfo=UTC), "weekend")],
)
def test_diurnal_and_weekly_rhythm(moment: datetime, relation: str) -> None:
    model = TrafficModel(rate=100, diurnal_amplitude=0.5)
    expected = {"peak": 150.0, "trough": 50.0, "weekend": 90.0}[relation]
    assert model.expected_rate(moment) == pytest.approx(expected)


def test_a_burst_multiplies_one_api_during_its_window() -> None:
    burst = Burst.parse("ec2.amazonaws.com:RunInstances:20:60:60")
    simulator = TrafficSimulator(TrafficModel(rate=200, start=MONDAY_NOON, bursts=(burst,)))
    per_window = Counter()
    for moment, batch in simulator.seconds(Limit(duration_s=180)):
        window = int((moment - MONDAY_NOON).total_seconds() // 60)
        per_window[window] += sum(r["eventName"] == "RunInstances" for r in batch)
    assert per_window[1] > 10 * max(per_window[0], per_window[2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ec2.amazonaws.com:RunInstances:10:60", "expected eventSource:eventName:factor:start:duration"),
        ("ec2.amazonaws.com:Nope:10:60:300", "is not an API the simulator calls"),
        ("ec2.amazonaws.com:RunInstances:ten:60:300", "must be numbers"),
        ("ec2.amazonaws.com:RunInstances:0.5:60:300", "factor must be >= 1"),
        ("ec2.amazonaws.com:RunInstances:2:60:0", "duration > 0"),
    ],
)
def test_bad_burst_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Burst.parse(text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("rate", 0, "rate: must be > 0"), ("duplicate_rate", 1.0, "duplicate_rate: must be in"),
     ("accounts", 0, "accounts: must be >= 1"), ("diurnal_amplitude", 1.5, "diurnal_amplitude")],
)
def test_bad_model_parameters_name_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficModel(**{field: value})


LOG_KEY_CASES = [
    ("", None, "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/"
               "111122223333_CloudTrail_eu-west-1_20240501T0915Z_Hk3Zp0QmT7bWc1Ns.json.gz"),
    ("audit/prod/", None, "audit/prod/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/"
                          "111122223333_CloudTrail_eu-west-1_20240501T0915Z_Hk3Zp0QmT7bWc1Ns.json.gz"),
    ("", "o-abc123def4", "AWSLogs/o-abc123def4/111122223333/CloudTrail/eu-west-1/2024/05/01/"
                         "111122223333_CloudTrail_eu-west-1_20240501T0915Z_Hk3Zp0QmT7bWc1Ns.json.gz"),
]


@pytest.mark.parametrize(("prefix", "org", "expected"), LOG_KEY_CASES)
def test_log_file_key_matches_the_spec(prefix: str, org: str | None, expected: str) -> None:
    delivered = datetime(2024, 5, 1, 9, 15, 42, tzinfo=UTC)
    assert log_file_key("111122223333", "eu-west-1", delivered, "Hk3Zp0QmT7bWc1Ns", prefix, org) == expected


def test_insight_file_key_matches_the_spec() -> None:
    delivered = datetime(2024, 5, 1, 9, 15, 42, tzinfo=UTC)
    assert log_file_key("111122223333", "eu-west-1", delivered, "Hk3Zp0QmT7bWc1Ns", "audit",
                        kind="CloudTrail-Insight") == (
        "audit/AWSLogs/111122223333/CloudTrail-Insight/eu-west-1/2024/05/01/"
        "111122223333_CloudTrail-Insight_eu-west-1_20240501T0915Z_Hk3Zp0QmT7bWc1Ns.json.gz")
    with pytest.raises(ValueError, match="kind: must be one of"):
        log_file_key("111122223333", "eu-west-1", delivered, "Hk3Zp0QmT7bWc1Ns", kind="CloudTrail-Digest")


@pytest.mark.parametrize("unique", ["short", "Hk3Zp0QmT7bWc1N_", "Hk3Zp0QmT7bWc1Ns9"])
def test_log_file_key_refuses_a_bad_unique_part(unique: str) -> None:
    with pytest.raises(ValueError, match="unique: must be 16 characters"):
        log_file_key("111122223333", "eu-west-1", MONDAY_NOON, unique)


def test_log_file_body_is_one_gzip_member_of_compact_records() -> None:
    records = simulate(count=3)[1]
    body = log_file_body(records)
    assert gzip.decompress(body) == b'{"Records":[' + b",".join(orjson.dumps(r) for r in records) + b"]}"
    with pytest.raises(ValueError, match="at least one record"):
        log_file_body([])
    assert len(unique_part(random.Random(1))) == 16


@pytest.mark.parametrize("region", ["../../x", "eu-west-1/../..", "", "EU-WEST-1"])
def test_a_region_that_is_no_region_name_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="regions: must be AWS region names"):
        TrafficModel(regions=("us-east-1", region))
