"""LogEventsWriter's policy per CloudWatch Logs answer: create the stream, retry, skip for good, count rejections.

The service's answers come from botocore's Stubber (checked against the logs model); connection errors
from a client pointed at a closed port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from prometheus_client import CollectorRegistry

from kafkatrail.sinks.cloudwatch import LogEventsWriter
from kafkatrail.sinks.cloudwatch_batches import Destination, PendingEvent
from kafkatrail.sinks.cloudwatch_metrics import CloudWatchMetrics
from kafkatrail.stack.processes import free_port

TARGET = Destination("eu-west-1", "CloudTrail/audit", "111122223333_CloudTrail_eu-west-1")
BATCH = [PendingEvent.from_record(f'{{"eventTime":"2024-05-01T00:00:0{i}Z","n":{i}}}'.encode(), 0, i)
         for i in range(4)]
PUT = {"logGroupName": TARGET.log_group, "logStreamName": TARGET.stream,
       "logEvents": [{"timestamp": e.timestamp, "message": e.message} for e in BATCH]}
CREATE = {"logGroupName": TARGET.log_group, "logStreamName": TARGET.stream}


class Harness:
    def __init__(self, client: Any, stop_after_sleeps: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.sleeps = 0
        self.stop_after_sleeps = stop_after_sleeps
        self.regions: list[str] = []

        def new_client(region: str) -> Any:
            self.regions.append(region)
            return client

        self.writer = LogEventsWriter(0.01, CloudWatchMetrics(self.registry), self.stopping, new_client, self.sleep)

    def stopping(self) -> bool:
        return self.stop_after_sleeps is not None and self.sleeps >= self.stop_after_sleeps

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        time.sleep(seconds)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"kafkatrail_cloudwatch_{name}", labels) or 0.0

    def aws(self, name: str, call: str = "PutLogEvents", **labels: str) -> float:
        """The shared AWS call metrics (`kafkatrail_aws_call_*`) of one call."""
        return self.registry.get_sample_value(f"kafkatrail_aws_call_{name}", {"call": call, **labels}) or 0.0


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("logs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x",
                          endpoint_url="http://127.0.0.1:1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_accepted_batch(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response("put_log_events", {}, PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert harness.regions == ["eu-west-1"]
    assert (harness.value("events_sent_total"), harness.value("put_log_events_calls_total"),
            harness.aws("retries_total"), harness.value("event_latency_seconds_count")) == (4, 1, 0, 4)


@pytest.mark.parametrize(("code", "status"), [
    ("ThrottlingException", 400),
    ("ServiceUnavailableException", 503),
    ("InternalFailure", 500),
    ("UnrecognizedClientException", 400),
    ("AccessDeniedException", 400),
])
def test_transient_errors_are_retried_until_accepted(stubbed: tuple[Any, Stubber], code: str, status: int) -> None:
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_client_error("put_log_events", code, http_status_code=status, expected_params=PUT)
    stubber.add_response("put_log_events", {}, PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert harness.aws("errors_total", code=code) == 3
    assert (harness.aws("retries_total"), harness.value("put_log_events_calls_total"),
            harness.value("events_sent_total")) == (3, 4, 4)


def test_missing_stream_is_created_then_the_batch_sent(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("put_log_events", "ResourceNotFoundException", expected_params=PUT)
    stubber.add_response("create_log_stream", {}, CREATE)
    stubber.add_response("put_log_events", {}, PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert (harness.value("streams_created_total"), harness.value("events_sent_total"), harness.sleeps) == (1, 4, 0)


def test_stream_created_meanwhile_by_another_writer(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("put_log_events", "ResourceNotFoundException", expected_params=PUT)
    stubber.add_client_error("create_log_stream", "ResourceAlreadyExistsException", expected_params=CREATE)
    stubber.add_response("put_log_events", {}, PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert (harness.value("streams_created_total"), harness.value("events_sent_total")) == (0, 4)


def test_missing_log_group_is_skipped_and_counted(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("put_log_events", "ResourceNotFoundException", expected_params=PUT)
    stubber.add_client_error("create_log_stream", "ResourceNotFoundException", expected_params=CREATE)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert harness.value("events_skipped_total", reason="log_group_missing") == 4
    assert harness.value("events_sent_total") == 0


def test_invalid_parameter_is_not_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("put_log_events", "InvalidParameterException", expected_params=PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert (harness.value("events_skipped_total", reason="invalid_parameter"), harness.aws("retries_total")) == (4, 0)


def test_rejected_events_are_counted_not_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response("put_log_events", {"rejectedLogEventsInfo": {
        "tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 3}}, PUT)
    harness = Harness(client)
    assert harness.writer.put(TARGET, BATCH)
    assert (harness.value("events_sent_total"), harness.value("event_latency_seconds_count"),
            harness.value("put_log_events_calls_total")) == (2, 2, 1)
    assert (harness.value("events_skipped_total", reason="rejected_too_old"),
            harness.value("events_skipped_total", reason="rejected_too_new")) == (1, 1)


def test_stopping_abandons_a_failing_batch(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("put_log_events", "ThrottlingException", expected_params=PUT)
    harness = Harness(client, stop_after_sleeps=0)
    assert not harness.writer.put(TARGET, BATCH)
    assert (harness.value("events_sent_total"), harness.aws("retries_total"), harness.sleeps) == (0, 0, 0)


def test_connection_errors_are_retried() -> None:
    client = boto3.client("logs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x",
                          endpoint_url=f"http://127.0.0.1:{free_port()}")
    harness = Harness(client, stop_after_sleeps=3)
    assert not harness.writer.put(TARGET, BATCH)   # never accepted; gives up only because the sink stops
    assert harness.aws("errors_total", code="EndpointConnectionError") >= 2
    assert harness.aws("retries_total") >= 1
