"""`kafkatrail worker ROLE` as a child process: the one way the demo, the benchmarks and the tests start workers.

The child is the real CLI (`python -m kafkatrail.cli worker ROLE`), with /metrics, /healthz and /readyz on a
port of its own, its output in a log file; `stop()` sends SIGTERM and, after a timeout, SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kafkatrail.core.metrics import scrape, totals
from kafkatrail.stack.processes import free_port

STOP_TIMEOUT_S = 30.0


class WorkerProcess:
    """One `kafkatrail worker ROLE` child process."""

    def __init__(self, role: str, log_file: Path, env: Mapping[str, str], args: Sequence[str] = (),
                 metrics_port: int | None = None) -> None:
        self.role = role
        self.log_file = log_file
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        command = [sys.executable, "-m", "kafkatrail.cli", "worker", role, "--metrics-port", str(self.metrics_port),
                   *args]
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.poll() is None

    def samples(self) -> dict[str, float]:
        """The worker's /metrics samples by name with labels; empty while it does not answer (or has none)."""
        return (scrape(self.url) or {}) if self.metrics_port else {}

    def totals(self) -> dict[str, float]:
        """The worker's /metrics samples summed over their labels, by metric name."""
        return totals(self.samples())

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> str:
        """SIGTERM, then SIGKILL if it has not exited after `timeout_s`; says how it ended."""
        if self.process.poll() is not None:
            return f"had exited with {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        try:
            code = self.process.wait(timeout_s)
            return f"exited with {code} {time.monotonic() - began:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            self.kill()
            return f"killed: still running {timeout_s:.0f} s after SIGTERM"

    def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        self.process.kill()
        self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
