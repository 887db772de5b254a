"""`kafkatrail run` on the real broker and moto's server: a role killed under it is back within 10 s, SIGTERM to it
stops every role cleanly, and through both each (trail, eventID) lands in exactly one S3 file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.stack import Endpoints
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, expected_pairs, pipeline_settings, simulate
from tests.integration.test_clean_stop import Replay
from tests.integration.test_s3_sink import aws_resources, pairs_in_files, stored_files, wait_until_stored

ROLES = ("processors", "s3")
EVENTS = 4_000
BACK_WITHIN_S = 10.0


class NodeRun:
    """`kafkatrail run --roles ...` as a child process, its JSON lines in a file, each role's log in `log_dir`."""

    def __init__(self, workers: Workers, roles: tuple[str, ...] = ROLES) -> None:
        self.log_dir = workers.log_dir
        self.output = self.log_dir / f"run-{time.monotonic_ns()}.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kafkatrail.cli", "run", "--roles", *roles, "--log-dir", str(self.log_dir)],
                env=workers.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.output.read_text().splitlines() if line.startswith("{")]

    def pid(self, role: str, timeout_s: float = BACK_WITHIN_S, other_than: int | None = None) -> int:
        """The pid of `role`'s child as `run` last logged it (one other than `other_than`), waiting `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            started = [line["pid"] for line in self.lines() if line["message"] == "role started"
                       and line["role"] == role]
            if started and started[-1] != other_than:
                return started[-1]
            assert time.monotonic() < deadline, f"{role} not (re)started within {timeout_s} s:\n{self.tail()}"
            assert self.process.poll() is None, f"`kafkatrail run` exited:\n{self.tail()}"
            time.sleep(0.1)

    def wait_until_working(self, role: str, timeout_s: float = 60) -> None:
        """Until `role`'s log shows its partitions assigned (a SIGTERM before its handler is set kills it)."""
        deadline = time.monotonic() + timeout_s
        log = self.log_dir / f"{role}.log"
        while not (log.exists() and b'"partitions assigned"' in log.read_bytes()):
            assert time.monotonic() < deadline, f"{role} got no partitions in {timeout_s} s:\n{self.tail()}"
            time.sleep(0.1)

    def tail(self) -> str:
        return self.output.read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def answers(port: int, path: str = "/healthz") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: it only waits for its parent to reap it
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def node_workers(stack: Endpoints, tmp_path: Path) -> Workers:
    """Settings on fresh topics with each role's /metrics on a free port; `Workers` for its env and logs only."""
    settings = pipeline_settings(stack)
    settings = settings.model_copy(update={section: getattr(settings, section).model_copy(
        update={"metrics_port": free_port()}) for section in ("processors", "s3")})
    return Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})


def port(settings: Settings, role: str) -> int:
    return int(getattr(settings, role).metrics_port)


def assert_exactly_once(workers: Workers, aws_endpoint: str, trails: tuple, records: list[dict]) -> None:
    wait_until_stored(workers, timeout_s=120)
    pairs = pairs_in_files(stored_files(aws_endpoint, trails), trails)
    expected = expected_pairs(records, trails)
    doubled = [pair for pair, n in pairs.items() if n > 1]
    assert not doubled, f"{len(doubled)} pairs in more than one file, e.g. {doubled[:3]}"
    assert set(pairs) == expected, f"missing {len(expected - set(pairs))} of {len(expected)}"


def applied_trails_and_records(workers: Workers, aws_endpoint: str, seed: int) -> tuple[tuple, list[dict]]:
    """The S3 tests' trails, applied, and EVENTS simulated records to replay through them."""
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    return trails, simulate(EVENTS, seed=seed)


def test_a_role_killed_under_run_is_back_within_10_s_and_nothing_is_lost_or_doubled(
        node_workers: Workers, aws_endpoint: str) -> None:
    workers = node_workers
    trails, records = applied_trails_and_records(workers, aws_endpoint, seed=1400)
    node = NodeRun(workers)
    try:
        for role in ROLES:
            node.pid(role, timeout_s=30)
        replay = Replay(workers, records, seconds=10)
        replay.start()
        rng = random.Random(1400)
        for role in ("s3", "processors", "s3"):
            time.sleep(rng.uniform(1.0, 3.0))
            victim = node.pid(role)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            node.pid(role, other_than=victim)
            while not answers(port(workers.settings, role)):
                assert time.monotonic() - killed_at < BACK_WITHIN_S, \
                    f"{role} not serving /healthz {BACK_WITHIN_S:.0f} s after SIGKILL:\n{node.tail()}"
                time.sleep(0.1)
        replay.finish()
        assert_exactly_once(workers, aws_endpoint, trails, records)
        ended = [line for line in node.lines() if line["message"] == "role ended; restarting it"]
        assert [(line["role"], line["how"]) for line in ended] == [
            ("s3", "killed by SIGKILL"), ("processors", "killed by SIGKILL"), ("s3", "killed by SIGKILL")]
    finally:
        node.stop()


def test_sigterm_to_run_mid_stream_stops_every_role_and_run_again_delivers_exactly_once(
        node_workers: Workers, aws_endpoint: str) -> None:
    workers = node_workers
    trails, records = applied_trails_and_records(workers, aws_endpoint, seed=1410)
    first = NodeRun(workers)
    second = None
    try:
        children = [first.pid(role, timeout_s=30) for role in ROLES]
        replay = Replay(workers, records, seconds=8)
        replay.start()
        for role in ROLES:
            first.wait_until_working(role)
        time.sleep(2)
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(45) == 0, first.tail()
        left = [pid for pid in children if alive(pid)]
        assert not left, f"processes left after SIGTERM to `kafkatrail run`: {left}"
        stopped = {line["role"]: line["how"] for line in first.lines() if line["message"] == "role stopped"}
        assert set(stopped) == set(ROLES) and all(how.startswith("exited with 0") for how in stopped.values()), \
            stopped
        second = NodeRun(workers)
        replay.finish()
        assert_exactly_once(workers, aws_endpoint, trails, records)
    finally:
        first.stop()
        if second is not None:
            second.stop()
