"""`kafkatrail demo`: the whole pipeline on a throwaway local stack, and what came out of it.

A private broker and AWS stand-in in `.cache/demo-stack` on free ports; the demo trails of
`deploy/trails.demo.yaml` with their bucket, SNS topic (an SQS queue subscribed) and log group; the
processors, the S3 sink, the CloudWatch Logs sink and the event-history worker as `kafkatrail worker`
subprocesses; about a minute of simulated traffic with duplicates and a few malformed messages; then
`kafkatrail api` answering GetTrailStatus and LookupEvents through boto3. Everything is stopped however the
demo ends.
"""

from __future__ import annotations

import gzip
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import Producer

from kafkatrail.api.auth import Principal, write_credentials
from kafkatrail.core import aws
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, settings_environment, shipped_file
from kafkatrail.core.topics import create_topics, group_progress
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulate import simulate_to_kafka
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.codec import encode_event
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from kafkatrail.worker_process import WorkerProcess

DEMO_STACK_DIR = Path(".cache/demo-stack")
DEMO_TRAILS = shipped_file("trails.demo.yaml")
DEMO_SECONDS = 60
DEMO_RATE = 100
DEMO_DUPLICATE_RATE = 0.05
DEMO_MALFORMED_EACH = 5
FLUSH_INTERVAL_S = 5
ROLES = ("processors", "s3", "cloudwatch", "history")
CATCH_UP_TIMEOUT_S = 120


def run_demo(settings: Settings, seconds: float = DEMO_SECONDS) -> int:
    """Bring a stack up, run the pipeline on `seconds` of simulated traffic, print what it delivered, bring it
    down."""
    shutil.rmtree(DEMO_STACK_DIR, ignore_errors=True)
    stack = LocalStack(settings.stack.model_copy(update={
        "data_dir": DEMO_STACK_DIR, "kafka_port": free_port(), "aws_port": free_port()}))
    began = time.monotonic()
    endpoints = stack.up()
    workers: dict[str, WorkerProcess] = {}
    api: subprocess.Popen[bytes] | None = None
    try:
        os.environ.update({"AWS_ENDPOINT_URL": endpoints.aws_endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
        settings = settings.model_copy(update={
            "bootstrap_servers": endpoints.bootstrap_servers,
            "history": settings.history.model_copy(update={"store_path": DEMO_STACK_DIR / "history.sqlite3"})})
        create_topics(settings)
        trails = load_trails(DEMO_TRAILS)
        queue_url = create_destinations(trails)
        apply_trails(settings, trails)
        print(f"\ntrails: {', '.join(t.name for t in trails)} (the package's deploy/trails.demo.yaml)")

        workers = start_workers(settings, endpoints.aws_endpoint_url)
        simulator = TrafficSimulator(TrafficModel(rate=DEMO_RATE, seed=1, duplicate_rate=DEMO_DUPLICATE_RATE))
        api, api_trail, history_client = start_api(settings, trails[0], simulator.accounts[0])
        print("workers: " + ", ".join(f"{role} (/metrics on {worker.url})" for role, worker in workers.items()))

        print(f"simulating {seconds:g} s of traffic at about {DEMO_RATE} events/s ...")
        with EventProducer(settings) as producer:
            produced = simulate_to_kafka(simulator, producer, Limit(duration_s=seconds))
        malformed = publish_malformed(settings)
        print(f"produced {produced} events ({simulator.duplicates} repeat an earlier eventID) and {malformed} "
              "malformed messages (not Avro, unknown schema, bad eventTime)")

        caught_up = wait_for_pipeline(settings, workers)
        processor = workers["processors"].samples()
        print(f"processors: {processor.get('kafkatrail_processor_events_in_total', 0):.0f} in, "
              f"{processor.get('kafkatrail_processor_duplicates_dropped_total', 0):.0f} duplicates dropped, "
              f"{sum(v for k, v in processor.items() if k.startswith('kafkatrail_processor_invalid_events_total')):.0f}"
              f" to {settings.topics.dlq}")
        stored = show_log_files(trails)
        show_cloudwatch(trails)
        show_notifications(queue_url)
        show_trail_status(api, api_trail)
        show_console_logins(history_client, simulator.accounts[0])
        print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
        return 0 if caught_up and stored else 1
    finally:
        stop_workers(workers)
        if api is not None and api.poll() is None:
            api.terminate()
            api.wait(30)
        for line in stack.down():
            print(line)


def start_api(settings: Settings, like: Trail,
              simulated_account: str) -> tuple[subprocess.Popen[bytes], tuple[Any, str], Any]:
    """`kafkatrail api` with a demo credentials file (0600), and one trail created through it with boto3 (signed
    with the demo key): multi-region, in the account and home region of `like`, logging started. Also a boto3
    client signed with a second key, of one simulated account, for its event history."""
    key, secret = "AKIADEMO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    history_key, history_secret = "AKIADEMO" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    credentials = DEMO_STACK_DIR / "api-credentials.toml"
    write_credentials(credentials, [Principal(key, like.account_id, secret_access_key=secret),
                                    Principal(history_key, simulated_account, secret_access_key=history_secret)])
    port = free_port()
    env = {**os.environ, **settings_environment(settings), "KAFKATRAIL_API__PORT": str(port),
           "KAFKATRAIL_API__CREDENTIALS_FILE": str(credentials)}
    log = (DEMO_STACK_DIR / "workers" / "api.log").open("wb")
    api = subprocess.Popen([sys.executable, "-m", "kafkatrail.cli", "api"], env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    client = boto3.client("cloudtrail", endpoint_url=f"http://127.0.0.1:{port}", region_name=like.home_region,
                          aws_access_key_id=key, aws_secret_access_key=secret)
    bucket = "kafkatrail-demo-api-trail"
    aws_client("s3").create_bucket(Bucket=bucket)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_trail(Name="api-demo", S3BucketName=bucket, IsMultiRegionTrail=True)
            break
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline or api.poll() is not None:
                raise
            time.sleep(0.5)
    client.start_logging(Name="api-demo")
    arn = f"arn:aws:cloudtrail:{like.home_region}:{like.account_id}:trail/api-demo"
    print(f"CloudTrail API on http://127.0.0.1:{port}: created {arn} with boto3 (SigV4, key {key} of "
          f"{credentials}, mode 0600) and started logging")
    history_client = boto3.client("cloudtrail", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                  aws_access_key_id=history_key, aws_secret_access_key=history_secret)
    return api, (client, arn), history_client


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


def show_trail_status(api: subprocess.Popen[bytes], trail: tuple[Any, str]) -> None:
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


def start_workers(settings: Settings, aws_endpoint_url: str) -> dict[str, WorkerProcess]:
    """The demo's workers, with short flush intervals, each with /metrics on a free port."""
    demo = settings.model_copy(update={
        "s3": settings.s3.model_copy(update={"flush_interval_s": FLUSH_INTERVAL_S}),
        "cloudwatch": settings.cloudwatch.model_copy(update={"flush_interval_s": FLUSH_INTERVAL_S})})
    env = {**os.environ, **settings_environment(demo), "AWS_ENDPOINT_URL": aws_endpoint_url}
    logs_dir = DEMO_STACK_DIR / "workers"
    logs_dir.mkdir(parents=True, exist_ok=True)
    return {role: WorkerProcess(role, logs_dir / f"{role}.log", env) for role in ROLES}


def stop_workers(workers: dict[str, WorkerProcess]) -> None:
    for worker in workers.values():
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers.values():
        worker.stop()


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


def wait_for_pipeline(settings: Settings, workers: dict[str, WorkerProcess]) -> bool:
    """Wait until the processors, the S3 sink and the history worker have committed everything (every log file
    closed)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not all(worker.alive() for worker in workers.values()):
            print(f"a worker exited early; see {DEMO_STACK_DIR / 'workers'}")
            return False
        if (lag(settings, settings.processors.group_id, settings.topics.events) == 0
                and lag(settings, settings.s3.group_id, settings.topics.delivery) == 0
                and lag(settings, settings.history.group_id, settings.topics.history) == 0):
            time.sleep(FLUSH_INTERVAL_S + 1)
            return True
        time.sleep(0.5)
    print(f"the pipeline did not catch up within {CATCH_UP_TIMEOUT_S} s")
    return False


def show_log_files(trails: tuple[Trail, ...]) -> int:
    s3 = aws_client("s3")
    total = 0
    print("S3 log files by trail:")
    for trail in trails:
        prefix = f"{trail.s3_key_prefix}/AWSLogs/" if trail.s3_key_prefix else "AWSLogs/"
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=trail.s3_bucket_name, Prefix=prefix) for item in page.get("Contents", [])]
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


def show_notifications(queue_url: str) -> None:
    sqs = aws_client("sqs")
    keys = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            keys.extend(orjson.loads(orjson.loads(message["Body"])["Message"])["s3ObjectKey"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    print(f"SNS notifications received through the SQS subscription: {len(keys)} (one per file of org-management)")
