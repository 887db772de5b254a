"""Every command, with the broker down, AWS down or settings that do not parse: one line, exit 2, within its
--timeout, no traceback, and never a byte of a secret that was in its environment. A worker with the broker
down keeps retrying, in JSON log lines, and /readyz and its metrics say so.

No stack is needed: "down" is a port nothing listens on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from kafkatrail.cli import build_parser
from kafkatrail.core.metrics import scrape
from kafkatrail.stack.processes import free_port
from kafkatrail.worker_process import WorkerProcess

KAFKA_SECRET = "kt-sasl-password-7f3a9c"
AWS_SECRET = "kt-aws-secret-key-91c2e4"
TIMEOUT_S = 3
STARTUP_S = 6  # the least start-up allowance (seconds), whatever this run measured
SINCE = "2024-01-01T00:00:00Z"
TRAIL_ARN = "arn:aws:cloudtrail:us-east-1:111111111111:trail/audit"


class Case(NamedTuple):
    command: tuple[str, ...]
    condition: str  # broker down, AWS down, bad settings
    words: tuple[str, ...]  # in the one line


def commands(tmp: Path) -> dict[str, tuple[str, ...]]:
    """Arguments that would run each command, by its name (`stack up`, `produce`, ...)."""
    records = tmp / "records.json"
    records.write_text('{"Records": []}')
    stack = ("--data-dir", str(tmp / "stack"))
    return {
        "stack up": ("stack", "up", *stack, "--kafka-port", str(free_port()), "--aws-port", str(free_port())),
        "stack down": ("stack", "down", *stack),
        "stack status": ("stack", "status", *stack),
        "stack fetch": ("stack", "fetch", "--cache-dir", str(tmp / "jars")),
        "topics create": ("topics", "create"),
        "produce": ("produce", str(records)),
        "simulate": ("simulate", "--count", "5"),
        "trails apply": ("trails", "apply", "deploy/trails.example.yaml"),
        "trails list": ("trails", "list"),
        "worker": ("worker", "processors", "--metrics-port", "0"),
        "run": ("run", "--log-dir", str(tmp / "node-logs")),
        "status": ("status",),
        "insights evaluate": ("insights", "evaluate", "--days", "1", "--warmup-days", "1"),
        "history lookup": ("history", "lookup", "--account", "111111111111"),
        "api": ("api", "--port", "0"),
        "validate-logs": ("validate-logs", "--s3-bucket", "audit-logs", "--start-time", SINCE),
        "validate-logs --trail-arn": ("validate-logs", "--trail-arn", TRAIL_ARN, "--start-time", SINCE),
        "demo": ("demo", "--seconds", "1"),
    }


def leaf_commands() -> set[str]:
    """Every command the parser knows, as `stack up`, `produce`, ..."""
    def walk(parser: object, prefix: tuple[str, ...]) -> set[str]:
        actions = [a for a in getattr(parser, "_actions", []) if hasattr(a, "choices") and isinstance(a.choices, dict)
                   and a.dest.endswith("command")]
        if not actions:
            return {" ".join(prefix)}
        return {name for action in actions for sub, child in action.choices.items()
                for name in walk(child, (*prefix, sub))}
    return walk(build_parser(), ())


KAFKA_COMMANDS = ("topics create", "produce", "simulate", "trails apply", "trails list", "run", "status")
AWS_COMMANDS = ("validate-logs", "validate-logs --trail-arn")


def cases(tmp: Path, dead: str) -> list[Case]:
    given = commands(tmp)
    table = [Case(given[name], "broker down", (f"127.0.0.1:{dead}", "kafkatrail stack up",
                                               "KAFKATRAIL_BOOTSTRAP_SERVERS")) for name in KAFKA_COMMANDS]
    table += [Case(given[name], "AWS down", (f"http://127.0.0.1:{dead}", "AWS_ENDPOINT_URL")) for name in AWS_COMMANDS]
    table += [Case(command, "bad settings", ("KAFKATRAIL_KAFKA_CLIENT_CONFIG", "not valid JSON", "line 1 column"))
              for command in given.values()]
    return table


def environment(condition: str, dead: str) -> dict[str, str]:
    sasl = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
            "sasl.password": KAFKA_SECRET}
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKATRAIL_", "AWS_"))}
    env.update({
        "KAFKATRAIL_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}" if condition == "broker down" else "127.0.0.1:9",
        "KAFKATRAIL_KAFKA_CLIENT_CONFIG": json.dumps(sasl)[:-1] if condition == "bad settings" else json.dumps(sasl),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead}", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
    })
    return env


def run(case: Case, dead: str) -> tuple[Case, subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "kafkatrail.cli", *case.command, *timeout_option(case.command)],
                            capture_output=True, text=True, env=environment(case.condition, dead), timeout=60)
    return case, result, time.monotonic() - started


def timeout_option(command: tuple[str, ...]) -> tuple[str, ...]:
    """--timeout for the commands that take it (those that wait for Kafka or AWS)."""
    parser = build_parser()
    try:
        parser.parse_args([*command, "--timeout", str(TIMEOUT_S)])
    except SystemExit:
        return ()
    return ("--timeout", str(TIMEOUT_S))


def allowed_seconds(outcomes: list[tuple[Case, subprocess.CompletedProcess[str], float]]) -> dict[str, float]:
    """How long each condition may take. A command with bad settings never waits: each takes at most three times
    their median (the demo imports the most; under a load of 4 it took 12 s), and the slowest of them is this
    run's start-up time (an interpreter importing boto3 and confluent-kafka: seconds on a busy machine); one that
    waits for a broker or AWS may take its --timeout on top of that."""
    startups = sorted(seconds for case, _, seconds in outcomes if case.condition == "bad settings")
    startup = max(STARTUP_S, startups[-1])
    return {"bad settings": max(STARTUP_S, 3 * startups[len(startups) // 2]),
            "broker down": TIMEOUT_S + startup, "AWS down": TIMEOUT_S + startup}


def test_the_table_covers_every_command(tmp_path: Path) -> None:
    assert {" ".join(name.split(" --")[:1]) for name in commands(tmp_path)} == leaf_commands()


def test_every_command_fails_in_one_line_with_exit_2_and_no_secret(tmp_path: Path) -> None:
    dead = str(free_port())
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda case: run(case, dead), cases(tmp_path, dead)))
    allowed = allowed_seconds(outcomes)
    problems = []
    for case, result, seconds in outcomes:
        output = result.stdout + result.stderr
        lines = result.stderr.splitlines()
        checks = {
            "exit 2": result.returncode == 2,
            "one line": len(lines) == 1 and lines[0].startswith("kafkatrail: error: ") and not result.stdout,
            "no traceback": "Traceback" not in output,
            "no raw librdkafka line": "%3|" not in output and "%4|" not in output,
            "no secret": KAFKA_SECRET not in output and AWS_SECRET not in output,
            "in time": seconds < allowed[case.condition],
            "says what and where": all(word in result.stderr for word in case.words),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            problems.append(f"{' '.join(case.command[:2])} / {case.condition}: {failed}: "
                            f"exit {result.returncode} in {seconds:.1f} s: {output[-600:]!r}")
    assert not problems, "\n".join(problems)


def test_a_worker_with_the_broker_down_retries_in_json_and_is_not_ready(tmp_path: Path) -> None:
    dead = str(free_port())
    env = environment("broker down", dead)
    worker = WorkerProcess("processors", tmp_path / "worker.log", env)
    try:
        deadline = time.monotonic() + 30
        readyz = ""
        while time.monotonic() < deadline and readyz != "kafka unreachable":
            time.sleep(0.5)
            try:
                readyz = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/readyz", timeout=2).read()
            except urllib.error.HTTPError as exc:
                readyz = exc.read().decode().strip()
            except OSError:
                continue
        assert readyz == "kafka unreachable", worker.log_tail()
        assert (scrape(worker.url) or {}).get('kafkatrail_dependency_up{dependency="kafka"}') == 0.0
    finally:
        worker.kill()  # a stop is not what this test is about, and SIGTERM waits for the trails feed's metadata
    text = (tmp_path / "worker.log").read_text()
    entries = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    warnings = [e for e in entries if e["logger"] == "kafkatrail.kafka" and e["level"] == "warning"]
    # the unreachable broker is named in a warning (under load another librdkafka warning may come first)
    assert any(e.get("broker") == f"127.0.0.1:{dead}" for e in warnings), text[-2000:]
    assert KAFKA_SECRET not in text and AWS_SECRET not in text


def test_the_wait_is_the_timeout_given(tmp_path: Path) -> None:
    """--timeout is the wait, not a fixed one: twice the table's timeout waits at least that long."""
    dead = str(free_port())
    command = commands(tmp_path)["produce"]
    env = environment("broker down", dead)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "kafkatrail.cli", *command, "--timeout", str(2 * TIMEOUT_S)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert time.monotonic() - started >= 2 * TIMEOUT_S
    assert f"no answer within {2 * TIMEOUT_S} s" in result.stderr
