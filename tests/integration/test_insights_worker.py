"""The Insights worker against the real broker: a burst in the delivery topic becomes one Start and one End,
with the right statistics, although the worker is killed (SIGKILL) or stopped (SIGTERM) mid-burst; the S3
Insights sink stores them under `CloudTrail-Insight` in the trail's bucket, and the CloudWatch Logs Insights
sink puts them in the trail's log group."""

from __future__ import annotations

import gzip
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson
import pytest
from confluent_kafka import Producer

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics
from kafkatrail.stack import Endpoints
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, fresh_settings, publish, read_topic, simulate, wait_for_progress

TRAIL = Trail(name="insights", home_region="eu-west-1", account_id="111122223333", s3_bucket_name="insights-logs",
              insight_selectors=({"InsightType": "ApiCallRateInsight"}, {"InsightType": "ApiErrorRateInsight"}))
# recent enough for CloudWatch Logs, which refuses events older than 14 days
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
BURST = START + timedelta(days=1, hours=10)  # one day of history: min_history_days
NORMAL_PER_MIN, BURST_PER_MIN, BURST_MIN = 6, 60, 10


INSIGHT_KEY = re.compile(r"^AWSLogs/111122223333/CloudTrail-Insight/eu-west-1/\d{4}/\d\d/\d\d/"
                         r"111122223333_CloudTrail-Insight_eu-west-1_\d{8}T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$")


@pytest.fixture
def settings(stack: Endpoints) -> Settings:
    settings = fresh_settings(stack.bootstrap_servers, s3={"flush_interval_s": 1})
    create_topics(settings)
    apply_trails(settings, [TRAIL])
    return settings


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(settings, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def deliver(settings: Settings, first: datetime, minutes: int) -> None:
    """`minutes` of RunInstances calls from `first` on, as the processor would deliver them for TRAIL."""
    producer = Producer(settings.kafka_config())
    key = f"{TRAIL.arn}|111122223333|eu-west-1".encode()
    for minute in range(minutes):
        at = first + timedelta(minutes=minute)
        per_minute = BURST_PER_MIN if BURST <= at < BURST + timedelta(minutes=BURST_MIN) else NORMAL_PER_MIN
        for n in range(per_minute):
            record = {"eventVersion": "1.11", "eventTime": (at + timedelta(seconds=n * 60 // per_minute)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                "awsRegion": "eu-west-1", "recipientAccountId": "111122223333", "readOnly": False,
                "managementEvent": True, "eventCategory": "Management", "eventType": "AwsApiCall",
                "userAgent": "autoscaling.amazonaws.com", "eventID": f"{minute}-{n}",
                "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/Autoscaler/x"}}
            producer.produce(settings.topics.delivery, orjson.dumps(record), key)
            producer.poll(0)
    assert producer.flush(30) == 0


def insights(settings: Settings) -> list[dict]:
    return [orjson.loads(m.value()) for m in read_topic(settings, settings.topics.insights)]


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_burst_yields_one_start_and_one_end_across_a_stop(settings: Settings, workers: Workers,
                                                          signal_name: str) -> None:
    group, delivery = settings.insights.group_id, settings.topics.delivery
    into_burst = int((BURST - START).total_seconds() // 60) + 5
    deliver(settings, START, into_burst)
    workers.start("insights")
    wait_for_progress(settings, workers, 1.0, group, delivery, timeout_s=60)
    started = insights(settings)
    assert [r["insightDetails"]["state"] for r in started] == ["Start"]
    if signal_name == "SIGKILL":
        workers.kill("insights")
    else:
        workers.terminate("insights")

    deliver(settings, BURST + timedelta(minutes=5), 20)
    workers.start("insights")
    wait_for_progress(settings, workers, 1.0, group, delivery, timeout_s=60)
    records = insights(settings)
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"]
    start, end = records
    assert start == started[0]
    assert start["sharedEventID"] == end["sharedEventID"]
    assert start["eventTime"] == BURST.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert end["eventTime"] == (BURST + timedelta(minutes=BURST_MIN)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert end["insightDetails"]["insightContext"]["statistics"] == {
        "baseline": {"average": NORMAL_PER_MIN}, "insight": {"average": BURST_PER_MIN},
        "insightDuration": BURST_MIN, "baselineDuration": 1440}
    attributions = start["insightDetails"]["insightContext"]["attributions"]
    assert attributions[1] == {"attribute": "userAgent",
                               "insight": [{"value": "autoscaling.amazonaws.com", "average": BURST_PER_MIN}],
                               "baseline": [{"value": "autoscaling.amazonaws.com", "average": NORMAL_PER_MIN}]}


def test_insights_files_in_s3_under_the_insight_prefix(settings: Settings, workers: Workers) -> None:
    bucket = f"{settings.topic_prefix}-insights"  # the stand-in outlives the test
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=f"{settings.topic_prefix}-insights")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{settings.topic_prefix}-insights")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    apply_trails(settings, [Trail.from_document({**TRAIL.to_document(), "S3BucketName": bucket,
                                                 "SnsTopicName": topic_arn})])
    deliver(settings, START, int((BURST - START).total_seconds() // 60) + BURST_MIN + 10)
    workers.start("insights")
    workers.start("s3-insights")
    stored: list[dict] = []
    deadline = time.monotonic() + 60
    while len(stored) < 2 and time.monotonic() < deadline:
        workers.assert_alive()
        time.sleep(1)
        stored = []
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            assert INSIGHT_KEY.match(item["Key"]), item["Key"]
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            stored += orjson.loads(gzip.decompress(body))["Records"]
    records = {record["insightDetails"]["state"]: record for record in stored}
    assert len(stored) == 2 and sorted(records) == ["End", "Start"], workers.log_tail()
    objects = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    notified: set[str] = set()
    deadline = time.monotonic() + 20  # the sink publishes after it stored the file
    while notified != objects and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            notified.update(orjson.loads(orjson.loads(message["Body"])["Message"])["s3ObjectKey"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert notified == objects, "one SNS notification per Insights file"
    assert records["Start"]["sharedEventID"] == records["End"]["sharedEventID"]
    assert records["End"]["insightDetails"]["insightContext"]["statistics"]["insight"]["average"] == BURST_PER_MIN


def test_insights_records_in_the_trail_s_log_group(settings: Settings, workers: Workers) -> None:
    group = f"CloudTrail/{settings.topic_prefix}"
    trail = Trail.from_document({**TRAIL.to_document(),
                                 "CloudWatchLogsLogGroupArn": f"arn:aws:logs:eu-west-1:111122223333:log-group:{group}",
                                 "CloudWatchLogsRoleArn": "arn:aws:iam::111122223333:role/CloudTrail_Logs"})
    assert trail.arn == TRAIL.arn
    apply_trails(settings, [trail])
    logs = boto3.client("logs", region_name="eu-west-1")
    logs.create_log_group(logGroupName=group)
    deliver(settings, START, int((BURST - START).total_seconds() // 60) + BURST_MIN + 10)
    workers.start("insights")
    workers.start("cloudwatch-insights")
    messages: list[dict] = []
    deadline = time.monotonic() + 60
    while len(messages) < 2 and time.monotonic() < deadline:
        workers.assert_alive()
        time.sleep(1)
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        messages = [orjson.loads(event["message"]) for stream in streams for event in logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)["events"]]
    assert [m["insightDetails"]["state"] for m in messages] == ["Start", "End"], workers.log_tail()
    assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]] == [
        "111122223333_CloudTrail_eu-west-1"]


def test_burst_through_the_processor_and_the_insights_worker(settings: Settings, workers: Workers) -> None:
    """Events on the events topic (Avro, as services send them) go through `worker processors` first."""
    template = next(r for r in simulate(200, seed=5) if r.get("readOnly") is False and r.get("managementEvent"))
    records = []
    for minute in range(int((BURST - START).total_seconds() // 60) + BURST_MIN + 10):
        at = START + timedelta(minutes=minute)
        per_minute = BURST_PER_MIN if BURST <= at < BURST + timedelta(minutes=BURST_MIN) else NORMAL_PER_MIN
        for n in range(per_minute):
            records.append({**template, "eventID": str(uuid.uuid4()), "awsRegion": "eu-west-1",
                            "recipientAccountId": "111122223333", "eventSource": "ec2.amazonaws.com",
                            "eventName": "RunInstances",
                            "eventTime": (at + timedelta(seconds=n * 60 // per_minute)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    publish(settings, records)
    workers.start("processors")
    workers.start("insights")
    wait_for_progress(settings, workers, 1.0, timeout_s=60)
    deadline = time.monotonic() + 60  # the delivery topic is transactional: its end offset counts commit markers
    while len(found := insights(settings)) < 2 and time.monotonic() < deadline:
        workers.assert_alive()
        time.sleep(1)
    states = [(r["insightDetails"]["state"], r["insightDetails"]["eventName"]) for r in found]
    assert states == [("Start", "RunInstances"), ("End", "RunInstances")], workers.log_tail()
