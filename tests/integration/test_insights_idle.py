"""The Insights worker's idle end against the real broker: a delivery partition that receives no more events
ends its open Insight `insights.idle_end_s` of wall-clock time after its last event, across a stop."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from kafkatrail.core.topics import create_topics
from kafkatrail.stack import Endpoints
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, fresh_settings
from tests.integration.test_insights_worker import BURST, BURST_PER_MIN, START, TRAIL, deliver, insights

IDLE_END_S = 20


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_quiet_partition_ends_its_open_insight_within_idle_end_s(stack: Endpoints, tmp_path: Path,
                                                                    signal_name: str) -> None:
    """Events stop mid-burst and never resume: the open Insight ends `insights.idle_end_s` after the last event
    reached Kafka, even though the worker was stopped in between (the idle clock is in the changelog)."""
    settings = fresh_settings(stack.bootstrap_servers, insights={"idle_end_s": IDLE_END_S})
    create_topics(settings)
    apply_trails(settings, [TRAIL])
    into_burst = int((BURST - START).total_seconds() // 60) + 5
    with Workers(settings, tmp_path) as workers:
        deliver(settings, START, into_burst)
        delivered_at = time.time()
        workers.start("insights")
        deadline = time.monotonic() + 60
        while not (found := insights(settings)) and time.monotonic() < deadline:
            workers.assert_alive()
            time.sleep(0.5)
        assert [r["insightDetails"]["state"] for r in found] == ["Start"], workers.log_tail()
        assert time.time() < delivered_at + IDLE_END_S, "the Start came too late to see the idle end apart"
        if signal_name == "SIGKILL":
            workers.kill("insights")
        else:
            workers.terminate("insights")
        workers.start("insights")
        while len(found := insights(settings)) < 2 and time.time() < delivered_at + IDLE_END_S + 15:
            workers.assert_alive()
            time.sleep(0.5)
        ended_at = time.time()
    assert [r["insightDetails"]["state"] for r in found] == ["Start", "End"], workers.log_tail()
    assert delivered_at + IDLE_END_S - 1 <= ended_at <= delivered_at + IDLE_END_S + 15
    start, end = found
    assert end["sharedEventID"] == start["sharedEventID"]
    assert end["eventTime"] == (BURST + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert end["insightDetails"]["insightContext"]["statistics"]["insight"]["average"] == BURST_PER_MIN
