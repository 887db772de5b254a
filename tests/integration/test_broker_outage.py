"""The broker SIGKILLed twice during a 100,000-record replay, with every worker running, on a stack of its own.

Every worker must ride the outages out (none may exit), `stack up` must start the broker again at once, and
afterwards: each (trail, eventID) in exactly one S3 file, each file in exactly one digest, AWS's own
`validate-logs` valid for every region, and the CloudWatch Logs duplicates counted and stated.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from kafkatrail.core.settings import StackSettings
from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.stack import KAFKA, Endpoints, LocalStack
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import expected_pairs, simulate, wait_for_progress
from tests.integration.test_digests import (
    REGIONS,
    Pipeline,
    assert_one_unbroken_chain_per_region,
    both_validators,
    digests_in,
    log_files_in,
    summary,
    wait_until_listed,
)
from tests.integration.test_s3_sink import cloudwatch_messages, pairs_in_files, stored_files

RECORDS = 100_000
CHUNK = 5_000
KILL_AT_CHUNKS = (4, 12)  # of 20: the broker dies twice while the replay goes on
DOWN_S = 3


@pytest.fixture
def own_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """A broker and AWS stand-in of this test's own (the other tests' broker is not to be killed)."""
    local = LocalStack(StackSettings(data_dir=tmp_path / "stack", kafka_port=free_port(), aws_port=free_port()))
    try:
        endpoints = local.up()
        for name, value in (("AWS_ENDPOINT_URL", endpoints.aws_endpoint_url), ("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        yield local
    finally:
        local.down()


def kill_broker(local: LocalStack) -> None:
    pid = json.loads(local.state_file.read_text())[KAFKA]["pid"]
    os.kill(pid, signal.SIGKILL)


def test_every_worker_rides_out_two_broker_kills_and_delivery_stays_exact(
        own_stack: LocalStack, tmp_path: Path, aws_cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoints: Endpoints = own_stack.endpoints()
    pipeline = Pipeline(endpoints, tmp_path, s3={"flush_interval_s": 1, "max_file_records": 500})
    try:
        s3 = boto3.client("s3", endpoint_url=endpoints.aws_endpoint_url)
        logs = boto3.client("logs", endpoint_url=endpoints.aws_endpoint_url)
        suffix = uuid.uuid4().hex[:8]
        bucket, group = f"outage-{suffix}", f"CloudTrail/outage-{suffix}"
        s3.create_bucket(Bucket=bucket)
        logs.create_log_group(logGroupName=group)
        # recent events: CloudWatch Logs refuses events older than 14 days
        records = simulate(RECORDS, seed=45, duplicates=0.0, start=datetime.now(UTC) - timedelta(minutes=30))
        account = records[0]["recipientAccountId"]
        trail = Trail(name="outage", home_region="us-east-1", account_id=account, s3_bucket_name=bucket,
                      is_multi_region_trail=True, log_file_validation_enabled=True,
                      cloud_watch_logs_log_group_arn=f"arn:aws:logs:us-east-1:{account}:log-group:{group}:*",
                      cloud_watch_logs_role_arn=f"arn:aws:iam::{account}:role/CloudTrail_CloudWatchLogs_Role")
        apply_trails(pipeline.settings, [trail])
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        for role in ("processors", "s3", "cloudwatch", "digests"):
            pipeline.workers.start(role)
        pipeline.start_api(account)

        restarts: list[float] = []
        done = threading.Event()

        def replay() -> None:
            with EventProducer(pipeline.settings) as producer:
                for chunk in range(RECORDS // CHUNK):
                    for record in records[chunk * CHUNK:(chunk + 1) * CHUNK]:
                        producer.emit(record)
                    if chunk in KILL_AT_CHUNKS:
                        kill_broker(own_stack)
                        time.sleep(DOWN_S)
                        began = time.monotonic()
                        own_stack.up()
                        restarts.append(time.monotonic() - began)
                    time.sleep(0.5)
            done.set()

        replayer = threading.Thread(target=replay, daemon=True)
        replayer.start()
        while not done.wait(1):
            pipeline.workers.assert_alive()
            assert replayer.is_alive(), "the replay failed"
        wait_for_progress(pipeline.settings, pipeline.workers, 1.0, timeout_s=300)
        wait_for_progress(pipeline.settings, pipeline.workers, 1.0, group_id=pipeline.settings.s3.group_id,
                          topic=pipeline.settings.topics.delivery, timeout_s=300)
        wait_for_progress(pipeline.settings, pipeline.workers, 1.0, group_id=pipeline.settings.cloudwatch.group_id,
                          topic=pipeline.settings.topics.delivery, timeout_s=300)
        wait_until_listed(pipeline, s3, bucket, timeout_s=120)
        pipeline.workers.assert_alive()
        pipeline.workers.stop_all()
        end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

        log_files = {key: body for key, body in stored_files(endpoints.aws_endpoint_url, (trail,)).items()
                     if "/CloudTrail/" in key[1]}
        pairs = pairs_in_files(log_files, (trail,))
        assert set(pairs) == expected_pairs(records, (trail,))
        assert max(pairs.values()) == 1, "a (trail, eventID) pair is in two log files"
        digests = digests_in(s3, bucket)
        assert_one_unbroken_chain_per_region(digests, log_files_in(s3, bucket))
        for region in REGIONS:
            theirs, _ = both_validators(aws_cli, pipeline, trail, start, end, region)
            assert theirs.returncode == 0, theirs.stdout + theirs.stderr
            valid_digests, all_digests, valid_logs, all_logs = summary(theirs.stdout)
            assert (valid_digests, valid_logs) == (all_digests, all_logs)

        rebuilds = sum(path.read_text().count("rebuilding it") for path in tmp_path.glob("*.log"))
        copies = Counter(message["eventID"] for message in cloudwatch_messages(endpoints.aws_endpoint_url, trail))
        assert set(copies) == {event_id for _, event_id in pairs}, "CloudWatch Logs misses events"
        with capsys.disabled():
            print(f"\nbroker restarted twice by `stack up` in {', '.join(f'{s:.1f} s' for s in restarts)}; "
                  f"workers rebuilt after a Kafka failure: {rebuilds}; "
                  f"S3: {len(pairs):,} pairs in {len(log_files_in(s3, bucket))} files, each once; "
                  f"{len(digests)} digests valid; CloudWatch Logs: {sum(copies.values()):,} events for "
                  f"{len(copies):,} eventIDs ({sum(copies.values()) - len(copies):,} duplicates)")
    finally:
        pipeline.stop()
