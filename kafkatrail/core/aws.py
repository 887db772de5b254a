"""One way to call AWS: every boto3 client built from settings, and one retry loop with one metric shape.

`client()` builds a client with the `[aws]` settings: endpoint (none: boto3's own resolution, which honours
`AWS_ENDPOINT_URL`), region, timeouts, and botocore's `standard` retry mode with `aws.max_attempts`
attempts. That mode already retries throttling, 5xx and connection errors within one call, with its own
back-off, and gives up after a few attempts.

A sink must not give up: a log file, a digest or a batch of log events waits for AWS however long it is
away. `AwsCalls.call` therefore repeats a call that botocore gave up on, forever, backing off exponentially
with jitter up to `max_backoff_s`, until it succeeds, fails with an error code the caller names as
permanent (raised to the caller, which decides), or the worker is stopping (`WorkerStopping`: the work is
left to the next owner). Every failure is counted in `kafkatrail_aws_call_errors_total{call,code}` and
every repetition in `kafkatrail_aws_call_retries_total{call}`, whichever role makes the call. A failure to
reach AWS at all (no connection, a timeout, no credentials, a 5xx) reports the process's `aws` dependency
down (`kafkatrail.core.dependencies`: /readyz, `kafkatrail_dependency_up`) until a call succeeds again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from kafkatrail.core.dependencies import DEPENDENCIES, Dependencies
from kafkatrail.core.lifecycle import WorkerStopping
from kafkatrail.core.settings import Settings

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
Result = TypeVar("Result")


def client(settings: Settings, service: str, region: str | None = None, max_attempts: int | None = None) -> Any:
    """A boto3 client for `service` with the `[aws]` settings (a session of its own: safe to use from one thread
    while other threads build theirs). `max_attempts` overrides the setting for a caller whose own loop must see
    every failure at once (it then checks for a stop between attempts)."""
    aws = settings.aws
    config = Config(connect_timeout=aws.connect_timeout_s, read_timeout=aws.read_timeout_s,
                    retries={"mode": "standard", "max_attempts": max_attempts or aws.max_attempts})
    return boto3.session.Session().client(service, region_name=region or aws.region,
                                          endpoint_url=aws.endpoint_url, config=config)


def error_code(exc: ClientError | BotoCoreError) -> str:
    """AWS's error code of a refused call, or the exception's name for a client-side failure."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def answered(exc: ClientError | BotoCoreError) -> bool:
    """True when AWS answered the call (refusing it for a reason of its own), False when it could not be reached,
    did not answer in time, failed on its side (5xx), or was never asked for want of credentials."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0) < 500
    return False


class AwsCallMetrics:
    """The AWS call metrics every role serves."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.errors = Counter("kafkatrail_aws_call_errors_total", "Failed AWS calls, by call and error code",
                              ["call", "code"], registry=registry)
        self.retries = Counter("kafkatrail_aws_call_retries_total", "AWS calls repeated after a back-off", ["call"],
                               registry=registry)


class AwsCalls:
    """Makes AWS calls until they succeed, back-off included; see the module docstring for the policy."""

    def __init__(self, metrics: AwsCallMetrics, max_backoff_s: float, stopping: Callable[[], bool] = lambda: False,
                 wait: Callable[[float], None] = time.sleep, dependencies: Dependencies = DEPENDENCIES) -> None:
        self.metrics = metrics
        self.dependencies = dependencies
        self.max_backoff_s = max_backoff_s
        self._stopping = stopping
        self._wait = wait

    def call(self, name: str, attempt: Callable[[], Result], *, permanent: frozenset[str] = frozenset(),
             context: dict[str, Any] | None = None) -> Result:
        """`attempt()`'s result once it succeeds; its ClientError when the code is in `permanent`;
        WorkerStopping when a stop arrives between attempts. `context` goes into the log lines."""
        delay = min(FIRST_BACKOFF_S, self.max_backoff_s)
        while True:
            try:
                result = attempt()
                self.dependencies.report("aws", True)
                return result
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc)
                self.metrics.errors.labels(name, code).inc()
                if code in permanent:
                    raise
                if not answered(exc):
                    self.dependencies.report("aws", False)
                if self._stopping():
                    raise WorkerStopping from exc
                log.warning("AWS call failed; retrying", extra={
                    "call": name, "code": code, "error": str(exc)[:300], "retry_in_s": round(delay, 3),
                    **(context or {})})
            self._wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.max_backoff_s)
            self.metrics.retries.labels(name).inc()
