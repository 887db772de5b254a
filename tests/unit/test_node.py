"""`kafkatrail run`'s supervisor (`kafkatrail.node.Node`) with stand-in children (small Python processes): a role
that ends is restarted with a growing back-off, a stop sends each child one SIGTERM and kills one that ignores it,
and the roles it runs by default."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkatrail import node
from kafkatrail.core.settings import Settings
from kafkatrail.node import NODE_ROLES, Node, default_roles, role_port

# What each stand-in role does: exit at once, count the SIGTERMs it gets and exit cleanly, or ignore SIGTERM.
SCRIPTS = {
    "processors": "import sys; sys.exit(3)",
    "s3": "import signal, sys, time\n"
          "def stop(*_):\n    open(sys.argv[1], 'a').write('TERM\\n'); time.sleep(0.3); sys.exit(0)\n"
          "signal.signal(signal.SIGTERM, stop)\nopen(sys.argv[1], 'a').write('up\\n')\nwhile True: time.sleep(0.1)",
    "history": "import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               "open(sys.argv[1], 'a').write('up\\n')\nwhile True: time.sleep(0.1)",
}


class StandIn:
    """Takes WorkerProcess's place: the role's script, its notes in `<log_dir>/<role>.notes`."""

    def __init__(self, role: str, log_file: Path | None, env: Any, metrics_port: int, tied: bool,
                 append: bool) -> None:
        assert log_file is not None and tied and append
        self.process = subprocess.Popen([sys.executable, "-c", SCRIPTS[role], str(log_file.with_suffix(".notes"))])
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node, "WorkerProcess", StandIn)


@pytest.fixture
def running(stand_ins: None, tmp_path: Path) -> Iterator[tuple[Node, threading.Thread]]:
    supervisor = Node(["processors", "s3", "history"], {"processors": 1, "s3": 2, "history": 3}, {},
                      log_dir=tmp_path, stop_timeout_s=2)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    yield supervisor, thread
    supervisor.stop()
    thread.join(30)


def test_a_role_that_ends_is_restarted_with_a_growing_back_off(
        running: tuple[Node, threading.Thread], caplog: pytest.LogCaptureFixture) -> None:
    supervisor, _ = running
    caplog.set_level(logging.INFO, logger="kafkatrail.node")
    deadline = time.monotonic() + 20
    while supervisor.children["processors"].restarts < 3:
        assert time.monotonic() < deadline, "the role that exits was not restarted three times"
        time.sleep(0.05)
    ended = [r for r in caplog.records if r.getMessage() == "role ended; restarting it"]
    assert [r.__dict__["how"] for r in ended[:3]] == ["exited with 3"] * 3
    waits = [r.__dict__["retry_in_s"] for r in ended[:3]]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0, waits
    assert supervisor.children["s3"].restarts == 0


def test_a_stop_sends_one_sigterm_each_and_kills_a_role_that_ignores_it(
        running: tuple[Node, threading.Thread], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor, thread = running
    caplog.set_level(logging.INFO, logger="kafkatrail.node")
    deadline = time.monotonic() + 20
    while not ((tmp_path / "s3.notes").exists() and (tmp_path / "history.notes").exists()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = supervisor.pids()
    assert {"s3", "history"} <= set(pids)
    supervisor.stop()
    thread.join(30)
    assert not thread.is_alive()
    stopped = {r.__dict__["role"]: r.__dict__["how"] for r in caplog.records if r.getMessage() == "role stopped"}
    assert stopped["s3"].startswith("exited with 0")
    assert stopped["history"] == "killed: still running 2 s after SIGTERM"
    assert (tmp_path / "s3.notes").read_text() == "up\nTERM\n"  # one SIGTERM, not a second during its exit
    for pid in (pids["s3"], pids["history"]):
        assert not Path(f"/proc/{pid}").exists() or "(Z)" in Path(f"/proc/{pid}/stat").read_text()


def test_the_default_roles_leave_the_api_out_until_it_knows_its_callers(tmp_path: Path) -> None:
    roles, why = default_roles(Settings())
    assert roles == [role for role in NODE_ROLES if role != "api"] and why and "api.credentials_file" in why
    roles, why = default_roles(Settings(api={"credentials_file": tmp_path / "keys.toml"}))
    assert roles == list(NODE_ROLES) and why is None


def test_each_role_serves_on_its_own_port_by_default() -> None:
    ports = [role_port(Settings(), role) for role in NODE_ROLES]
    assert len(set(ports)) == len(ports)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'lake'"):
        Node(["lake"], {"lake": 1}, {})
