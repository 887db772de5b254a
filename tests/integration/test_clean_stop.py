"""A clean stop (SIGTERM) and a rebalance lose nothing and double nothing, on the real broker and moto's server.

Each test replays events while a sink is stopped with SIGTERM and started again, or while a second sink joins
and leaves its group. SIGTERM is what supervisors, `kubectl rollout` and `kafkatrail demo` send; each SIGTERM
here lands after the sink has its partitions, in the middle of its batches and flushes.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, expected_pairs, publish, simulate
from tests.integration.test_s3_sink import (
    TIGHT_OPEN_BYTES,
    aws_resources,
    cloudwatch_messages,
    pairs_in_files,
    stored_files,
    wait_until_stored,
)

EVENTS = 4_000
STOPS = 7


class Replay(threading.Thread):
    """Publishes `records` in chunks, spread over `seconds`, while the test stops and starts sinks."""

    def __init__(self, workers: Workers, records: list[dict[str, Any]], seconds: float) -> None:
        super().__init__(daemon=True)
        self.workers, self.records, self.seconds = workers, records, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        chunks = 20
        size = -(-len(self.records) // chunks)
        try:
            for start in range(0, len(self.records), size):
                publish(self.workers.settings, self.records[start:start + size])
                time.sleep(self.seconds / chunks)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.join(120)
        assert not self.is_alive(), "the replay did not finish"
        if self.error is not None:
            raise self.error


def wait_until_working(workers: Workers, role: str, timeout_s: float = 60) -> None:
    """Until the latest worker of `role` has logged its partition assignment."""
    worker = workers.latest(role)
    deadline = time.monotonic() + timeout_s
    while b'"partitions assigned"' not in worker.log_file.read_bytes():
        assert worker.alive(), f"the {role} worker exited:\n{workers.log_tail()}"
        assert time.monotonic() < deadline, f"the {role} worker got no partitions in {timeout_s} s"
        time.sleep(0.1)


def stop_and_restart(workers: Workers, role: str, times: int, rng: random.Random) -> None:
    """SIGTERM the worker of `role` `times` times, each while it is working, and start it again."""
    for _ in range(times):
        wait_until_working(workers, role)
        time.sleep(rng.uniform(0.2, 1.0))
        workers.terminate(role)
        workers.start(role)


def join_and_leave(workers: Workers, role: str, times: int, rng: random.Random, stay_s: tuple[float, float]) -> None:
    """`times` over, a second worker of `role` joins the group (a rebalance while the first is mid-batch), works
    for a random time within `stay_s` and leaves with SIGTERM (its partitions go back to the first)."""
    first = workers.running[role][0]
    for _ in range(times):
        workers.start(role)
        wait_until_working(workers, role)
        time.sleep(rng.uniform(*stay_s))
        workers.terminate(role)
        workers.running[role].append(first)


@pytest.mark.parametrize("run", range(2))
def test_sigterm_to_the_s3_sink_seven_times_leaves_each_pair_in_exactly_one_file(
        workers: Workers, aws_endpoint: str, run: int) -> None:
    """The second run under the SIGKILL test's tight memory budget: files also close early, between stops."""
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    if run:
        workers.env["KAFKATRAIL_S3__MAX_OPEN_BYTES"] = str(TIGHT_OPEN_BYTES)
    records = simulate(EVENTS, seed=300 + run)
    replay = Replay(workers, records, seconds=8)
    workers.start("processors")
    workers.start("s3")
    replay.start()
    stop_and_restart(workers, "s3", STOPS, random.Random(run))
    replay.finish()
    wait_until_stored(workers)

    pairs = pairs_in_files(stored_files(aws_endpoint, trails), trails)
    expected = expected_pairs(records, trails)
    doubled = [pair for pair, n in pairs.items() if n > 1]
    assert not doubled, f"{len(doubled)} pairs in more than one file, e.g. {doubled[:3]}"
    missing = expected - set(pairs)
    assert not missing, f"{len(missing)} of {len(expected)} pairs never reached S3 after {STOPS} SIGTERMs"
    assert set(pairs) == expected


def test_sigterm_to_the_cloudwatch_sink_seven_times_loses_no_event(workers: Workers, aws_endpoint: str) -> None:
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    records = simulate(EVENTS, seed=310, start=an_hour_ago)  # CloudWatch Logs refuses events older than 14 days
    replay = Replay(workers, records, seconds=12)
    workers.start("processors")
    workers.start("cloudwatch")
    replay.start()
    stop_and_restart(workers, "cloudwatch", STOPS, random.Random(310))
    replay.finish()

    management = trails[0]
    expected = {event_id for arn, event_id in expected_pairs(records, trails) if arn == management.arn}
    deadline = time.monotonic() + 120
    while (missing := expected - {r["eventID"] for r in cloudwatch_messages(aws_endpoint, management)}):
        assert time.monotonic() < deadline, (f"{len(missing)} of {len(expected)} events never reached CloudWatch "
                                             f"Logs after {STOPS} SIGTERMs:\n{workers.log_tail()}")
        workers.assert_alive()
        time.sleep(1)


def test_a_sink_joining_and_leaving_mid_flush_leaves_each_pair_in_exactly_one_file(
        workers: Workers, aws_endpoint: str, tmp_path: Path) -> None:
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    records = simulate(EVENTS * 2, seed=320)
    replay = Replay(workers, records, seconds=15)
    workers.start("processors")
    workers.start("s3")
    wait_until_working(workers, "s3")
    first = workers.running["s3"][0]
    replay.start()
    join_and_leave(workers, "s3", 3, random.Random(320), stay_s=(0.5, 2.0))
    replay.finish()
    assert first.alive(), workers.log_tail()
    wait_until_stored(workers)

    pairs = pairs_in_files(stored_files(aws_endpoint, trails), trails)
    expected = expected_pairs(records, trails)
    doubled = [pair for pair, n in pairs.items() if n > 1]
    assert not doubled, f"{len(doubled)} pairs in more than one file, e.g. {doubled[:3]}"
    assert set(pairs) == expected, f"missing {len(expected - set(pairs))} of {len(expected)}"
