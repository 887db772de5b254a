"""Benchmark: EventProducer.emit() throughput into a real local broker, one process.

Publishes N copies of a real ~1.7 KB CloudTrail record (each with its own eventID) with validation and
Avro single-object encoding, then waits for every acknowledgement. Before timing, the producer sends and
flushes a warm-up batch: an idempotent producer sends nothing until the broker's transaction coordinator
hands it a producer id, which on a freshly started broker takes about half a second (the benchmark's
queue fills meanwhile), and that is start-up, not throughput. Prints events/s; the per-event cost
of validation and encoding alone; where CPU time went per event: the emitting thread, librdkafka's
threads, the broker (when the benchmark started it) and the whole machine, which other work may share;
the load average before the run; and peak RSS. Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS, or
starts (and stops) a private local stack.

    .venv/bin/python bench/produce.py [--events 200000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import uuid
from pathlib import Path

import orjson

from kafkatrail.core.settings import Settings, StackSettings
from kafkatrail.core.topics import create_topics
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.schemas.codec import encode_event
from kafkatrail.schemas.validation import validate_event
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port

SAMPLE = (Path(__file__).parents[1] / "tests/data/real/stratus-detonation-logs"
          / "aws.credential-access.ssm-retrieve-securestring-parameters.json")
WARM_UP = 1000


def sample_records(count: int, first: int = 0) -> list[dict]:
    template = min(orjson.loads(SAMPLE.read_bytes()), key=lambda r: abs(len(orjson.dumps(r)) - 1700))
    return [{**template, "eventID": str(uuid.UUID(int=i, version=4))} for i in range(first, first + count)]


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used, 0 when there is no such process."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(data_dir: Path) -> int | None:
    """The pid of the Kafka broker whose data lives under ``data_dir``."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kafka.Kafka" in argv and any(str(data_dir) in arg for arg in argv):
            return int(entry.name)
    return None


def validate_and_encode_us(records: list[dict]) -> float:
    """CPU µs per record of validation and encoding alone, on the first 20,000 records."""
    began = time.thread_time()
    for record in records[:20_000]:
        encode_event(validate_event(record))
    return (time.thread_time() - began) / min(len(records), 20_000) * 1e6


def run(bootstrap: str, records: list[dict], cpu_us: float, broker: int | None = None) -> None:
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
    create_topics(settings)
    count, size = len(records), len(orjson.dumps(records[0]))
    warm_up = sample_records(WARM_UP, first=count)
    load = os.getloadavg()[0]
    rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with EventProducer(settings) as producer:
        began = time.perf_counter()
        for record in warm_up:
            producer.emit(record)
        producer.flush()
        warm_up_s = time.perf_counter() - began
        began, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
        machine, broker_cpu = machine_busy_s(), process_cpu_s(broker)
        for record in records:
            producer.emit(record)
        producer.flush()
        elapsed = time.perf_counter() - began
        thread, process = time.thread_time() - thread, time.process_time() - process
        machine, broker_cpu = machine_busy_s() - machine, process_cpu_s(broker) - broker_cpu
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_event = 1e6 / count
    print(f"events: {count} x {size} B (JSON), Avro single-object, lz4, acks=all, idempotent")
    print(f"warm-up: {WARM_UP:,} records sent and acknowledged in {warm_up_s:.2f} s, not timed")
    print(f"throughput: {count / elapsed:,.0f} events/s ({elapsed:.2f} s, all acknowledged)")
    print(f"validate + encode alone, before the broker started: {cpu_us:.1f} us/event of CPU "
          f"(ceiling {1e6 / cpu_us:,.0f} events/s)")
    broker_part = f", broker {broker_cpu * per_event:.1f} us" if broker is not None else ""
    print(f"CPU per event: emitting thread {thread * per_event:.1f} us, librdkafka threads "
          f"{(process - thread) * per_event:.1f} us{broker_part}; whole machine {machine * per_event:.1f} us of "
          f"{os.cpu_count() * elapsed * per_event:.1f} us available ({os.cpu_count()} CPUs)")
    print(f"load average before the run: {load:.2f}")
    print(f"peak RSS: {peak_mib:.0f} MiB ({rss_before_mib:.0f} MiB before producing: interpreter and the "
          f"{count} prepared records)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    records = sample_records(args.events)
    cpu_us = validate_and_encode_us(records)
    if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
        run(bootstrap, records, cpu_us)
        return
    data_dir = Path(".cache/bench-stack").resolve()
    stack = LocalStack(StackSettings(data_dir=data_dir, kafka_port=free_port(), aws_port=free_port()))
    try:
        bootstrap = stack.up().bootstrap_servers
        run(bootstrap, records, cpu_us, broker_pid(data_dir))
    finally:
        stack.down()


if __name__ == "__main__":
    main()
