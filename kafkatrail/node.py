"""`kafkatrail run`: every role of one node as child processes, kept running, and stopped together.

Each role is its own `kafkatrail worker ROLE` (or `kafkatrail api`) child, exactly what an operator would start
by hand, with its /metrics, /healthz and /readyz on its own port (the role's `metrics_port`; the API's `port`).
Processes rather than threads: the roles are CPU-bound Python loops, and one interpreter would hold them all
behind one lock; a crash of one role also stays its own.

`Node.run()` watches the children. A child that exits (crashed, killed, or ended by a Kafka failure its own
supervisor does not ride out) is logged and started again after a jittered back-off: 1 s, doubling to 30 s,
back to 1 s once a child has run for a minute. Every role is restart-safe (its kill tests), so a restart loses
and doubles nothing. `stop()` (SIGTERM or SIGINT to `kafkatrail run`) ends the watch: every child gets SIGTERM
at once and its clean stop, and one still running after `stop_timeout_s` is killed; nothing is left running.
Children are tied to the node (Linux: they get SIGTERM should the node itself be killed).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kafkatrail.core.settings import Settings
from kafkatrail.worker_process import API_ROLE, STOP_TIMEOUT_S, WorkerProcess

log = logging.getLogger(__name__)

# Every role one node can run, in start order: producers of a topic before its consumers. The settings section
# of each (its group and /metrics port) is the role's name with '_' for '-'.
NODE_ROLES = ("processors", "insights", "s3", "cloudwatch", "digests", "s3-insights", "cloudwatch-insights",
              "history", API_ROLE)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STEADY_AFTER_S = 60.0
WATCH_INTERVAL_S = 0.2


def role_port(settings: Settings, role: str) -> int:
    """Where `role` serves /metrics and /healthz: its section's `metrics_port` (the API: `api.port`)."""
    if role == API_ROLE:
        return settings.api.port
    return int(getattr(settings, role.replace("-", "_")).metrics_port)


def default_roles(settings: Settings) -> tuple[list[str], str | None]:
    """The roles `kafkatrail run` starts without --roles, and why one is left out (None when none is): every
    worker role, and the API once it knows who may call it (`api.credentials_file` or `api.allow_anonymous`)."""
    roles = [role for role in NODE_ROLES if role != API_ROLE]
    if settings.api.credentials_file is not None or settings.api.allow_anonymous:
        return [*roles, API_ROLE], None
    return roles, "api left out: set api.credentials_file (or api.allow_anonymous) to run it"


@dataclass
class Child:
    """One role's child process and its restart schedule."""

    role: str
    port: int
    process: WorkerProcess | None = None
    restarts: int = 0
    delay_s: float = FIRST_BACKOFF_S
    due: float = 0.0  # monotonic time of the next start while no process runs


class Node:
    """Runs `roles` as child processes with environment `env` until `stop()`, restarting each that exits.

    `ports`: each role's /metrics (API: listening) port. `log_dir`: one `<role>.log` per role (appended across
    restarts); None: the children write to the node's stdout and stderr."""

    def __init__(self, roles: Sequence[str], ports: Mapping[str, int], env: Mapping[str, str],
                 log_dir: Path | None = None, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        unknown = [role for role in roles if role not in NODE_ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(NODE_ROLES)})")
        self.children = {role: Child(role, ports[role]) for role in roles}
        self.env = dict(env)
        self.log_dir = log_dir
        self.stop_timeout_s = stop_timeout_s
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End `run()`: it stops every child (safe in a signal handler)."""
        self._stopped.set()

    def run(self) -> None:
        """Start every role, restart each that exits, until `stop()`; then stop them all."""
        try:
            while not self._stopped.is_set():
                now = time.monotonic()
                for child in self.children.values():
                    if child.process is None:
                        if now >= child.due:
                            self._start(child)
                    elif not child.process.alive():
                        self._exited(child, now)
                self._stopped.wait(WATCH_INTERVAL_S)
        finally:
            self.shutdown()

    def pids(self) -> dict[str, int]:
        """The process id of each role's running child."""
        return {role: child.process.process.pid for role, child in self.children.items()
                if child.process is not None and child.process.alive()}

    def shutdown(self) -> None:
        """SIGTERM every child at once, wait for each (SIGKILL after `stop_timeout_s`); log how each ended.

        One SIGTERM each: a second one could land while the child's interpreter shuts down, when Python has
        put back the default action, and kill it."""
        running = [child for child in self.children.values() if child.process is not None and child.process.alive()]
        for child in running:
            assert child.process is not None
            child.process.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        for child in running:
            assert child.process is not None
            try:
                code = child.process.process.wait(max(began + self.stop_timeout_s - time.monotonic(), 0.1))
                how = f"exited with {code} {time.monotonic() - began:.1f} s after SIGTERM"
            except subprocess.TimeoutExpired:
                child.process.kill()
                how = f"killed: still running {self.stop_timeout_s:.0f} s after SIGTERM"
            log.info("role stopped", extra={"role": child.role, "how": how})
        for child in self.children.values():
            child.process = None

    def _start(self, child: Child) -> None:
        log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = self.log_dir / f"{child.role}.log"
        child.process = WorkerProcess(child.role, log_file, self.env, metrics_port=child.port, tied=True,
                                      append=True)
        log.info("role started", extra={"role": child.role, "pid": child.process.process.pid,
                                        "port": child.port, "restarts": child.restarts})

    def _exited(self, child: Child, now: float) -> None:
        assert child.process is not None
        code = child.process.process.returncode
        ran_s = now - child.process.started
        if ran_s >= STEADY_AFTER_S:
            child.delay_s = FIRST_BACKOFF_S
        wait_s = child.delay_s * random.uniform(0.5, 1.0)
        child.due = now + wait_s
        child.delay_s = min(child.delay_s * 2, MAX_BACKOFF_S)
        child.restarts += 1
        child.process = None
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        log.error("role ended; restarting it", extra={"role": child.role, "how": how, "ran_s": round(ran_s, 1),
                                                      "retry_in_s": round(wait_s, 1), "restarts": child.restarts})


def node_environment(config: Path | None) -> dict[str, str]:
    """The children's environment: the node's own, with the settings file it was given (children load it too)."""
    env = dict(os.environ)
    if config is not None:
        env["KAFKATRAIL_CONFIG"] = str(config.resolve())
    return env
