"""The S3 sink against the real broker and moto's server: layout and bodies per docs/cloudtrail.md §2, SSE, SNS to SQS,
exactly one file per (trail, eventID) under SIGKILL, and an S3 outage that loses nothing."""

from __future__ import annotations

import dataclasses
import gzip
import os
import random
import re
import signal
import time
import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson

from kafkatrail.core.topics import group_progress
from kafkatrail.stack import Endpoints
from kafkatrail.stack.aws_standin import start_aws_standin, wait_until_ready
from kafkatrail.stack.processes import free_port, stop
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import (
    TRAILS,
    Workers,
    expected_pairs,
    pipeline_settings,
    publish,
    read_topic,
    simulate,
    wait_for_progress,
)

TIGHT_OPEN_BYTES = 6 * 2**20  # room for about 20 open files, fewer than the test's delivery keys
CLOSED_EARLY = "kafkatrail_s3_files_closed_early_total"
LOG_FILE_KEY = re.compile(
    r"^(?:(?P<prefix>.+)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<acct>\d{12})/CloudTrail/(?P<region>[a-z0-9-]+)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P=acct)_CloudTrail_(?P=region)_(?P=y)(?P=m)(?P=d)T(?P<hhmm>\d{4})Z_"
    r"(?P<uniq>[A-Za-z0-9]{16})\.json\.gz$")


def aws_resources(endpoint_url: str) -> tuple[tuple[Trail, ...], str, str]:
    """The demo trails with buckets of their own, a KMS key on one, and an SNS topic with an SQS subscriber and a
    log group on another; returns (trails, queue URL, key ARN)."""
    suffix = uuid.uuid4().hex[:8]
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    renamed = [dataclasses.replace(trail, s3_bucket_name=f"{trail.s3_bucket_name}-{suffix}") for trail in TRAILS]
    for bucket in {trail.s3_bucket_name for trail in renamed}:
        s3.create_bucket(Bucket=bucket)
    key_arn = boto3.client("kms", endpoint_url=endpoint_url).create_key()["KeyMetadata"]["Arn"]
    sns = boto3.client("sns", endpoint_url=endpoint_url)
    topic_arn = sns.create_topic(Name=f"cloudtrail-log-files-{suffix}")["TopicArn"]
    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    queue_url = sqs.create_queue(QueueName=f"cloudtrail-notifications-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    management, eu_writes, s3_writes = renamed
    log_group = f"CloudTrail/org-management-{suffix}"
    boto3.client("logs", endpoint_url=endpoint_url).create_log_group(logGroupName=log_group)
    group_arn = f"arn:aws:logs:us-east-1:{management.account_id}:log-group:{log_group}:*"
    trails = (dataclasses.replace(management, sns_topic_name=topic_arn, cloud_watch_logs_log_group_arn=group_arn),
              eu_writes, dataclasses.replace(s3_writes, kms_key_id=key_arn))
    return trails, queue_url, key_arn


def wait_until_stored(workers: Workers, timeout_s: float = 240) -> None:
    """Processors through the events and the S3 sink through the delivery topic, every file closed."""
    settings = workers.settings
    wait_for_progress(settings, workers, 1.0, timeout_s=timeout_s)
    wait_for_progress(settings, workers, 1.0, group_id=settings.s3.group_id, topic=settings.topics.delivery,
                      timeout_s=timeout_s)


def stored_files(endpoint_url: str, trails: tuple[Trail, ...]) -> dict[tuple[str, str], bytes]:
    """(bucket, key) -> object bytes of every object in the trails' buckets."""
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    files = {}
    for bucket in {trail.s3_bucket_name for trail in trails}:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                files[bucket, item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return files


def trail_of(bucket: str, key: str, trails: tuple[Trail, ...]) -> Trail:
    prefix = key.split("AWSLogs/", 1)[0].rstrip("/")
    (trail,) = [t for t in trails if t.s3_bucket_name == bucket and (t.s3_key_prefix or "") == prefix]
    return trail


def pairs_in_files(files: dict[tuple[str, str], bytes], trails: tuple[Trail, ...]) -> Counter[tuple[str, str]]:
    pairs: Counter[tuple[str, str]] = Counter()
    for (bucket, key), body in files.items():
        trail = trail_of(bucket, key, trails)
        for record in orjson.loads(gzip.decompress(body))["Records"]:
            pairs[trail.arn, record["eventID"]] += 1
    return pairs


def cloudwatch_messages(endpoint_url: str, trail: Trail) -> list[dict]:
    group = trail.cloud_watch_logs_log_group_arn.split(":log-group:", 1)[1].removesuffix(":*")
    logs = boto3.client("logs", endpoint_url=endpoint_url)
    return [orjson.loads(event["message"]) for page in logs.get_paginator("filter_log_events").paginate(
        logGroupName=group) for event in page["events"]]


def test_log_files_notifications_and_encryption_follow_the_spec(workers: Workers, aws_endpoint: str) -> None:
    trails, queue_url, key_arn = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    records = simulate(3_000, seed=21, start=an_hour_ago)  # CloudWatch Logs refuses events older than 14 days
    publish(workers.settings, records)
    for role in ("processors", "s3", "cloudwatch"):
        workers.start(role)
    wait_until_stored(workers)

    files = stored_files(aws_endpoint, trails)
    assert files
    s3 = boto3.client("s3", endpoint_url=aws_endpoint)
    for (bucket, key), body in files.items():
        match = LOG_FILE_KEY.match(key)
        assert match, key
        trail = trail_of(bucket, key, trails)
        assert (match["prefix"] or "") == (trail.s3_key_prefix or "")
        assert match["org"] == trail.organization_id
        inflater = zlib.decompressobj(wbits=31)
        content = inflater.decompress(body)
        assert inflater.eof and inflater.unused_data == b"", "exactly one gzip member"
        assert content.startswith(b'{"Records":[{')
        document = orjson.loads(content)
        assert list(document) == ["Records"] and document["Records"]
        assert {(r["recipientAccountId"], r["awsRegion"]) for r in document["Records"]} == {
            (match["acct"], match["region"])}
        head = s3.head_object(Bucket=bucket, Key=key)
        if trail.kms_key_id:
            assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
        else:
            assert head["ServerSideEncryption"] == "AES256"
        assert "ContentEncoding" not in head

    pairs = pairs_in_files(files, trails)
    assert max(pairs.values()) == 1
    assert set(pairs) == expected_pairs(records, trails)

    notified = []
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint)
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            envelope = orjson.loads(message["Body"])
            assert envelope["Type"] == "Notification"
            body = orjson.loads(envelope["Message"])
            assert list(body) == ["s3Bucket", "s3ObjectKey"]
            notified.extend((body["s3Bucket"], key) for key in body["s3ObjectKey"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    management_files = {k for k in files if trail_of(*k, trails).arn == trails[0].arn}
    assert sorted(notified) == sorted(management_files), "one notification per file of the trail with a topic"

    mirrored = [orjson.loads(m.value()) for m in read_topic(workers.settings, workers.settings.topics.notifications)]
    assert sorted((n["s3Bucket"], k) for n in mirrored for k in n["s3ObjectKey"]) == sorted(files)

    in_s3 = sorted((r for (bucket, key), body in files.items() if trail_of(bucket, key, trails) == trails[0]
                    for r in orjson.loads(gzip.decompress(body))["Records"]), key=lambda r: r["eventID"])
    deadline = time.monotonic() + 30
    while len(in_cloudwatch := cloudwatch_messages(aws_endpoint, trails[0])) < len(in_s3):
        assert time.monotonic() < deadline, (f"{len(in_cloudwatch)} CloudWatch events for {len(in_s3)} in S3:\n"
                                             f"{workers.log_tail()}")
        time.sleep(0.5)
    assert sorted(in_cloudwatch, key=lambda r: r["eventID"]) == in_s3, "CloudWatch Logs holds what S3 holds"


def test_sigkill_three_times_leaves_each_pair_in_exactly_one_file(workers: Workers, aws_endpoint: str) -> None:
    """Under a memory budget so small that the sink closes files early all the time, as it does on a backlog of
    many delivery keys: an early close is one more place a kill can fall."""
    trails, _, _ = aws_resources(aws_endpoint)
    apply_trails(workers.settings, trails)
    workers.env["KAFKATRAIL_S3__MAX_OPEN_BYTES"] = str(TIGHT_OPEN_BYTES)
    records = simulate(200_000, seed=22)
    publish(workers.settings, records)
    began = time.monotonic()
    workers.start("processors")
    workers.start("s3", metrics=True)
    rng = random.Random(22)
    closed_early = 0.0
    for _ in range(3):
        time.sleep(rng.uniform(2.0, 6.0))
        workers.assert_alive()
        closed_early += workers.latest("s3").totals().get(CLOSED_EARLY, 0.0)
        workers.kill("s3")
        workers.start("s3", metrics=True)
    wait_until_stored(workers)
    elapsed = time.monotonic() - began
    closed_early += workers.latest("s3").totals().get(CLOSED_EARLY, 0.0)
    assert closed_early > 0, "the budget never closed a file early: the test no longer covers early closes"

    files = stored_files(aws_endpoint, trails)
    pairs = pairs_in_files(files, trails)
    doubled = [pair for pair, n in pairs.items() if n > 1]
    expected = expected_pairs(records, trails)
    assert not doubled, f"{len(doubled)} pairs in more than one file, e.g. {doubled[:3]}"
    assert set(pairs) == expected, f"missing {len(expected - set(pairs))}, unexpected {len(set(pairs) - expected)}"
    print(f"\ns3 kill test: {len(records):,} events, 3 SIGKILLs of the sink, {len(expected):,} pairs in "
          f"{len(files):,} files ({closed_early:.0f} closed early), each exactly once, in {elapsed:.1f} s")


def test_an_s3_outage_delays_delivery_and_loses_nothing(stack: Endpoints, tmp_path: Path) -> None:
    port = free_port()
    standin_log = tmp_path / "moto.log"
    pid = start_aws_standin(port, standin_log)
    endpoint = f"http://127.0.0.1:{port}"
    settings = pipeline_settings(stack)
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": endpoint})
    try:
        wait_until_ready(pid, port, standin_log, 30)
        trails, _, _ = aws_resources(endpoint)
        apply_trails(settings, trails)
        first, second = simulate(5_000, seed=23), simulate(5_000, seed=24)
        workers.start("processors")
        workers.start("s3")
        publish(settings, first)
        wait_until_stored(workers)

        os.kill(pid, signal.SIGSTOP)
        try:
            publish(settings, second)
            time.sleep(30)
            workers.assert_alive()
            committed, end = group_progress(settings, settings.s3.group_id, settings.topics.delivery)
            assert committed < end, "nothing can be stored while S3 is down"
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until_stored(workers)

        pairs = pairs_in_files(stored_files(endpoint, trails), trails)
        assert max(pairs.values()) == 1
        assert set(pairs) == expected_pairs(first + second, trails)
    finally:
        workers.stop_all()
        stop(pid, 10)
