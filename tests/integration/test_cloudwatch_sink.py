"""The CloudWatch Logs sink against the real broker and the AWS stand-in (moto server over HTTP).

Delivery records are produced straight onto the delivery topic; the sink runs in a thread. Afterwards moto
must hold exactly the records of the trails with a log group: none missing, none twice. The outage test
puts a TCP switch between the sink and moto that refuses connections until it is turned on.
"""

from __future__ import annotations

import random
import select
import socket
import socketserver
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import create_topics, group_progress
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.sinks.cloudwatch import CloudWatchSink
from kafkatrail.sinks.cloudwatch_metrics import CloudWatchMetrics
from kafkatrail.stack import Endpoints
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails

ORG_ACCOUNT = "999988887777"
MEMBERS = ("111122223333", "444455556666")
ROLE = "arn:aws:iam::{account}:role/CloudTrail_CloudWatchLogs_Role"
NOW = datetime.now(UTC).replace(microsecond=0)


def cloudtrail_record(rng: random.Random, account: str, region: str, **fields: Any) -> dict[str, Any]:
    """A management-event record as the processors put it on the delivery topic; event time within the last 3 h."""
    event_time = NOW - timedelta(seconds=rng.randrange(3 * 3600))
    return {
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": account,
                         "arn": f"arn:aws:iam::{account}:user/alice", "userName": "alice"},
        "eventTime": f"{event_time:%Y-%m-%dT%H:%M:%SZ}",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "DescribeInstances",
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"maxResults": 5},
        "responseElements": None,
        "requestID": str(uuid.UUID(int=rng.getrandbits(128))),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        **fields,
    }


@pytest.fixture
def settings(stack: Endpoints) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=prefix, topic_partitions=3,
                        cloudwatch={"group_id": f"{prefix}-cloudwatch", "flush_interval_s": 0.3,
                                    "retry_max_backoff_s": 1, "metrics_port": 0})
    create_topics(settings)
    return settings


def sink_progress(settings: Settings) -> tuple[int, int]:
    """(offsets the sink's group has committed, records in the delivery topic)."""
    return group_progress(settings, settings.cloudwatch.group_id, settings.topics.delivery)


class SinkThread:
    """A CloudWatchSink running in a thread, with its own metrics registry."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.sink = CloudWatchSink(settings, CloudWatchMetrics(self.registry))
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="cloudwatch-sink")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sink.run()
        except BaseException as exc:
            self.failures.append(exc)
            raise

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"kafkatrail_cloudwatch_{name}", labels) or 0.0

    def aws(self, name: str, **labels: str) -> float:
        """The shared AWS call metrics (`kafkatrail_aws_call_*`) of PutLogEvents."""
        return self.registry.get_sample_value(f"kafkatrail_aws_call_{name}", {"call": "PutLogEvents", **labels}) or 0.0

    def wait_for(self, condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.thread.is_alive(), self.failures
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    def stop(self) -> None:
        self.sink.stop()
        self.thread.join(30)
        assert not self.thread.is_alive() and not self.failures


class Switch(socketserver.ThreadingTCPServer):
    """A TCP forwarder to the AWS stand-in that closes every connection at once while it is off."""

    daemon_threads = True

    def __init__(self, target_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.on = False
        self.closing = False
        threading.Thread(target=self.serve_forever, name="aws-switch", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.closing = True
        self.shutdown()
        self.server_close()


class _Forward(socketserver.BaseRequestHandler):
    server: Switch

    def handle(self) -> None:
        if not self.server.on:
            return
        with socket.create_connection(self.server.target) as upstream:
            peers = {self.request: upstream, upstream: self.request}
            while not self.server.closing:
                for source in select.select(list(peers), [], [], 0.5)[0]:
                    data = source.recv(65_536)
                    if not data:
                        return
                    peers[source].sendall(data)


def stream_contents(region: str, group: str) -> dict[str, list[tuple[int, str]]]:
    """Every stream of a log group in moto, with its (timestamp, message) events."""
    logs = boto3.client("logs", region_name=region)
    contents = {}
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        name = stream["logStreamName"]
        events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True, limit=10_000)
        contents[name] = [(event["timestamp"], event["message"]) for event in events["events"]]
    return contents


def test_records_of_trails_with_a_log_group_reach_their_streams(settings: Settings) -> None:
    rng = random.Random(7)
    org_group, solo_group = f"CloudTrail/{settings.topic_prefix}-org", f"{settings.topic_prefix}-solo"
    org_trail = Trail.from_document({
        "Name": "org-audit", "HomeRegion": "us-east-1", "AccountId": ORG_ACCOUNT, "S3BucketName": "org-audit-logs",
        "IsOrganizationTrail": True, "IsMultiRegionTrail": True,
        "CloudWatchLogsLogGroupArn": f"arn:aws:logs:us-east-1:{ORG_ACCOUNT}:log-group:{org_group}:*",
        "CloudWatchLogsRoleArn": ROLE.format(account=ORG_ACCOUNT)})
    solo_trail = Trail.from_document({
        "Name": "solo", "HomeRegion": "eu-west-1", "AccountId": MEMBERS[0], "S3BucketName": "solo-logs",
        "CloudWatchLogsLogGroupArn": f"arn:aws:logs:eu-west-1:{MEMBERS[0]}:log-group:{solo_group}",
        "CloudWatchLogsRoleArn": ROLE.format(account=MEMBERS[0])})
    s3_only_trail = Trail.from_document({
        "Name": "s3-only", "HomeRegion": "us-east-1", "AccountId": ORG_ACCOUNT, "S3BucketName": "org-audit-logs",
        "IsOrganizationTrail": True, "IsMultiRegionTrail": True})
    apply_trails(settings, [org_trail, solo_trail, s3_only_trail])
    boto3.client("logs", region_name="us-east-1").create_log_group(logGroupName=org_group)
    boto3.client("logs", region_name="eu-west-1").create_log_group(logGroupName=solo_group)

    deliveries: list[tuple[bytes, bytes]] = []
    expected: dict[tuple[str, str, str], list[tuple[int, str]]] = {}

    def deliver(trail_arn: str, record: dict[str, Any], stream: tuple[str, str, str] | None) -> bytes:
        value = orjson.dumps(record)
        deliveries.append((DeliveryKey.of_record(trail_arn, record).encode(), value))
        if stream is not None:
            event_ms = int(datetime.fromisoformat(record["eventTime"]).timestamp() * 1000)
            expected.setdefault(stream, []).append((event_ms, value.decode()))
        return value

    for account in (*MEMBERS, ORG_ACCOUNT):
        for region in ("us-east-1", "eu-west-1"):
            for _ in range(25):
                record = cloudtrail_record(rng, account, region)
                deliver(org_trail.arn, record, ("us-east-1", org_group, f"{ORG_ACCOUNT}_{account}_CloudTrail_{region}"))
                deliver(s3_only_trail.arn, record, None)
    for _ in range(20):
        deliver(solo_trail.arn, cloudtrail_record(rng, MEMBERS[0], "eu-west-1"),
                ("eu-west-1", solo_group, f"{MEMBERS[0]}_CloudTrail_eu-west-1"))
    deliver(solo_trail.arn, cloudtrail_record(rng, MEMBERS[0], "eu-west-1", userAgent="café ☕ 東京"),
            ("eu-west-1", solo_group, f"{MEMBERS[0]}_CloudTrail_eu-west-1"))
    oversize = deliver(org_trail.arn, cloudtrail_record(rng, MEMBERS[1], "us-east-1",
                                                        requestParameters={"policy": "x" * 300_000}), None)
    for _ in range(5):
        deliver(f"arn:aws:cloudtrail:us-east-1:{ORG_ACCOUNT}:trail/deleted",
                cloudtrail_record(rng, MEMBERS[0], "us-east-1"), None)
    rng.shuffle(deliveries)

    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    for key, value in deliveries:
        producer.produce(settings.topics.delivery, value, key)
    assert producer.flush(30) == 0

    sink = SinkThread(settings)
    try:
        sink.wait_for(lambda: sink_progress(settings) == (len(deliveries), len(deliveries)), 15,
                      "the sink did not settle every record")
    finally:
        sink.stop()

    delivered = {("us-east-1", org_group, name): events for name, events in
                 stream_contents("us-east-1", org_group).items()}
    delivered.update({("eu-west-1", solo_group, name): events for name, events in
                      stream_contents("eu-west-1", solo_group).items()})
    assert delivered.keys() == expected.keys()
    for stream, events in expected.items():
        assert sorted(delivered[stream]) == sorted(events), stream
    assert len(expected) == 7
    sent = sum(len(events) for events in expected.values())
    assert sent == 3 * 2 * 25 + 21
    assert not any(message == oversize.decode() for events in delivered.values() for _, message in events)
    assert len(oversize) > 262_144
    assert {reason: sink.metric("events_skipped_total", reason=reason)
            for reason in ("oversize", "no_log_group", "unknown_trail", "unreadable")} == {
        "oversize": 1, "no_log_group": 3 * 2 * 25, "unknown_trail": 5, "unreadable": 0}
    assert (sink.metric("events_sent_total"), sink.metric("streams_created_total"),
            sink.metric("pending_events")) == (sent, 7, 0)


def test_an_outage_loses_nothing_and_commits_nothing_early(settings: Settings, stack: Endpoints,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    group = f"CloudTrail/{settings.topic_prefix}"
    trail = Trail.from_document({
        "Name": "audit", "HomeRegion": "eu-west-1", "AccountId": MEMBERS[0], "S3BucketName": "audit-logs",
        "CloudWatchLogsLogGroupArn": f"arn:aws:logs:eu-west-1:{MEMBERS[0]}:log-group:{group}:*",
        "CloudWatchLogsRoleArn": ROLE.format(account=MEMBERS[0])})
    apply_trails(settings, [trail])
    boto3.client("logs", region_name="eu-west-1").create_log_group(logGroupName=group)
    values = [orjson.dumps(cloudtrail_record(rng, MEMBERS[0], "eu-west-1")) for _ in range(60)]
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    for value in values:
        producer.produce(settings.topics.delivery, value, f"{trail.arn}|{MEMBERS[0]}|eu-west-1".encode())
    assert producer.flush(30) == 0

    switch = Switch(stack.aws_endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", switch.url)
    try:
        first = SinkThread(settings)
        try:
            first.wait_for(lambda: first.aws("retries_total") >= 2, 15, "no retries while CloudWatch Logs is down")
        finally:
            stopped_at = time.monotonic()
            first.stop()
        assert time.monotonic() - stopped_at < 5, "stop() waited out the outage"
        assert sink_progress(settings) == (0, len(values))
        assert first.metric("events_sent_total") == 0
        assert sum(first.aws("errors_total", code=code) for code in (
            "ConnectionClosedError", "EndpointConnectionError")) >= 2

        second = SinkThread(settings)
        try:
            second.wait_for(lambda: second.aws("retries_total") >= 2, 15, "no retries while CloudWatch Logs is down")
            assert sink_progress(settings) == (0, len(values))
            switch.on = True
            second.wait_for(lambda: sink_progress(settings) == (len(values), len(values)), 15,
                            "the sink did not deliver once CloudWatch Logs was back")
        finally:
            second.stop()
    finally:
        switch.close()
        monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_endpoint_url)
    events = stream_contents("eu-west-1", group)
    assert list(events) == [f"{MEMBERS[0]}_CloudTrail_eu-west-1"]
    assert sorted(message for _, message in events[f"{MEMBERS[0]}_CloudTrail_eu-west-1"]) == sorted(
        value.decode() for value in values)
