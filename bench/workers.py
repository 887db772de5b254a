"""A `kafkatrail worker <role>` subprocess for the benchmarks: /metrics on a free port, output in a log file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import orjson

from kafkatrail.stack.processes import free_port

STOP_TIMEOUT_S = 30.0


class Worker:
    """`kafkatrail worker <role>` in a subprocess, /metrics on a free port, its output in a log file."""

    def __init__(self, role: str, env: dict[str, str], log_file: Path, *args: str) -> None:
        self.role = role
        self.log_file = log_file
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kafkatrail.cli", "worker", role, "--metrics-port", str(port), *args],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def scrape(self) -> Counter[str]:
        """Every sample of /metrics summed over its labels, by metric name; empty while it does not answer."""
        totals: Counter[str] = Counter()
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return totals
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                totals[name.partition("{")[0]] += float(value)
        return totals

    def check(self, deadline: float, waiting_for: str) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the {self.role} worker exited with {self.process.returncode} while {waiting_for}:\n"
                               f"{self.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out while {waiting_for}; {self.role} worker log:\n{self.log_tail()}")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def stop(self) -> str:
        """SIGTERM, then SIGKILL if it has not exited after STOP_TIMEOUT_S; says how it ended."""
        if self.process.poll() is not None:
            return f"had exited with {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
            return f"exited with {code} {time.monotonic() - began:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"killed: still running {STOP_TIMEOUT_S:.0f} s after SIGTERM"

    def problems(self) -> list[str]:
        """Log lines above info level, and lines that are not JSON log records (tracebacks)."""
        return [line for line in self.log_file.read_text(errors="replace").splitlines() if _is_problem(line)]

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _is_problem(line: str) -> bool:
    try:
        return orjson.loads(line).get("level") not in ("debug", "info")
    except (orjson.JSONDecodeError, AttributeError):
        return True
