"""A real Prometheus server (Debian's, unpacked by the Makefile beside promtool) scrapes the workers `kafkatrail run`
starts, with deploy/prometheus/alerts.yml loaded: its own query API says the targets are up, and that the AWS
alerts fire once S3 (moto's server, a private one) stops answering.

The rules are loaded as shipped except for their `for:` durations (minutes, in production), set to 0 s so the
test ends within a minute; promtool's unit tests (tests/unit/test_alert_rules.py) hold the durations.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkatrail.stack import Endpoints
from kafkatrail.stack.aws_standin import start_aws_standin, wait_until_ready
from kafkatrail.stack.processes import free_port, stop
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, pipeline_settings, publish, simulate, stop_process
from tests.integration.test_run import NodeRun
from tests.integration.test_s3_sink import aws_resources, wait_until_stored

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "prometheus"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ROLES = ("processors", "s3")
AWS_ALERTS = {"KafkatrailDeliveryErrors", "KafkatrailAwsUnreachable"}


class Prometheus:
    """`prometheus` on 127.0.0.1 and a free port, scraping `targets` (job -> port) every second."""

    def __init__(self, folder: Path, targets: dict[str, int]) -> None:
        rules = folder / "rules.yml"
        rules.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", RULES.read_text()))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                  "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                                     for job, port in targets.items()]}
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str, **query: str) -> Any:
        """The `data` of a query-API answer; None while the server does not answer."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())["data"]
        except OSError:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            return None

    def firing(self) -> dict[str, Any]:
        """The alerts firing now, by name."""
        alerts = (self.api("alerts") or {}).get("alerts", [])
        return {alert["labels"]["alertname"]: alert for alert in alerts if alert["state"] == "firing"}

    def stop(self) -> None:
        stop_process(self.process)


def wait_for(what: str, check: Any, timeout_s: float, logs: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s:\n{logs()}"
        time.sleep(0.5)
    return found


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A private moto server (the test stops and continues it): (pid, endpoint)."""
    port = free_port()
    log = tmp_path / "moto.log"
    pid = start_aws_standin(port, log)
    try:
        wait_until_ready(pid, port, log, 30)
        yield pid, f"http://127.0.0.1:{port}"
    finally:
        stop(pid, 10)


def test_prometheus_scrapes_every_role_and_fires_the_aws_alerts_when_s3_stops(
        stack: Endpoints, standin: tuple[int, str], tmp_path: Path) -> None:
    if not PROMETHEUS.exists():
        pytest.fail("prometheus not found: `make test` unpacks Debian's prometheus package into .cache/prometheus")
    pid, endpoint = standin
    settings = pipeline_settings(stack)
    settings = settings.model_copy(update={
        **{section: getattr(settings, section).model_copy(update={"metrics_port": free_port()}) for section in ROLES},
        "aws": settings.aws.model_copy(update={"connect_timeout_s": 1.0, "read_timeout_s": 1.0, "max_attempts": 1})})
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": endpoint})
    trails, _, _ = aws_resources(endpoint)
    apply_trails(settings, trails)
    node = NodeRun(workers)
    prometheus = Prometheus(tmp_path, {role: getattr(settings, role).metrics_port for role in ROLES})
    try:
        def logs() -> str:
            return node.tail() + prometheus.log.read_text()[-1500:]

        targets = wait_for("every target up", lambda: (found := prometheus.api("targets")) and sorted(
            t["labels"]["job"] for t in found["activeTargets"] if t["health"] == "up") == sorted(ROLES) and found,
            60, logs)
        assert {t["scrapeUrl"] for t in targets["activeTargets"]} == {
            f"http://127.0.0.1:{getattr(settings, role).metrics_port}/metrics" for role in ROLES}
        up = prometheus.api("query", query="up")
        assert sorted((r["metric"]["job"], r["value"][1]) for r in up["result"]) == [(role, "1") for role in ROLES]

        publish(settings, simulate(500, seed=1500))
        wait_until_stored(workers, timeout_s=60)
        wait_for("the files stored counted", lambda: (found := prometheus.api(
            "query", query="sum(kafkatrail_s3_trail_files_written_total)")) and found["result"] and float(
            found["result"][0]["value"][1]) > 0, 20, logs)
        assert not prometheus.firing(), "no alert before S3 stops"

        os.kill(pid, signal.SIGSTOP)  # S3 stops answering: connections wait, calls time out
        publish(settings, simulate(500, seed=1501))
        firing = wait_for("the AWS alerts firing", lambda: (now := prometheus.firing()).keys() >= AWS_ALERTS and now,
                          60, logs)
        assert firing["KafkatrailAwsUnreachable"]["labels"]["job"] == "s3"
        assert firing["KafkatrailDeliveryErrors"]["labels"]["call"] == "PutObject"
    finally:
        prometheus.stop()
        os.kill(pid, signal.SIGCONT)
        node.stop()
