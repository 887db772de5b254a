"""Fixtures of the pipeline's integration tests: worker subprocesses on fresh topics, pointed at the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkatrail.stack import Endpoints
from tests.integration.pipeline import Workers, pipeline_settings


@pytest.fixture
def aws_endpoint(stack: Endpoints) -> str:
    return stack.aws_endpoint_url


@pytest.fixture
def workers(stack: Endpoints, tmp_path: Path) -> Iterator[Workers]:
    """Workers on fresh topics (1 s S3 flushes), stopped at the end of the test."""
    running = Workers(pipeline_settings(stack), tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    try:
        yield running
    finally:
        running.stop_all()
