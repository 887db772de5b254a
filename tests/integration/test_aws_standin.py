"""boto3 against the AWS stand-in over real HTTP: the calls the sinks will make."""

from __future__ import annotations

import json
import time
import uuid

import boto3

from kafkatrail.stack import Endpoints


def test_s3_put_get_keeps_body_metadata_and_encryption(stack: Endpoints) -> None:
    s3 = boto3.client("s3")
    assert s3.meta.endpoint_url == stack.aws_endpoint_url
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/21/file.json.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=b"\x1f\x8b payload", ContentType="application/json",
                  ContentEncoding="gzip", ServerSideEncryption="AES256",
                  Metadata={"signature": "ab" * 8, "signature-algorithm": "SHA256withRSA"})
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == b"\x1f\x8b payload"
    assert stored["Metadata"] == {"signature": "ab" * 8, "signature-algorithm": "SHA256withRSA"}
    assert stored["ServerSideEncryption"] == "AES256"
    listed = s3.list_objects(Bucket=bucket, Prefix="AWSLogs/123456789012/CloudTrail/")
    assert [o["Key"] for o in listed["Contents"]] == [key]


def test_s3_sse_kms_with_a_stand_in_key(stack: Endpoints) -> None:
    s3, kms = boto3.client("s3"), boto3.client("kms")
    key_id = kms.create_key(Description="kafkatrail test")["KeyMetadata"]["Arn"]
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id


def test_sns_delivers_to_an_sqs_subscriber(stack: Endpoints) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=f"trail-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    notification = json.dumps({"s3Bucket": "trail-bucket", "s3ObjectKey": ["AWSLogs/1/CloudTrail/x.json.gz"]})
    sns.publish(TopicArn=topic_arn, Message=notification)

    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    assert json.loads(envelope["Message"]) == json.loads(notification)


def test_cloudwatch_logs_round_trip(stack: Endpoints) -> None:
    logs = boto3.client("logs")
    group = f"/kafkatrail/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="123456789012_CloudTrail_us-east-1")
    now_ms = int(time.time() * 1000)
    answer = logs.put_log_events(logGroupName=group, logStreamName="123456789012_CloudTrail_us-east-1",
                                 logEvents=[{"timestamp": now_ms + i, "message": f"e{i}"} for i in range(3)])
    assert "rejectedLogEventsInfo" not in answer
    events = logs.get_log_events(logGroupName=group, logStreamName="123456789012_CloudTrail_us-east-1",
                                 startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["e0", "e1", "e2"]
