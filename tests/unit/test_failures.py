"""The one line a command ends with when Kafka or AWS cannot be reached or refuses (`kafkatrail.core.failures`)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)
from confluent_kafka import KafkaError

from kafkatrail.core.failures import aws_failure, kafka_failure
from kafkatrail.core.settings import Settings


def refused(code: str, message: str = "", operation: str = "ListObjectsV2", **extra: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message, **extra}}, operation)


@pytest.mark.parametrize(("exc", "line"), [
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bucket?list-type=2"),
     "cannot reach AWS at http://127.0.0.1:1: EndpointConnectionError; start the AWS stand-in with `kafkatrail "
     "stack up`, or check AWS_ENDPOINT_URL (or aws.endpoint_url)"),
    (ConnectTimeoutError(endpoint_url="https://s3.eu-west-1.amazonaws.com/b"),
     "cannot reach AWS at https://s3.eu-west-1.amazonaws.com: ConnectTimeoutError; start the AWS stand-in"),
    (NoCredentialsError(), "no usable AWS credentials; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                           "AWS_PROFILE"),
    (refused("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
     "AWS refused the credentials for ListObjectsV2 (InvalidAccessKeyId); check AWS_ACCESS_KEY_ID"),
    (refused("SignatureDoesNotMatch", operation="DescribeTrails"),
     "AWS refused the credentials for DescribeTrails (SignatureDoesNotMatch)"),
    (refused("NoSuchBucket", "The specified bucket does not exist", BucketName="audit-logs"),
     "S3 bucket audit-logs does not exist (ListObjectsV2); check the bucket name, or the trail's S3BucketName"),
    (refused("NoSuchBucket"), "the S3 bucket does not exist (ListObjectsV2)"),
    (refused("500", "<!doctype html>\n<title>500 Internal Server Error</title>\n<p>The server failed.</p>",
             operation="ListPublicKeys"),
     "AWS refused ListPublicKeys: 500: 500 Internal Server Error The server failed."),
    (BotoCoreError(), "AWS call failed at http://aws.example:4566: BotoCoreError"),
])
def test_aws_failures(exc: Exception, line: str) -> None:
    settings = Settings(aws={"endpoint_url": "http://aws.example:4566"})
    assert str(aws_failure(settings, exc)).startswith(line)  # type: ignore[arg-type]
    assert "\n" not in str(aws_failure(settings, exc))  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "reason", "timeout_s", "line"), [
    (KafkaError._TRANSPORT, "Connection refused", 3.0, "cannot reach the Kafka broker at k1:9092,k2:9092: Connection "
     "refused, no answer within 3 s; start it with `kafkatrail stack up`, or check KAFKATRAIL_BOOTSTRAP_SERVERS"),
    (KafkaError._TIMED_OUT, None, None, "cannot reach the Kafka broker at k1:9092,k2:9092: _TIMED_OUT, no answer; "),
    (KafkaError.SASL_AUTHENTICATION_FAILED, None, 3.0, "the Kafka broker at k1:9092,k2:9092 refused the client's "
     "credentials (SASL failed); check kafka_client_config (KAFKATRAIL_KAFKA_CLIENT_CONFIG)"),
])
def test_kafka_failures(code: int, reason: str | None, timeout_s: float | None, line: str) -> None:
    settings = Settings(bootstrap_servers="k1:9092,k2:9092",
                        kafka_client_config={"sasl.password": "kt-secret"})
    message = str(kafka_failure(settings, KafkaError(code, "SASL failed"), reason, timeout_s))
    assert message.startswith(line) and "kt-secret" not in message
