"""Commands against the real stack: a healthy run prints no raw librdkafka line; a CloudTrail endpoint that fails
(the stand-in has no ListPublicKeys) is one line and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from kafkatrail.core.settings import Settings, settings_environment
from kafkatrail.core.topics import create_topics
from kafkatrail.stack import Endpoints

RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|", re.MULTILINE)


def kafkatrail(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFKATRAIL_")}
    env.update(settings_environment(settings))
    return subprocess.run([sys.executable, "-m", "kafkatrail.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_healthy_produce_and_simulate_print_no_raw_librdkafka_line(stack: Endpoints, tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    create_topics(settings)
    written = kafkatrail(settings, "simulate", "--count", "200", "--output-dir", str(tmp_path))
    assert written.returncode == 0, written.stderr
    produced = kafkatrail(settings, "produce", "--quiet", str(tmp_path))
    simulated = kafkatrail(settings, "simulate", "--count", "200", "--fast-forward")
    for result in (produced, simulated):
        assert result.returncode == 0, result.stderr
        assert not RAW_LIBRDKAFKA_LINE.search(result.stderr + result.stdout), result.stderr


def test_a_failing_cloudtrail_endpoint_is_one_line_and_exit_2(stack: Endpoints) -> None:
    settings = Settings(bootstrap_servers=stack.bootstrap_servers)
    result = kafkatrail(settings, "validate-logs", "--s3-bucket", "audit-logs", "--start-time", "2024-01-01T00:00:00Z",
                        "--timeout", "5")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("kafkatrail: error: AWS refused ListPublicKeys: ") and \
        len(result.stderr.splitlines()) == 1, result.stderr
