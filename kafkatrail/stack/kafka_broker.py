"""One Apache Kafka broker in KRaft mode (broker and controller in one JVM) on 127.0.0.1.

Plaintext and open by default; with `sasl` it authenticates and authorizes (`kafkatrail/stack/kafka_sasl.py`).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from kafkatrail.core.settings import shipped_file
from kafkatrail.stack import kafka_sasl
from kafkatrail.stack.processes import StackError, is_running, start_detached, tail

LOG4J_CONFIG = shipped_file("kafka/log4j.properties")
MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True)
class BrokerLayout:
    """Files of one broker under the stack's data dir."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.root / "data"

    @property
    def server_logs(self) -> Path:
        return self.root / "logs"

    @property
    def console_log(self) -> Path:
        return self.root / "logs" / "console.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    @property
    def sasl(self) -> kafka_sasl.SaslFiles:
        return kafka_sasl.SaslFiles(self.root / "sasl")

    @property
    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").is_file()

    @property
    def mode_file(self) -> Path:
        """`sasl` or `plaintext`: how the storage was formatted (absent: before SASL mode existed, plaintext)."""
        return self.root / "storage.mode"

    def formatted_with_sasl(self) -> bool:
        return self.mode_file.is_file() and self.mode_file.read_text().strip() == "sasl"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "`java` is not on PATH; Kafka's broker needs Java 17 (apt-get install openjdk-17-jre-headless)"
        )
    return java


def _server_properties(layout: BrokerLayout, port: int, controller_port: int, sasl: bool = False) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(layout.log_dir.resolve()),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": "2097152",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "auto.create.topics.enable": "false",
    }
    if sasl:
        password = layout.sasl.client_config()["sasl.password"]
        settings.update(kafka_sasl.server_properties(port, controller_port, password))
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _cluster_id(layout: BrokerLayout) -> str:
    if layout.cluster_id_file.is_file():
        return layout.cluster_id_file.read_text().strip()
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's own generator: a leading '-' reads as a CLI option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    layout.cluster_id_file.write_text(cluster_id)
    return cluster_id


def _jvm_args(java: str, classpath: str, layout: BrokerLayout, heap_mb: int) -> list[str]:
    return [
        java, "-Xms128m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", f"-Dkafka.logs.dir={layout.server_logs.resolve()}",
        f"-Dlog4j.configuration=file:{LOG4J_CONFIG}", "-cp", classpath,
    ]


def _check_same_mode(layout: BrokerLayout, sasl: bool) -> None:
    """Storage formatted with SASL holds the admin's credential, and storage formatted without it cannot get one:
    a data dir keeps the mode it was first started in."""
    if layout.formatted and layout.formatted_with_sasl() != sasl:
        was, asked = ("with", "without") if layout.formatted_with_sasl() else ("without", "with")
        raise StackError(
            f"the broker storage in {layout.root} was formatted {was} SASL and cannot be started {asked} it; "
            "run `kafkatrail stack down` and use another --data-dir (or delete this one)"
        )


def _format(layout: BrokerLayout, jvm: list[str], sasl: bool) -> None:
    if not sasl:
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(layout), "-c", str(layout.config),
             "--ignore-formatted"],
            capture_output=True, text=True, timeout=120,
        )
        output = fmt.stderr or fmt.stdout
    else:  # the admin's SCRAM credential goes in with the format, read from a 0600 argument file
        arguments = layout.sasl.format_arguments(layout.config, _cluster_id(layout))
        try:
            fmt = subprocess.run([*jvm, f"@{arguments}"], capture_output=True, text=True, timeout=120)
        finally:
            arguments.unlink(missing_ok=True)
        output = (fmt.stderr or fmt.stdout).replace(layout.sasl.client_config()["sasl.password"], "<password>")
    if fmt.returncode != 0:
        detail = output.strip().splitlines()[-1:] or ["no output"]
        raise StackError(
            f"formatting Kafka storage in {layout.log_dir} failed: {detail[0][:300]}; "
            "if the jar cache is damaged, delete it and run again"
        )


def start_broker(layout: BrokerLayout, classpath: str, port: int, controller_port: int, heap_mb: int,
                 sasl: bool = False) -> int:
    """Write the config, format storage on first use and start the broker; returns its PID."""
    java = _java()
    _check_same_mode(layout, sasl)
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout.server_logs.mkdir(parents=True, exist_ok=True)
    kafka_sasl.write_private(layout.config, _server_properties(layout, port, controller_port, sasl))
    jvm = _jvm_args(java, classpath, layout, heap_mb)
    if not layout.formatted:
        _format(layout, jvm, sasl)
        layout.mode_file.write_text("sasl\n" if sasl else "plaintext\n")
    return start_detached([*jvm, MAIN_CLASS, str(layout.config)], layout.console_log)


def is_our_broker(layout: BrokerLayout, argv: list[str]) -> bool:
    """True if argv is this layout's broker (so a recycled PID is never mistaken for it)."""
    return MAIN_CLASS in argv and str(layout.config) in argv


def wait_until_ready(pid: int, layout: BrokerLayout, bootstrap: str, timeout_s: float,
                     client_config: dict[str, Any] | None = None) -> None:
    """Poll an AdminClient until the broker answers metadata requests; raise if it dies or times out."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000, "log_level": 0,
                         **(client_config or {})})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            raise StackError(
                f"the Kafka broker exited while starting: {tail(layout.console_log, 2)} "
                f"(logs: {layout.server_logs}); if the jar cache is damaged, delete it and run again"
            )
        try:
            metadata = admin.list_topics(timeout=1)
            if metadata.brokers:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise StackError(
        f"the Kafka broker did not answer on {bootstrap} within {timeout_s:.0f} s (logs: {layout.server_logs})"
    )
