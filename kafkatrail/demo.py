"""`kafkatrail demo`: the whole pipeline on a throwaway local stack, and what came out of it.

A private broker and AWS stand-in in `.cache/demo-stack` on free ports; the demo trails of
`deploy/trails.demo.yaml` with their bucket, SNS topic (an SQS queue subscribed) and log group, and one more
trail with Insights selectors; every role (processors, Insights, the S3 and CloudWatch Logs sinks and their
Insights twins, digests, event history, `kafkatrail api`) under `kafkatrail run`'s supervisor
(`kafkatrail.node`); two days of one account's RunInstances calls with a burst in them, for Insights; about
a minute of simulated traffic with duplicates and a few malformed messages; then the log files, CloudWatch
Logs, SNS notifications, `kafkatrail status`, the digests and `kafkatrail validate-logs`'s verdict on them,
the Insights records, GetTrailStatus and LookupEvents through boto3. Everything is stopped however the demo ends.
"""

from __future__ import annotations

import gzip
import os
import secrets
import shutil
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import Producer

from kafkatrail.api.auth import Principal, write_credentials
from kafkatrail.core import aws
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import scrape
from kafkatrail.core.settings import Settings, settings_environment, shipped_file
from kafkatrail.core.topics import create_topics, group_progress
from kafkatrail.node import NODE_ROLES, Node, role_port
from kafkatrail.node_status import status_lines
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulate import simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.codec import encode_event
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from kafkatrail.validate_logs import run_validation

DEMO_STACK_DIR = Path(".cache/demo-stack")
DEMO_TRAILS = shipped_file("trails.demo.yaml")
DEMO_SECONDS = 60
DEMO_RATE = 100
DEMO_DUPLICATE_RATE = 0.05
DEMO_MALFORMED_EACH = 5
FLUSH_INTERVAL_S = 5
DIGEST_PERIOD_S = 15
CATCH_UP_TIMEOUT_S = 180
INSIGHTS_TRAIL = Trail(name="demo-insights", home_region="eu-west-1", account_id="111122223333",
                       s3_bucket_name="kafkatrail-demo-insights",
                       insight_selectors=({"InsightType": "ApiCallRateInsight"},))
INSIGHTS_PER_MIN, INSIGHTS_BURST_PER_MIN, INSIGHTS_BURST_MIN = 6, 60, 10


def run_demo(settings: Settings, seconds: float = DEMO_SECONDS) -> int:
    """Bring a stack up, run the pipeline on `seconds` of simulated traffic, print what it delivered, bring it
    down."""
    shutil.rmtree(DEMO_STACK_DIR, ignore_errors=True)
    stack = LocalStack(settings.stack.model_copy(update={
        "data_dir": DEMO_STACK_DIR, "kafka_port": free_port(), "aws_port": free_port()}))
    began = time.monotonic()
    started_at = datetime.now(UTC).replace(microsecond=0)
    endpoints = stack.up()
    node: Node | None = None
    supervising: threading.Thread | None = None
    try:
        os.environ.update({"AWS_ENDPOINT_URL": endpoints.aws_endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        settings = demo_settings(settings, endpoints.bootstrap_servers)
        create_topics(settings)
        trails = (*load_trails(DEMO_TRAILS), INSIGHTS_TRAIL)
        queue_url = create_destinations(trails)
        apply_trails(settings, trails)
        print(f"\ntrails: {', '.join(t.name for t in trails)} (the package's deploy/trails.demo.yaml, and one with "
              "Insights selectors)")
        simulator = TrafficSimulator(TrafficModel(rate=DEMO_RATE, seed=1, duplicate_rate=DEMO_DUPLICATE_RATE))
        api_keys = write_api_credentials(settings, trails[0], simulator.accounts[0])

        node = Node(NODE_ROLES, {role: role_port(settings, role) for role in NODE_ROLES},
                    {**os.environ, **settings_environment(settings)}, log_dir=DEMO_STACK_DIR / "workers")
        supervising = threading.Thread(target=node.run, name="kafkatrail-run")
        supervising.start()
        print("kafkatrail run: " + ", ".join(f"{role} (:{role_port(settings, role)})" for role in NODE_ROLES)
              + f"; their logs in {DEMO_STACK_DIR / 'workers'}")
        api_trail, history_client = start_api(settings, trails[0], api_keys)

        backfilled = publish_insights_history(settings)
        print(f"published {backfilled} RunInstances calls of account {INSIGHTS_TRAIL.account_id} over two days, "
              f"with a {INSIGHTS_BURST_MIN}-minute burst, for the Insights trail")
        print(f"simulating {seconds:g} s of traffic at about {DEMO_RATE} events/s ...")
        with EventProducer(settings) as producer:
            produced = simulate_to_kafka(simulator, producer, Limit(duration_s=seconds))
        malformed = publish_malformed(settings)
        print(f"produced {produced} events ({simulator.duplicates} repeat an earlier eventID) and {malformed} "
              "malformed messages (not Avro, unknown schema, bad eventTime)")

        caught_up = wait_for_pipeline(settings)
        processor = scrape(f"http://127.0.0.1:{settings.processors.metrics_port}/metrics") or {}
        print(f"processors: {processor.get('kafkatrail_processor_events_in_total', 0):.0f} in, "
              f"{processor.get('kafkatrail_processor_duplicates_dropped_total', 0):.0f} duplicates dropped, "
              f"{sum(v for k, v in processor.items() if k.startswith('kafkatrail_processor_invalid_events_total')):.0f}"
              f" to {settings.topics.dlq}")
        print("\nkafkatrail status:")
        for line in status_lines(settings, time.time()):
            print(f"  {line}")
        stored = show_log_files(trails)
        show_cloudwatch(trails)
        show_notifications(queue_url)
        valid = show_digests(api_trail[0], trails[0], started_at)
        insights = show_insights(INSIGHTS_TRAIL)
        show_trail_status(api_trail)
        show_console_logins(history_client, simulator.accounts[0])
        print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
        return 0 if caught_up and stored and valid and insights else 1
    finally:
        if node is not None and supervising is not None:
            node.stop()
            supervising.join()
        for line in stack.down():
            print(line)


def demo_settings(settings: Settings, bootstrap_servers: str) -> Settings:
    """The demo's settings: its broker, each role on a free port, short flush intervals and digest periods, the
    signing keys and the history store in the demo's folder."""
    ports = {section: getattr(settings, section).model_copy(update={"metrics_port": free_port()})
             for section in ("processors", "insights", "s3", "cloudwatch", "digests", "s3_insights",
                             "cloudwatch_insights", "history")}
    ports["s3"] = ports["s3"].model_copy(update={"flush_interval_s": FLUSH_INTERVAL_S})
    ports["cloudwatch"] = ports["cloudwatch"].model_copy(update={"flush_interval_s": FLUSH_INTERVAL_S})
    ports["digests"] = ports["digests"].model_copy(update={"period_s": DIGEST_PERIOD_S})
    ports["history"] = ports["history"].model_copy(update={"store_path": DEMO_STACK_DIR / "history.sqlite3"})
    return settings.model_copy(update={
        "bootstrap_servers": bootstrap_servers, **ports,
        "keys": settings.keys.model_copy(update={"folder": DEMO_STACK_DIR / "keys"}),
        "api": settings.api.model_copy(update={"port": free_port(),
                                               "credentials_file": DEMO_STACK_DIR / "api-credentials.toml"})})


def write_api_credentials(settings: Settings, like: Trail, simulated_account: str) -> dict[str, tuple[str, str]]:
    """The API's credentials file (0600): a key of `like`'s account and one of a simulated account; returns the
    (access key, secret) of each, as `trail` and `history`."""
    keys = {name: ("AKIADEMO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
            for name in ("trail", "history")}
    assert settings.api.credentials_file is not None
    write_credentials(settings.api.credentials_file, [
        Principal(keys["trail"][0], like.account_id, secret_access_key=keys["trail"][1]),
        Principal(keys["history"][0], simulated_account, secret_access_key=keys["history"][1])])
    return keys


def start_api(settings: Settings, like: Trail, keys: dict[str, tuple[str, str]]) -> tuple[tuple[Any, str], Any]:
    """Once `kafkatrail api` answers: one trail created through it with boto3 (signed with the demo key):
    multi-region, in the account and home region of `like`, logging started. Also a boto3 client signed with
    the second key, of one simulated account, for its event history."""
    url = f"http://127.0.0.1:{settings.api.port}"
    key, secret = keys["trail"]
    client = boto3.client("cloudtrail", endpoint_url=url, region_name=like.home_region,
                          aws_access_key_id=key, aws_secret_access_key=secret)
    bucket = "kafkatrail-demo-api-trail"
    aws_client("s3").create_bucket(Bucket=bucket)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_trail(Name="api-demo", S3BucketName=bucket, IsMultiRegionTrail=True)
            break
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    client.start_logging(Name="api-demo")
    arn = f"arn:aws:cloudtrail:{like.home_region}:{like.account_id}:trail/api-demo"
    print(f"CloudTrail API on {url}: created {arn} with boto3 (SigV4, key {key} of {settings.api.credentials_file}, "
          "mode 0600) and started logging")
    history_key, history_secret = keys["history"]
    history_client = boto3.client("cloudtrail", endpoint_url=url, region_name="us-east-1",
                                  aws_access_key_id=history_key, aws_secret_access_key=history_secret)
    return (client, arn), history_client


def publish_insights_history(settings: Settings) -> int:
    """Two days of RunInstances calls of the Insights trail's account, a few a minute, with a burst ten times
    that rate a day and ten hours in (a day of history is what the detector needs before it flags anything)."""
    template = next(record for record in TrafficSimulator(TrafficModel(rate=100, seed=5)).records(Limit(count=200))
                    if record.get("readOnly") is False and record.get("managementEvent"))
    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    burst = first + timedelta(days=1, hours=10)
    count = 0
    with EventProducer(settings) as producer:
        for minute in range(int((burst - first).total_seconds() // 60) + INSIGHTS_BURST_MIN + 10):
            at = first + timedelta(minutes=minute)
            per_minute = INSIGHTS_BURST_PER_MIN if burst <= at < burst + timedelta(minutes=INSIGHTS_BURST_MIN) \
                else INSIGHTS_PER_MIN
            for n in range(per_minute):
                producer.emit({**template, "eventID": str(uuid.uuid4()), "awsRegion": INSIGHTS_TRAIL.home_region,
                               "recipientAccountId": INSIGHTS_TRAIL.account_id, "eventSource": "ec2.amazonaws.com",
                               "eventName": "RunInstances", "eventTime": (at + timedelta(seconds=n * 60 // per_minute))
                               .strftime("%Y-%m-%dT%H:%M:%SZ")})
                count += 1
    return count


def show_console_logins(client: Any, account: str) -> None:
    """Event history: LookupEvents for the ConsoleLogin events of one simulated account in us-east-1 (or, when
    the short run had none there, its newest events)."""
    pages = client.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ConsoleLogin"}])
    events = pages.build_full_result()["Events"]
    print(f"LookupEvents EventName=ConsoleLogin (account {account}, us-east-1, through the API): {len(events)} "
          "event(s), newest first")
    if not events:
        events = client.lookup_events(MaxResults=3)["Events"]
        print(f"LookupEvents, newest {len(events)} management events of that account and region:")
    for event in events[:5]:
        record = orjson.loads(event["CloudTrailEvent"])
        print(f"  {event['EventTime'].isoformat()}  {event['EventName']}  by {event.get('Username', '-')}  from "
              f"{record.get('sourceIPAddress')}")


def show_trail_status(trail: tuple[Any, str]) -> None:
    client, arn = trail
    time.sleep(2)  # the sinks report at most once a second per trail
    status = client.get_trail_status(Name=arn)
    shown = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in status.items()
             if k != "ResponseMetadata"}
    print(f"GetTrailStatus {arn}: {shown}")


def aws_client(service: str) -> Any:
    """A client of the demo's AWS stand-in (its endpoint is in AWS_ENDPOINT_URL)."""
    return aws.client(Settings(), service)


def create_destinations(trails: tuple[Trail, ...]) -> str:
    """Buckets, SNS topics and log groups the trails name, in the AWS stand-in; returns the SQS queue URL."""
    s3, sns, sqs, logs = (aws_client(name) for name in ("s3", "sns", "sqs", "logs"))
    queue_url = sqs.create_queue(QueueName="cloudtrail-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for trail in trails:
        s3.create_bucket(Bucket=trail.s3_bucket_name)
        if trail.sns_topic_name:
            topic_arn = sns.create_topic(Name=trail.sns_topic_name)["TopicArn"]
            sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        if trail.cloud_watch_logs_log_group_arn:
            group = trail.cloud_watch_logs_log_group_arn.split(":log-group:", 1)[1].removesuffix(":*")
            logs.create_log_group(logGroupName=group)
    return queue_url


def publish_malformed(settings: Settings) -> int:
    """A few messages the processor must refuse, to show the dead-letter topic at work."""
    valid = next(TrafficSimulator(TrafficModel(rate=1, seed=2)).records(Limit(count=1)))
    bad = [b"{\"eventID\": \"not avro\"}", b"\xc3\x01" + b"\x00" * 8 + b"\x02",
           encode_event({**valid, "eventTime": "yesterday"})] * DEMO_MALFORMED_EACH
    producer = Producer(kafka_config(settings))
    for value in bad:
        producer.produce(settings.topics.events, value)
    producer.flush(30)
    producer.close()
    return len(bad)


def lag(settings: Settings, group_id: str, topic: str) -> int:
    committed, end = group_progress(settings, group_id, topic)
    return end - committed


def wait_for_pipeline(settings: Settings) -> bool:
    """Wait until the processors, the S3 sink, the history worker and the digest worker have committed
    everything (every log file closed, the last files in a digest)."""
    topics = settings.topics
    groups = ((settings.processors.group_id, topics.events), (settings.s3.group_id, topics.delivery),
              (settings.history.group_id, topics.history), (settings.digests.group_id, topics.s3_journal))
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(lag(settings, group, topic) <= 0 for group, topic in groups):
            time.sleep(max(FLUSH_INTERVAL_S, DIGEST_PERIOD_S) + 1)
            if all(lag(settings, group, topic) <= 0 for group, topic in groups):
                return True
        time.sleep(0.5)
    print(f"the pipeline did not catch up within {CATCH_UP_TIMEOUT_S} s; see {DEMO_STACK_DIR / 'workers'}")
    return False


def show_log_files(trails: tuple[Trail, ...]) -> int:
    """Each trail's log files and records in S3; returns how many files there are."""
    s3 = aws_client("s3")
    total = 0
    print("S3 log files by trail:")
    for trail in trails:
        prefix = f"{trail.s3_key_prefix}/AWSLogs/" if trail.s3_key_prefix else "AWSLogs/"
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=trail.s3_bucket_name, Prefix=prefix) for item in page.get("Contents", [])
                if "/CloudTrail/" in item["Key"]]  # not the digests (CloudTrail-Digest) nor Insights files
        if trail.s3_key_prefix is None:
            keys = [key for key in keys if key.startswith("AWSLogs/")]
        records = sum(len(orjson.loads(gzip.decompress(s3.get_object(Bucket=trail.s3_bucket_name, Key=key)[
            "Body"].read()))["Records"]) for key in keys)
        total += len(keys)
        print(f"  {trail.name}: {len(keys)} files, {records} records, in s3://{trail.s3_bucket_name}/")
        for key in keys[:2]:
            print(f"      {key}")
    return total


def show_cloudwatch(trails: tuple[Trail, ...]) -> None:
    logs = aws_client("logs")
    for trail in trails:
        if not trail.cloud_watch_logs_log_group_arn:
            continue
        group = trail.cloud_watch_logs_log_group_arn.split(":log-group:", 1)[1].removesuffix(":*")
        streams: Counter[str] = Counter()
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            streams.update(event["logStreamName"] for event in page["events"])
        print(f"CloudWatch Logs group {group}: {sum(streams.values())} events in {len(streams)} streams "
              f"(e.g. {', '.join(sorted(streams)[:2])})")


def show_digests(cloudtrail: Any, trail: Trail, since: datetime) -> bool:
    """The digest files of `trail`'s bucket, then `kafkatrail validate-logs` on them (public keys from the API);
    True when it finds them all valid."""
    s3 = aws_client("s3")
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=trail.s3_bucket_name, Prefix="AWSLogs/") for item in page.get("Contents", [])
            if "/CloudTrail-Digest/" in item["Key"]]
    print(f"digest files in s3://{trail.s3_bucket_name}/: {len(keys)} (one per period, account and region), e.g.")
    for key in keys[:2]:
        print(f"      {key}")
    print(f"kafkatrail validate-logs --s3-bucket {trail.s3_bucket_name} --start-time {since:%Y-%m-%dT%H:%M:%SZ}:")
    verdict = run_validation(cloudtrail, s3, None, trail.s3_bucket_name, None, since, datetime.now(UTC), None, False)
    return bool(keys) and verdict == 0


def show_insights(trail: Trail, timeout_s: float = 180) -> bool:
    """The Insights records the S3 Insights sink stored for `trail` (waiting for a Start and an End, up to
    `timeout_s`: on a busy machine the Insights worker takes over a minute for the two days); True when both
    are there."""
    s3 = aws_client("s3")
    deadline = time.monotonic() + timeout_s
    while True:
        records = [record for page in s3.get_paginator("list_objects_v2").paginate(Bucket=trail.s3_bucket_name)
                   for item in page.get("Contents", []) if "/CloudTrail-Insight/" in item["Key"]
                   for record in orjson.loads(gzip.decompress(s3.get_object(
                       Bucket=trail.s3_bucket_name, Key=item["Key"])["Body"].read()))["Records"]]
        if len(records) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"Insights records in s3://{trail.s3_bucket_name}/ (CloudTrail-Insight): {len(records)}")
    for record in records[:2]:
        details = record["insightDetails"]
        statistics = details.get("insightContext", {}).get("statistics", {})
        print(f"  {record['eventTime']}  {details['state']}  {details['eventSource']} {details['eventName']}  "
              f"baseline {statistics.get('baseline', {}).get('average', '-')}/min, "
              f"insight {statistics.get('insight', {}).get('average', '-')}/min")
    return {record["insightDetails"]["state"] for record in records} >= {"Start", "End"}


def show_notifications(queue_url: str) -> None:
    sqs = aws_client("sqs")
    keys = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            keys.extend(orjson.loads(orjson.loads(message["Body"])["Message"])["s3ObjectKey"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    print(f"SNS notifications received through the SQS subscription: {len(keys)} (one per file of org-management)")
