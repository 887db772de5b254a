"""Benchmark: one stream processor process (`kafkatrail worker processors`) with dedupe and five trails.

Throughput: pre-publishes N simulated events (5% duplicates) to a fresh events topic, applies the five
organization trails of bench/five-trails.yaml, then starts one processor as a subprocess and times the
backlog from its first processed event to its last through its /metrics. Latency: with the processor
running, publishes at a fixed rate and times each event from `emit()` to the first of its delivery
records seen by a read_committed consumer. Also prints the processor's peak RSS (the dedupe window's
memory and speed at 10 million eventIDs: bench/dedupe.py). Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS,
or starts (and stops) a private local stack.

    .venv/bin/python bench/process.py [--events 300000] [--rate 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition
from workers import Worker

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, StackSettings, settings_environment
from kafkatrail.core.topics import create_topics
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulate import simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.topic import apply_trails

TRAILS = Path(__file__).parent / "five-trails.yaml"
EVENTS_IN = "kafkatrail_processor_events_in_total"
SELECTED = "kafkatrail_processor_selected_events_total"
DUPLICATES = "kafkatrail_processor_duplicates_dropped_total"
INVALID = "kafkatrail_processor_invalid_events_total"
SEED = 7
POLL_S = 0.05
START_TIMEOUT_S = 60.0


class Processor(Worker):
    """`kafkatrail worker processors` in a subprocess, observed through its /metrics."""

    def __init__(self, settings: Settings, log_file: Path) -> None:
        env = {**os.environ, **settings_environment(settings)}
        super().__init__("processors", env, log_file, "--instance-id", "bench")

    def wait_for(self, events: int, timeout_s: float) -> tuple[tuple[float, Counter[str]], tuple[float, Counter[str]]]:
        """Poll until `events` were processed; (time, metrics) when the first and the last were seen."""
        deadline = time.monotonic() + timeout_s
        first = None
        while True:
            metrics = self.scrape()
            now = time.monotonic()
            if first is None and metrics[EVENTS_IN] > 0:
                first = (now, metrics)
            if first is not None and metrics[EVENTS_IN] >= events:
                return first, (now, metrics)
            self.check(deadline, f"processing {events} events (done: {metrics[EVENTS_IN]:.0f})")
            time.sleep(POLL_S)


def prepublish(settings: Settings, count: int) -> TrafficSimulator:
    simulator = TrafficSimulator(TrafficModel(rate=1000, seed=SEED, duplicate_rate=0.05))
    with EventProducer(settings) as producer:
        simulate_to_kafka(simulator, producer, Limit(count=count), paced=False)
    return simulator


def measure_throughput(processor: Processor, count: int, duplicates: int) -> None:
    """Time the backlog of `count` events from the first processed to the last."""
    (began, first), (ended, last) = processor.wait_for(count, timeout_s=START_TIMEOUT_S + count / 1000)
    if ended == began:
        raise RuntimeError("the whole backlog went in one scrape interval: raise --events")
    elapsed = ended - began
    events = last[EVENTS_IN] - first[EVENTS_IN]
    pairs = last[SELECTED] - first[SELECTED]
    print(f"processor start to first event: {began - processor.started:.1f} s")
    print(f"throughput: {events / elapsed:,.0f} events/s, {pairs / elapsed:,.0f} delivered (trail, event) pairs/s "
          f"({events:,.0f} events in {elapsed:.2f} s)")
    print(f"backlog: {last[EVENTS_IN]:,.0f} events, {last[SELECTED]:,.0f} pairs, {last[DUPLICATES]:,.0f} duplicates "
          f"dropped of {duplicates:,} sent, {last[INVALID]:,.0f} dead-lettered")


def measure_latency(processor: Processor, settings: Settings, already: int, rate: int, seconds: float) -> None:
    """Publish `rate` events/s for `seconds`; time each from emit() to its first delivery record."""
    count = int(rate * seconds)
    records = list(TrafficSimulator(TrafficModel(rate=rate, seed=SEED + 1)).records(Limit(count=count)))
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    topic = settings.topics.delivery
    consumer = Consumer(kafka_config(settings, **{"group.id": f"{settings.topic_prefix}-latency",
                                                 "enable.auto.commit": False, "isolation.level": "read_committed"}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
                     for p in partitions])
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            message = consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                arrived.setdefault(orjson.loads(message.value())["eventID"], time.perf_counter())

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        time.sleep(1.0)
        with EventProducer(settings, **{"linger.ms": 1}) as producer:
            began = time.perf_counter()
            emitted = 0
            while emitted < count:
                due = min(count, int((time.perf_counter() - began) * rate) + 1)
                for record in records[emitted:due]:
                    now = time.perf_counter()
                    sent[producer.emit(record)] = now
                emitted = due
                time.sleep(0.001)
            achieved = count / (time.perf_counter() - began)
        processor.wait_for(already + count, timeout_s=60)
        time.sleep(1.0)
    finally:
        listening.clear()
        listener.join()
        consumer.close()
    latencies = sorted(arrived[event_id] - sent[event_id] for event_id in arrived)
    if len(latencies) < 2:
        raise RuntimeError(f"only {len(latencies)} event(s) came back from the delivery topic")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"latency at {achieved:,.0f} events/s for {seconds:g} s (emit() to first delivery record, read_committed): "
          f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms "
          f"({len(latencies):,} of {count:,} events measured)")


def run(bootstrap: str, count: int, rate: int, seconds: float) -> None:
    prefix = f"benchproc{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, processors={"group_id": f"{prefix}-group"})
    create_topics(settings)
    apply_trails(settings, load_trails(TRAILS))
    began = time.perf_counter()
    simulator = prepublish(settings, count)
    print(f"pre-published {count:,} events ({simulator.duplicates:,} repeated eventIDs) in "
          f"{time.perf_counter() - began:.1f} s; 5 organization trails ({TRAILS.name})")

    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-") as scratch:
        processor = Processor(settings, Path(scratch) / "processor.log")
        try:
            measure_throughput(processor, count, simulator.duplicates)
            measure_latency(processor, settings, count, rate, seconds)
            print(f"processor peak RSS (VmHWM): {processor.peak_rss_mib():.0f} MiB")
        finally:
            ending = processor.stop()
        print(f"processor {ending}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="backlog for the throughput phase")
    parser.add_argument("--rate", type=int, default=5_000, help="events/s of the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    args = parser.parse_args()
    if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
        run(bootstrap, args.events, args.rate, args.seconds)
        return
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-stack-") as data_dir:
        stack = LocalStack(StackSettings(data_dir=Path(data_dir), kafka_port=free_port(), aws_port=free_port()))
        try:
            run(stack.up().bootstrap_servers, args.events, args.rate, args.seconds)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
