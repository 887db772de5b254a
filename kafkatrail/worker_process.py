"""`kafkatrail worker ROLE` (or `kafkatrail api`) as a child process: the one way `kafkatrail run`, the demo, the
benchmarks and the tests start workers.

The child is the real CLI (`python -m kafkatrail.cli worker ROLE`), with /metrics, /healthz and /readyz on a
port of its own (the API: its own port, which serves /metrics and /healthz too), its output in a log file or,
without one, on the parent's stdout and stderr; `stop()` sends SIGTERM and, after a timeout, SIGKILL.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kafkatrail.core.metrics import scrape, totals
from kafkatrail.stack.processes import free_port

STOP_TIMEOUT_S = 30.0
API_ROLE = "api"
_PR_SET_PDEATHSIG = 1


def _tie_to_parent() -> Callable[[], None]:
    """A `preexec_fn`: in the child before exec, ask the kernel for SIGTERM when the parent dies, even by SIGKILL
    (Linux). libc's prctl is looked up here, in the parent: the child, forked from a process that may run other
    threads, only makes the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerProcess:
    """One `kafkatrail worker ROLE` (or `kafkatrail api`) child process.

    `log_file` None: the child writes to the parent's stdout and stderr. `tied`: the child gets SIGTERM when the
    parent dies (start a tied child from the thread that stays alive as long as the parent: the kernel watches
    the thread). `append`: add to `log_file` rather than start it anew (a restarted role keeps its history)."""

    def __init__(self, role: str, log_file: Path | None, env: Mapping[str, str], args: Sequence[str] = (),
                 metrics_port: int | None = None, tied: bool = False, append: bool = False) -> None:
        self.role = role
        self.log_file = log_file
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        if role == API_ROLE:
            command = [sys.executable, "-m", "kafkatrail.cli", "api", "--port", str(self.metrics_port), *args]
        else:
            command = [sys.executable, "-m", "kafkatrail.cli", "worker", role, "--metrics-port",
                       str(self.metrics_port), *args]
        preexec = _tie_to_parent() if tied and sys.platform == "linux" else None
        if log_file is None:
            self.process = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL, preexec_fn=preexec)
        else:
            with log_file.open("ab" if append else "wb") as log:
                self.process = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, preexec_fn=preexec)
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
        if self.log_file is None:
            return "(output on the parent's stdout and stderr)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
