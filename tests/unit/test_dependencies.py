"""An unreachable Kafka or AWS makes /readyz say so and sets `kafkatrail_dependency_up` to 0."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from prometheus_client import CollectorRegistry, Gauge

from kafkatrail.core.aws import AwsCallMetrics, AwsCalls
from kafkatrail.core.dependencies import Dependencies
from kafkatrail.core.metrics import Health, endpoints_app


def fresh() -> tuple[Dependencies, Gauge]:
    gauge = Gauge("up", "test", ["dependency"], registry=CollectorRegistry())
    return Dependencies(gauge), gauge


def readyz(health: Health, path: str = "/readyz") -> tuple[str, bytes]:
    status: list[str] = []
    body = b"".join(endpoints_app(health)({"PATH_INFO": path}, lambda s, headers: status.append(s)))
    return status[0], body


@pytest.mark.parametrize(("ready", "reports", "status", "body"), [
    (True, [], "200 OK", b"ok\n"),
    (False, [], "503 Service Unavailable", b"not ready\n"),
    (True, [("kafka", False)], "503 Service Unavailable", b"kafka unreachable\n"),
    (True, [("kafka", False), ("aws", False)], "503 Service Unavailable", b"aws, kafka unreachable\n"),
    (True, [("kafka", False), ("kafka", True)], "200 OK", b"ok\n"),
])
def test_readyz(ready: bool, reports: list[tuple[str, bool]], status: str, body: bytes) -> None:
    dependencies, gauge = fresh()
    health = Health(dependencies=dependencies)
    health.ready = ready
    for name, up in reports:
        dependencies.report(name, up)
    assert readyz(health) == (status, body)
    assert readyz(health, "/healthz") == ("200 OK", b"ok\n")  # alive all the same: restarting would not help
    for name, up in dict(reports).items():
        assert gauge.labels(name)._value.get() == (1 if up else 0)


def refused(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(("failures", "down_while_retrying"), [
    ([EndpointConnectionError(endpoint_url="http://127.0.0.1:1")], ["aws"]),
    ([NoCredentialsError()], ["aws"]),
    ([refused("InternalError", 500)], ["aws"]),
    ([refused("SlowDown", 503)], ["aws"]),
    ([refused("RequestTimeTooSkewed", 403)], []),
])
def test_aws_calls_report_the_aws_dependency(failures: list[Any], down_while_retrying: list[str]) -> None:
    dependencies, _ = fresh()
    seen: list[list[str]] = []
    calls = AwsCalls(AwsCallMetrics(CollectorRegistry()), 1.0, wait=lambda _: seen.append(dependencies.down()),
                     dependencies=dependencies)
    pending = list(failures)

    def attempt() -> str:
        if pending:
            raise pending.pop(0)
        return "stored"

    assert calls.call("s3.put_object", attempt) == "stored"
    assert seen == [down_while_retrying] and dependencies.down() == []
