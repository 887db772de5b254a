"""What the benchmarks share: a `kafkatrail worker <role>` child (kafkatrail's own `WorkerProcess`, plus what a
benchmark reads from it: summed /metrics, peak memory, CPU time, log lines above info), and the stack they run on."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from kafkatrail.core.settings import StackSettings
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.worker_process import WorkerProcess

KAFKA_TIMEOUT_S = 30.0


class Worker(WorkerProcess):
    """`kafkatrail worker <role>` in a child process, /metrics on a free port, its output in a log file."""

    def __init__(self, role: str, env: dict[str, str], log_file: Path, *args: str) -> None:
        super().__init__(role, log_file, env, args)

    def scrape(self) -> Counter[str]:
        """Every sample of /metrics summed over its labels, by metric name; empty while it does not answer."""
        return Counter(self.totals())

    def check(self, deadline: float, waiting_for: str) -> None:
        if not self.alive():
            raise RuntimeError(f"the {self.role} worker exited with {self.process.returncode} while {waiting_for}:\n"
                               f"{self.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out while {waiting_for}; {self.role} worker log:\n{self.log_tail()}")

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def cpu_seconds(self) -> float:
        """User and system CPU time the worker has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def problems(self) -> list[str]:
        """Log lines above info level, and lines that are not JSON log records (tracebacks)."""
        return [line for line in self.log_file.read_text(errors="replace").splitlines() if _is_problem(line)]


def peak_rss_mib(pid: int) -> float:
    """The peak resident set (VmHWM) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def _is_problem(line: str) -> bool:
    try:
        return orjson.loads(line).get("level") not in ("debug", "info")
    except (orjson.JSONDecodeError, AttributeError):
        return True


def committed_to_end(consumer: Consumer, topic: str, partitions: int) -> bool:
    """Whether the group of `consumer` has committed every partition of `topic` up to its end."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    return all(max(tp.offset, 0) >= consumer.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT_S)[1]
               for tp in consumer.committed(tps, timeout=KAFKA_TIMEOUT_S))


def on_stack(parser: argparse.ArgumentParser, run: Callable[[str, str], None]) -> None:
    """Call `run(bootstrap servers, AWS endpoint URL)` on the broker in KAFKATRAIL_BOOTSTRAP_SERVERS and the AWS
    stand-in in AWS_ENDPOINT_URL, or on a private local stack started (and stopped) for it. The AWS clients of
    the benchmark and of its workers use that endpoint with the stand-in's test credentials."""
    if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
        if not (aws_endpoint_url := os.environ.get("AWS_ENDPOINT_URL")):
            parser.error("KAFKATRAIL_BOOTSTRAP_SERVERS is set: set AWS_ENDPOINT_URL to its AWS stand-in too")
        _use_aws(aws_endpoint_url)
        run(bootstrap, aws_endpoint_url)
        return
    with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-stack-") as data_dir:
        stack = LocalStack(StackSettings(data_dir=Path(data_dir), kafka_port=free_port(), aws_port=free_port()))
        try:
            endpoints = stack.up()
            _use_aws(endpoints.aws_endpoint_url)
            run(endpoints.bootstrap_servers, endpoints.aws_endpoint_url)
        finally:
            stack.down()


def _use_aws(endpoint_url: str) -> None:
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
