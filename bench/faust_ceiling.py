"""Benchmark: the ceiling of a faust-streaming agent that does nothing but count, one process.

The record behind the processor's choice of confluent-kafka over faust (processors/worker.py).
Pre-publishes N simulated events (real-sized, Avro, as EventProducer writes them), then for each mode
runs a minimal faust worker in a subprocess (raw serializers, web server off, a fresh consumer group
reading from the earliest offset) whose agent only counts, and times it from the first event the agent
sees to the last. Modes: `events` (`async for event in stream.events()`), `take`
(`stream.take_events(1000, within=0.2)`), `take-uvloop` (the same on uvloop). Uses the broker in
KAFKATRAIL_BOOTSTRAP_SERVERS, or starts (and stops) a private local stack.

    .venv/bin/python bench/faust_ceiling.py [--events 200000] [--mode all|events|take|take-uvloop]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafkatrail.core.settings import Settings, StackSettings
from kafkatrail.core.topics import create_topics
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulate import simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port

MODES = {
    "events": "per event, `async for event in stream.events()`",
    "take": "`stream.take_events(1000, within=0.2)`",
    "take-uvloop": "`stream.take_events(1000, within=0.2)` on uvloop",
}
RESULT = "faust-ceiling-result "
TAKE = 1000
TAKE_WITHIN_S = 0.2


def agent_main(kind: str, bootstrap: str, topic_name: str, count: int) -> None:
    """Run the faust worker (it owns the process) until its agent has counted `count` events."""
    import mode.loop

    if kind == "take-uvloop":
        mode.loop.use("uvloop")
    import faust

    with tempfile.TemporaryDirectory(prefix="kafkatrail-faust-") as datadir:
        app = faust.App(f"bench-faust-{kind}-{uuid.uuid4().hex[:8]}",
                        broker=[f"kafka://{server}" for server in bootstrap.split(",")], web_enabled=False,
                        key_serializer="raw", value_serializer="raw", consumer_auto_offset_reset="earliest",
                        datadir=datadir)
        topic = app.topic(topic_name)
        seen = 0
        first: tuple[float, int] | None = None

        def tick(events: int) -> None:
            nonlocal seen, first
            now = time.perf_counter()
            seen += events
            if first is None:
                first = (now, seen)
            if seen >= count:
                print(RESULT + json.dumps({"events": seen - first[1], "seconds": now - first[0]}), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)

        if kind == "events":
            @app.agent(topic)
            async def count_events(stream: faust.Stream) -> None:
                async for _ in stream.events():
                    tick(1)
        else:
            @app.agent(topic)
            async def count_batches(stream: faust.Stream) -> None:
                async for events in stream.take_events(TAKE, within=TAKE_WITHIN_S):
                    tick(len(events))

        faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


def run_agent(mode: str, bootstrap: str, topic: str, count: int) -> float:
    """Events/s of one faust worker subprocess in `mode`, from its agent's first event to its last."""
    command = [sys.executable, __file__, "--agent", mode, "--bootstrap", bootstrap, "--topic", topic,
               "--events", str(count)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120 + count / 1000)
    result = next((line.partition(RESULT)[2] for line in done.stdout.splitlines() if RESULT in line), None)
    if result is None:
        raise RuntimeError(f"faust worker ({mode}) exited with {done.returncode} and no result:\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    figures = json.loads(result)
    return figures["events"] / figures["seconds"]


def run(bootstrap: str, count: int, modes: list[str]) -> None:
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"benchfaust{uuid.uuid4().hex[:6]}")
    create_topics(settings)
    began = time.perf_counter()
    with EventProducer(settings) as producer:
        simulate_to_kafka(TrafficSimulator(TrafficModel(rate=1000, seed=7)), producer, Limit(count=count),
                          paced=False)
    print(f"pre-published {count:,} simulated events (Avro, {settings.topic_partitions} partitions) "
          f"in {time.perf_counter() - began:.1f} s")
    for mode in modes:
        print(f"faust agent, {MODES[mode]}: {run_agent(mode, bootstrap, settings.topics.events, count):,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--mode", choices=["all", *MODES], default="all")
    parser.add_argument("--agent", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        agent_main(args.agent, args.bootstrap, args.topic, args.events)
        return
    modes = list(MODES) if args.mode == "all" else [args.mode]
    if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
        run(bootstrap, args.events, modes)
        return
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-stack-") as data_dir:
        stack = LocalStack(StackSettings(data_dir=Path(data_dir), kafka_port=free_port(), aws_port=free_port()))
        try:
            run(stack.up().bootstrap_servers, args.events, modes)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
