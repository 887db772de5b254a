"""Test fixtures: the real local stack, started once per test session.

Set KAFKATRAIL_TEST_BOOTSTRAP_SERVERS and KAFKATRAIL_TEST_AWS_ENDPOINT_URL to run the integration
tests against a stack that is already up (nothing is started or stopped then). Otherwise the session
starts its own broker and AWS stand-in in `.cache/test-stack/<xdist worker>` on free ports and stops them
at the end: with `pytest -n 2` (as `make test` runs) each worker process has a stack of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkatrail.core.settings import StackSettings
from kafkatrail.stack import Endpoints, LocalStack
from kafkatrail.stack.processes import free_port

TEST_STACK_DIR = Path(".cache/test-stack") / os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    """Endpoints of a running broker and AWS stand-in; boto3 in this process is pointed at the stand-in."""
    given_kafka = os.environ.get("KAFKATRAIL_TEST_BOOTSTRAP_SERVERS")
    given_aws = os.environ.get("KAFKATRAIL_TEST_AWS_ENDPOINT_URL")
    local = None
    if given_kafka and given_aws:
        endpoints = Endpoints(given_kafka, given_aws)
    else:
        shutil.rmtree(TEST_STACK_DIR, ignore_errors=True)
        local = LocalStack(StackSettings(data_dir=TEST_STACK_DIR, kafka_port=free_port(), aws_port=free_port()))
        endpoints = local.up()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoints.aws_endpoint_url)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        try:
            yield endpoints
        finally:
            if local is not None:
                local.down()


# The longest test files (seconds of a full run on the project's 2-core machine), longest first: run first, so
# that `pytest -n 2 --dist loadfile` does not end with one worker running a long file alone.
LONGEST_FILES = (
    "integration/test_history.py",  # 280
    "integration/test_wheel.py",  # 257
    "integration/test_clean_stop.py",  # 180
    "integration/test_s3_sink.py",  # 150
    "integration/test_digests.py",  # 140
    "integration/test_broker_outage.py",  # 140
    "integration/test_scale_out.py",  # 135
    "integration/test_api.py",  # 120
    "integration/test_processor.py",  # 110
    "integration/test_producer_auth.py",  # 100
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (`LONGEST_FILES`), the rest in their order; everything under tests/integration
    is marked `integration` (select with -m, skip with -m 'not ...')."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get("/".join(item.path.parts[-2:]), len(rank)))
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
