"""The alert rules in deploy/prometheus/alerts.yml, checked and unit-tested by Prometheus's own promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

# promtool's rule tests: series over time, and which alerts must fire when (none is also checked).
RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kafkatrail_s3_parked_files{{job="s3",instance="s3-0"}}'
        values: '0 0 2 2 2 2 2 2 2 0'
      - series: 'kafkatrail_processor_eventid_conflicts_total{{job="processors",instance="p0"}}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 3m
        alertname: KafkatrailLogFilesParked
        exp_alerts: []
      - eval_time: 8m
        alertname: KafkatrailLogFilesParked
        exp_alerts:
          - exp_labels: {{severity: critical, job: s3, instance: s3-0}}
            exp_annotations:
              summary: "2 log file(s) S3 refused for good are parked on s3-0"
              description: >-
                A trail's bucket, bucket policy or KMS key refuses its log files. The files wait in the
                journal and are listed with the AWS error on the delivery-failures topic; fix the trail
                (or its bucket) and they are stored, delete the trail and they are released.
      - eval_time: 10m
        alertname: KafkatrailLogFilesParked
        exp_alerts: []
      - eval_time: 2m
        alertname: KafkatrailEventIdConflict
        exp_alerts: []
      - eval_time: 4m
        alertname: KafkatrailEventIdConflict
        exp_alerts:
          - exp_labels: {{severity: critical, job: processors, instance: p0}}
            exp_annotations:
              summary: "records reused an accepted eventID with other content on p0"
              description: >-
                A producer published a record whose eventID was already accepted with different content.
                The first record was kept; the other is on the dead-letter topic with reason conflict.eventID.
                A forged record published first would look exactly like this: compare the two.
      - eval_time: 20m
        alertname: KafkatrailEventIdConflict
        exp_alerts: []
"""


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool")
    if not Path(found).exists():
        pytest.fail("promtool not found: `make test` unpacks Debian's prometheus package into .cache/prometheus")
    return found


def test_the_rules_file_is_valid(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then(promtool: str, tmp_path: Path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(RULE_TESTS.format(rules=RULES))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# The operations alerts: (alert, input series, [(eval time, labels and $value of each alert firing then)]).
# Series are one sample a minute; `a+bxn` is a, a+b, ... n more times.
OPERATIONS: list[tuple[str, dict[str, str], list[tuple[str, list[tuple[dict[str, str], str]]]]]] = [
    ("KafkatrailConsumerLagGrowing",
     {'kafkatrail_consumer_lag_records{role="s3",topic="t",instance="a"}': "100000+1x40",
      'kafkatrail_consumer_lag_records{role="history",topic="h",instance="b"}': "500x40"},  # steady: no alert
     # promtool evaluates the recorded sum either a step behind the alert or not (100,029 or 100,030): a slow
     # climb humanizes alike both ways
     [("5m", []), ("30m", [({"role": "s3", "topic": "t"}, "100k")])]),
    ("KafkatrailTrailNoLogFile",
     {'kafkatrail_s3_last_file_stored_timestamp_seconds{trail="late",instance="a"}': "0x30",
      'kafkatrail_s3_last_file_stored_timestamp_seconds{trail="fine",instance="a"}': "0+60x30",
      'kafkatrail_s3_last_file_stored_timestamp_seconds{trail="quiet",instance="a"}': "0x30",  # no events: no file
      "kafkatrail_s3_flush_interval_seconds": "60x30",
      'kafkatrail_processor_selected_events_total{trail="late"}': "0+10x30",
      'kafkatrail_processor_selected_events_total{trail="fine"}': "0+10x30",
      'kafkatrail_processor_selected_events_total{trail="quiet"}': "5x30"},
     [("4m", []), ("10m", [({"trail": "late"}, "600")])]),
    ("KafkatrailDeliveryErrors",
     {'kafkatrail_aws_call_errors_total{job="s3",instance="a",call="PutObject",code="EndpointConnectionError"}':
      "0 0 0+5x20"},
     [("4m", []), ("15m", [({"job": "s3", "call": "PutObject", "code": "EndpointConnectionError"}, "")])]),
    ("KafkatrailAwsUnreachable",
     {'kafkatrail_dependency_up{dependency="aws",job="s3",instance="a"}': "1 1 1 0x10"},
     [("4m", []), ("8m", [({"job": "s3", "instance": "a"}, "")])]),
    ("KafkatrailDeadLettersRising",
     {'kafkatrail_processor_invalid_events_total{reason="schema",instance="a"}': "0+120x30",
      'kafkatrail_processor_invalid_events_total{reason="json",instance="a"}': "0+6x30"},  # 0.1/s: below
     [("8m", []), ("20m", [({"reason": "schema"}, "2")])]),
    ("KafkatrailDigestLate",
     {"kafkatrail_digests_chains": "3x200", "kafkatrail_digests_written_total": "0+3x60 180x140"},
     [("120m", []), ("170m", [({}, "")])]),
    ("KafkatrailInsightsBehind",
     {'kafkatrail_consumer_lag_records{role="insights",topic="d",instance="a"}': "20000x30",
      'kafkatrail_consumer_lag_records{role="s3",topic="d",instance="a"}': "20000x30"},  # not the Insights worker
     [("10m", []), ("20m", [({"role": "insights", "topic": "d"}, "20k")])]),
]


def rendered(template: str, labels: dict[str, str], value: str) -> str:
    """An annotation as Prometheus renders it, for the few template forms the rules use."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: labels[match.group(1)], template)
    return re.sub(r"\{\{ \$value(?: \| humanize)? \}\}", value, text)


def operations_tests() -> dict[str, Any]:
    """promtool's rule tests for the operations alerts, the expected annotations rendered from the rules file."""
    alerts = {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
              if "alert" in rule}
    tests = []
    for name, series, checks in OPERATIONS:
        rule = alerts[name]
        expected = [{"eval_time": at, "alertname": name, "exp_alerts": [
            {"exp_labels": {**rule["labels"], **labels},
             "exp_annotations": {key: rendered(text, labels, value) for key, text in rule["annotations"].items()}}
            for labels, value in firing]} for at, firing in checks]
        tests.append({"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
                      "alert_rule_test": expected})
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


def test_every_operations_alert_is_tested() -> None:
    groups = {group["name"]: group["rules"] for group in yaml.safe_load(RULES.read_text())["groups"]}
    assert {rule["alert"] for rule in groups["kafkatrail-operations"]} == {name for name, _, _ in OPERATIONS}


def test_each_operations_alert_fires_when_it_should_and_only_then(promtool: str, tmp_path: Path) -> None:
    tests = tmp_path / "operations_test.yml"
    tests.write_text(yaml.safe_dump(operations_tests(), sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
