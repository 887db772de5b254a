"""The embedded local stack: one real Kafka broker and the AWS stand-in, managed by PID through a state file.

`LocalStack.up()` is idempotent: what already runs (and is really ours: the PID's command line is
checked, so a recycled PID is never adopted) is kept; state left by a crashed run is detected and cleaned.
With `stack.sasl` the broker authenticates clients and authorizes them by ACL
(`kafkatrail/stack/kafka_sasl.py`); `up` then also gives each producer principal it is told of its
credential and its topic, every time it runs.
"""

from __future__ import annotations

import fcntl
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from kafkatrail.core.settings import StackSettings
from kafkatrail.stack import aws_standin, kafka_broker, kafka_sasl
from kafkatrail.stack.kafka_jars import KafkaJars
from kafkatrail.stack.processes import (
    StackError,
    answers,
    command_line,
    ensure_port_free,
    free_port,
    is_running,
    resident_memory_mib,
    stop,
)

__all__ = ["ComponentState", "Endpoints", "LocalStack", "StackError"]

KAFKA = "kafka"
AWS = "aws"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class ComponentState:
    """A running server of the stack, as recorded in the state file."""

    pid: int
    port: int
    started_at: float
    controller_port: int | None = None
    sasl: bool = False


@dataclass(frozen=True)
class Endpoints:
    """Where clients reach the stack."""

    bootstrap_servers: str
    aws_endpoint_url: str
    client_config_file: Path | None = None  # SASL mode: the admin's client properties (0600 JSON)

    def client_config(self) -> dict[str, str]:
        """The librdkafka properties a client of this broker needs besides `bootstrap.servers` (SASL: the admin's)."""
        if self.client_config_file is None:
            return {}
        config: dict[str, str] = json.loads(self.client_config_file.read_text())
        return config

    def shell_exports(self) -> str:
        """`export` lines a shell can eval; the credentials are the stand-in's dummy ones. In SASL mode the admin's
        client properties are read from their file when the shell evaluates the line, so no password is printed."""
        lines = [
            f"export {name}={value}"
            for name, value in (
                ("KAFKATRAIL_BOOTSTRAP_SERVERS", self.bootstrap_servers),
                ("AWS_ENDPOINT_URL", self.aws_endpoint_url),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
            )
        ]
        if self.client_config_file is not None:
            lines.append(f'export KAFKATRAIL_KAFKA_CLIENT_CONFIG="$(cat {shlex.quote(str(self.client_config_file))})"')
        return "\n".join(lines)


class LocalStack:
    """Start, inspect and stop the local Kafka broker and AWS stand-in of one data dir."""

    def __init__(self, settings: StackSettings, say: Callable[[str], None] = _stderr,
                 producers: Mapping[str, str] | None = None) -> None:
        """`producers`: in SASL mode, each producer principal and the one topic it may write."""
        self.settings = settings
        self.say = say
        self.producers = dict(producers or {})
        self.data_dir = settings.data_dir.resolve()
        self.state_file = self.data_dir / "stack.json"
        self.broker = kafka_broker.BrokerLayout(self.data_dir / "kafka")
        self.aws_log = self.data_dir / "aws-standin.log"
        self.jars = KafkaJars(settings.cache_dir.resolve(), settings.kafka_version, settings.pom)

    def endpoints(self) -> Endpoints:
        """Where the running stack (or, if stopped, the configured one) is reached."""
        return self._endpoints_of(self._live_state())

    def _endpoints_of(self, state: dict[str, ComponentState]) -> Endpoints:
        kafka_port = state[KAFKA].port if KAFKA in state else self.settings.kafka_port
        aws_port = state[AWS].port if AWS in state else self.settings.aws_port
        sasl = state[KAFKA].sasl if KAFKA in state else self.settings.sasl
        return Endpoints(f"127.0.0.1:{kafka_port}", f"http://127.0.0.1:{aws_port}",
                         self.broker.sasl.admin_config_file if sasl else None)

    def up(self, aws: bool = True) -> Endpoints:
        """Bring up whatever part of the stack is not running (the broker alone with `aws=False`); return its
        endpoints. In SASL mode, give every producer principal its credential and its topic."""
        with self._lock():
            state = self._live_state(report_stale=True)
            self._check_same_ports(state)
            if KAFKA in state and AWS in state:
                self.say(f"local stack already running (broker pid {state[KAFKA].pid}, "
                         f"AWS stand-in pid {state[AWS].pid})")
            if KAFKA not in state:
                state[KAFKA] = self._start_kafka(state)
            if aws and AWS not in state:
                state[AWS] = self._start_aws(state)
            endpoints = self._endpoints_of(state)
            if self.settings.sasl:
                files = kafka_sasl.grant_producers(endpoints.bootstrap_servers, self.broker.sasl, self.producers)
                for principal, path in files.items():
                    self.say(f"producer {principal} may write {self.producers[principal]} only; "
                             f"its client properties are in {path}")
            return endpoints

    def down(self) -> list[str]:
        """Stop every server of the stack (SIGTERM, then SIGKILL after the stop timeout)."""
        stopped = []
        with self._lock():
            for name, component in self._read_state().items():
                if self._is_ours(name, component):
                    killed = stop(component.pid, self.settings.stop_timeout_s)
                    how = "killed after the stop timeout" if killed else "stopped"
                    stopped.append(f"{name} (pid {component.pid}) {how}")
            self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self, timeout_s: float = 5.0) -> dict[str, str]:
        """A line per component: running with pid, port, uptime and memory; not answering (its process runs, its
        port accepts no connection within `timeout_s`); or stopped."""
        state = self._live_state()
        lines = {}
        for name in (KAFKA, AWS):
            component = state.get(name)
            if component is None:
                lines[name] = "stopped"
                continue
            if not answers(component.port, timeout_s):
                lines[name] = (f"not answering: pid {component.pid} runs, but 127.0.0.1:{component.port} accepts no "
                               f"connection within {timeout_s:g} s (logs under {self.settings.data_dir})")
                continue
            uptime = time.time() - component.started_at
            lines[name] = (f"running: pid {component.pid}, 127.0.0.1:{component.port}, up {uptime:.0f} s, "
                           f"RSS {resident_memory_mib(component.pid):.0f} MiB" + (", SASL" if component.sasl else ""))
        return lines

    def fetch(self) -> Path:
        """Make sure the Kafka jars are in the cache (Maven runs only when they are absent or corrupt)."""
        return self.jars.ensure(self.say)

    def _start_kafka(self, state: dict[str, ComponentState]) -> ComponentState:
        port = self.settings.kafka_port
        sasl = self.settings.sasl
        ensure_port_free(port, "Kafka broker", "--kafka-port")
        self.fetch()
        controller_port = free_port()
        return self._launch(
            state, KAFKA, port, controller_port,
            start=lambda: kafka_broker.start_broker(self.broker, self.jars.classpath, port, controller_port,
                                                    self.settings.kafka_heap_mb, sasl),
            wait_ready=lambda pid: kafka_broker.wait_until_ready(
                pid, self.broker, f"127.0.0.1:{port}", self.settings.start_timeout_s,
                self.broker.sasl.client_config() if sasl else None),
            ready=f"kafka broker {self.settings.kafka_version} ready on 127.0.0.1:{port}"
                  + (" (SASL_PLAINTEXT, SCRAM-SHA-512, ACLs)" if sasl else ""),
            sasl=sasl,
        )

    def _start_aws(self, state: dict[str, ComponentState]) -> ComponentState:
        port = self.settings.aws_port
        ensure_port_free(port, "AWS stand-in", "--aws-port")
        return self._launch(
            state, AWS, port, None,
            start=lambda: aws_standin.start_aws_standin(port, self.aws_log),
            wait_ready=lambda pid: aws_standin.wait_until_ready(pid, port, self.aws_log,
                                                                self.settings.start_timeout_s),
            ready=f"AWS stand-in (moto) ready on http://127.0.0.1:{port}",
        )

    def _launch(self, state: dict[str, ComponentState], name: str, port: int, controller_port: int | None,
                start: Callable[[], int], wait_ready: Callable[[int], None], ready: str,
                sasl: bool = False) -> ComponentState:
        """Start a server, record it at once (so `down` can stop it), wait for it; undo both if it fails."""
        began = time.monotonic()
        pid = start()
        component = ComponentState(pid, port, time.time(), controller_port, sasl)
        self._write_state({**state, name: component})
        try:
            wait_ready(pid)
        except StackError:
            stop(pid, self.settings.stop_timeout_s)
            self._write_state(state)
            raise
        self.say(f"{ready} in {time.monotonic() - began:.1f} s (pid {pid}, RSS {resident_memory_mib(pid):.0f} MiB)")
        return component

    def _check_same_ports(self, state: dict[str, ComponentState]) -> None:
        wanted = {KAFKA: self.settings.kafka_port, AWS: self.settings.aws_port}
        if KAFKA in state and state[KAFKA].sasl != self.settings.sasl:
            raise StackError(
                f"the local stack in {self.data_dir} already runs its broker "
                f"{'with' if state[KAFKA].sasl else 'without'} SASL; run `kafkatrail stack down` first to change it"
            )
        for name, component in state.items():
            if component.port != wanted[name]:
                raise StackError(
                    f"the local stack in {self.data_dir} already runs {name} on port {component.port}, not "
                    f"{wanted[name]}; run `kafkatrail stack down` first to change ports"
                )

    def _is_ours(self, name: str, component: ComponentState) -> bool:
        if not is_running(component.pid):
            return False
        argv = command_line(component.pid)
        if name == KAFKA:
            return kafka_broker.is_our_broker(self.broker, argv)
        return aws_standin.is_our_standin(component.port, argv)

    def _live_state(self, report_stale: bool = False) -> dict[str, ComponentState]:
        state = self._read_state()
        live = {name: component for name, component in state.items() if self._is_ours(name, component)}
        if report_stale and live != state:
            for name in state.keys() - live.keys():
                self.say(f"found stale state: {name} (pid {state[name].pid}) from an earlier run is gone; "
                         "cleaning up and starting it again")
            self._write_state(live)
        return live

    def _read_state(self) -> dict[str, ComponentState]:
        try:
            raw = json.loads(self.state_file.read_text())
            return {name: ComponentState(**fields) for name, fields in raw.items() if name in (KAFKA, AWS)}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError):
            self.say(f"ignoring unreadable state file {self.state_file}")
            return {}

    def _make_data_dir(self) -> None:
        """The data dir holds the broker's storage, that is audit events: only its owner may enter it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)

    def _write_state(self, state: dict[str, ComponentState]) -> None:
        self._make_data_dir()
        staging = self.state_file.with_suffix(".tmp")
        staging.write_text(json.dumps({name: asdict(c) for name, c in state.items()}, indent=1))
        staging.replace(self.state_file)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self._make_data_dir()
        with (self.data_dir / "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
