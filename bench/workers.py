"""A `kafkatrail worker <role>` child for the benchmarks: kafkatrail's own `WorkerProcess`, plus what a benchmark
reads from it (summed /metrics, peak memory, log lines above info)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import orjson

from kafkatrail.worker_process import WorkerProcess


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
