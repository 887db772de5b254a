"""Start, recognise and stop the local stack's background server processes by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class StackError(RuntimeError):
    """Something the operator must fix; the message is one line saying what is wrong and what to do."""


def start_detached(argv: Sequence[str], log_file: Path, cwd: Path | None = None) -> int:
    """Start a server in its own session (it outlives the CLI) with output appended to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    return process.pid


def _reap(pid: int) -> None:
    """Collect an exited child of this process so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int) -> bool:
    """True while pid is a live process (zombies count as gone)."""
    _reap(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> list[str]:
    """The argv of a live process, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def resident_memory_mib(pid: int) -> float:
    """Resident set size of a live process in MiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def find_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(marker in arg for arg in command_line(int(entry.name))):
            found.append(int(entry.name))
    return [pid for pid in found if is_running(pid)]


def stop(pid: int, timeout_s: float) -> bool:
    """SIGTERM the process group, then SIGKILL it after timeout_s. Returns True if it needed SIGKILL."""
    if not is_running(pid):
        return False
    _signal_group(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return False
    _signal_group(pid, signal.SIGKILL)
    _wait_gone(pid, 10.0)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.1)
    return not is_running(pid)


def ensure_port_free(port: int, what: str, flag: str) -> None:
    """Raise StackError if something already listens on 127.0.0.1:port.

    The probe binds with SO_REUSEADDR, as the broker and moto do: connections of a process that just died
    linger in TIME_WAIT for a minute, and they must not keep a restarted broker off its port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(
                f"port {port} on 127.0.0.1 is already in use, so the {what} cannot listen there; "
                f"choose another with {flag} or stop whatever holds it (ss -ltnp 'sport = :{port}')"
            ) from None


def answers(port: int, timeout_s: float) -> bool:
    """True if something accepts a TCP connection on 127.0.0.1:port within `timeout_s`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, joined with ' | ' to fit one error line."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:])
