"""The alert rules in deploy/prometheus/alerts.yml, checked and unit-tested by Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
    assert "SUCCESS: 2 rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then(promtool: str, tmp_path: Path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(RULE_TESTS.format(rules=RULES))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
