"""Fixtures of the pipeline's integration tests: worker subprocesses on fresh topics, pointed at the stand-in."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics
from kafkatrail.stack import Endpoints
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import TRAILS, Workers, fresh_settings, pipeline_settings

AWSCLI_VERSION = "1.46.2"
AWSCLI_VENV = Path(".cache/awscli-venv")


@pytest.fixture
def aws_endpoint(stack: Endpoints) -> str:
    return stack.aws_endpoint_url


@pytest.fixture
def workers(stack: Endpoints, tmp_path: Path) -> Iterator[Workers]:
    """Workers on fresh topics (1 s S3 flushes), stopped at the end of the test."""
    with Workers(pipeline_settings(stack), tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url}) as running:
        yield running


@pytest.fixture
def settings(stack: Endpoints) -> Settings:
    """Fresh topics and consumer group per test, with the three organization trails applied (a test module may
    define `settings` of its own)."""
    settings = fresh_settings(stack.bootstrap_servers)
    create_topics(settings)
    apply_trails(settings, TRAILS)
    return settings


@pytest.fixture
def processors(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Processors (and other roles) on `settings`, stopped at the end of the test."""
    with Workers(settings, tmp_path) as workers:
        yield workers


@pytest.fixture(scope="session")
def aws_cli() -> Path:
    """The `aws` command of aws-cli v1 in a virtualenv of its own, created once and reused (under a lock: with
    `pytest -n 2` two worker processes may ask for it at once)."""
    aws = AWSCLI_VENV / "bin" / "aws"
    marker = AWSCLI_VENV / f"awscli-{AWSCLI_VERSION}"
    AWSCLI_VENV.parent.mkdir(parents=True, exist_ok=True)
    with (AWSCLI_VENV.parent / "awscli-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(AWSCLI_VENV)], check=True)
            subprocess.run([str(AWSCLI_VENV / "bin" / "pip"), "install", "-q", f"awscli=={AWSCLI_VERSION}"],
                           check=True, timeout=600)
            marker.touch()
    return aws.resolve()
