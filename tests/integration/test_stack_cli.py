"""`kafkatrail stack ...` as an operator runs it: idempotent up, crash recovery, clean down, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from kafkatrail.stack import Endpoints
from kafkatrail.stack.aws_standin import is_our_standin
from kafkatrail.stack.processes import command_line, find_processes, free_port, is_running

REPOSITORY = Path(__file__).resolve().parents[2]
JAR_CACHE = REPOSITORY / ".cache" / "kafka"


def kafkatrail(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kafkatrail.cli", *args], capture_output=True, text=True,
                          cwd=REPOSITORY, env=env or dict(os.environ), timeout=180)


def exports(stdout: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in stdout.splitlines())
    return dict(pairs)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("kafkatrail: error:")]
    assert len(error_lines) == 1, result.stderr
    for word in words:
        assert word in error_lines[0]
    return error_lines[0]


@pytest.fixture
def stack_args(tmp_path: Path, stack: Endpoints) -> list[str]:
    """A second, private stack's options (the session's `stack` fixture has warmed the jar cache)."""
    return ["--data-dir", str(tmp_path / "stack"), "--cache-dir", str(JAR_CACHE),
            "--kafka-port", str(free_port()), "--aws-port", str(free_port())]


def our_processes(data_dir: Path, aws_port: str) -> list[int]:
    """Live brokers of this data dir and moto servers on this port, found by scanning /proc."""
    brokers = find_processes(str(data_dir.resolve() / "kafka" / "server.properties"))
    standins = [pid for pid in find_processes("moto.server") if is_our_standin(int(aws_port), command_line(pid))]
    return brokers + standins


def test_up_twice_starts_one_broker_and_down_leaves_no_process(stack_args: list[str], tmp_path: Path) -> None:
    first = kafkatrail("stack", "up", *stack_args)
    assert first.returncode == 0, first.stderr
    endpoints = exports(first.stdout)
    assert set(endpoints) == {"KAFKATRAIL_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                              "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert "ready on" in first.stderr and "RSS" in first.stderr
    assert AdminClient({"bootstrap.servers": endpoints["KAFKATRAIL_BOOTSTRAP_SERVERS"]}).list_topics(timeout=10)
    aws_port = endpoints["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    running = our_processes(tmp_path / "stack", aws_port)
    assert len(running) == 2

    second = kafkatrail("stack", "up", *stack_args)
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert exports(second.stdout) == endpoints
    assert our_processes(tmp_path / "stack", aws_port) == running

    assert kafkatrail("stack", "status", "--data-dir", str(tmp_path / "stack")).returncode == 0
    down = kafkatrail("stack", "down", "--data-dir", str(tmp_path / "stack"))
    assert down.returncode == 0, down.stderr
    assert our_processes(tmp_path / "stack", aws_port) == []
    assert not any(is_running(pid) for pid in running)
    assert kafkatrail("stack", "status", "--data-dir", str(tmp_path / "stack")).returncode == 3


def test_up_after_a_crash_cleans_stale_state_and_restarts(stack_args: list[str], tmp_path: Path) -> None:
    first = kafkatrail("stack", "up", *stack_args)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "stack" / "stack.json").read_text())
    for component in state.values():
        os.killpg(component["pid"], signal.SIGKILL)

    try:
        again = kafkatrail("stack", "up", *stack_args)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("found stale state") == 2
        bootstrap = exports(again.stdout)["KAFKATRAIL_BOOTSTRAP_SERVERS"]
        assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers
    finally:
        assert kafkatrail("stack", "down", "--data-dir", str(tmp_path / "stack")).returncode == 0


def test_a_taken_port_is_one_clear_line(stack_args: list[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        args = [*stack_args]
        args[args.index("--kafka-port") + 1] = port
        result = kafkatrail("stack", "up", *args)
    assert_one_clear_line(result, f"port {port}", "already in use", "--kafka-port")


def test_missing_java_is_one_clear_line(stack_args: list[str]) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    assert_one_clear_line(kafkatrail("stack", "up", *stack_args, env=env), "`java` is not on PATH")


def test_missing_maven_with_a_cold_cache_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = kafkatrail("stack", "fetch", "--cache-dir", str(tmp_path / "cold"), env=env)
    assert_one_clear_line(result, "`mvn` is not on PATH", "install Maven")


def test_maven_unable_to_resolve_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "KAFKATRAIL_STACK__KAFKA_VERSION": "3.0.404"}
    result = kafkatrail("stack", "fetch", "--cache-dir", str(tmp_path / "cache"), env=env)
    assert_one_clear_line(result, "Maven could not resolve Kafka 3.0.404", "maven.log")


def test_a_corrupted_cache_is_named_and_fetched_again(tmp_path: Path, stack: Endpoints) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(JAR_CACHE / "3.9.1", cache / "3.9.1")
    jar = next((cache / "3.9.1" / "lib").glob("kafka-clients-*.jar"))
    jar.write_bytes(jar.read_bytes()[:1000])

    result = kafkatrail("stack", "fetch", "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    assert f"is corrupt ({jar.name} does not match its checksum); fetching it again" in result.stderr
    refetched = (cache / "3.9.1" / "lib" / jar.name).read_bytes()
    assert refetched == (JAR_CACHE / "3.9.1" / "lib" / jar.name).read_bytes()


def test_a_warm_cache_does_not_run_maven(stack: Endpoints) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = kafkatrail("stack", "fetch", "--cache-dir", str(JAR_CACHE), env=env)
    assert result.returncode == 0, result.stderr
    assert "fetching" not in result.stderr
