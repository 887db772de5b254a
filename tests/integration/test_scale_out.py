"""Scale-out: two of each role in their groups, one of each SIGKILLed or SIGTERMed mid-stream once both digest
workers' chains have digests in S3, and still each (trail, eventID) in exactly one log file, each log file in
exactly one digest, each chain period digested once (the bucket is versioned: no digest key is written twice) and
AWS's validator and ours agreeing on every chain. A digest chain belongs to the digest worker that has its journal
partition (`kafkatrail.sinks.digests`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from kafkatrail.core.topics import key_partition
from kafkatrail.schemas.contract import DeliveryKey
from kafkatrail.stack import Endpoints
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import expected_pairs, simulate
from tests.integration.test_clean_stop import Replay
from tests.integration.test_digests import (
    REGIONS,
    Pipeline,
    assert_one_unbroken_chain_per_region,
    digests_in,
    log_files_in,
    region_of,
    validators_agree,
    wait_until_listed,
)
from tests.integration.test_s3_sink import pairs_in_files, stored_files, wait_until_stored

SIGNALS = ["SIGKILL", "SIGTERM"]


@pytest.fixture
def pipeline(stack: Endpoints, tmp_path: Path) -> Iterator[Pipeline]:
    """The digest tests' pipeline; a killed processor's open transaction is aborted after 10 s, not 30."""
    running = Pipeline(stack, tmp_path, env={"KAFKATRAIL_PROCESSORS__TRANSACTION_TIMEOUT_S": "10"})
    try:
        yield running
    finally:
        running.stop()


def versioned_bucket(pipeline: Pipeline) -> tuple[Any, str]:
    s3 = boto3.client("s3", endpoint_url=pipeline.aws_endpoint)
    bucket = f"audit-scale-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return s3, bucket


def split_trail(pipeline: Pipeline, bucket: str, account: str) -> Trail:
    """A validated trail whose three chains (one per region) fall into both halves of the journal's partitions,
    so that each of two digest workers (range assignment) owns chains."""
    partitions = pipeline.settings.topic_partitions
    for n in range(1000):
        trail = Trail(name=f"audit-{n}", home_region="us-east-1", account_id=account, s3_bucket_name=bucket,
                      is_multi_region_trail=True, log_file_validation_enabled=True)
        halves = {key_partition(DeliveryKey(trail.arn, account, region).encode(), partitions) < partitions // 2
                  for region in REGIONS}
        if halves == {True, False}:
            return trail
    raise AssertionError("no trail name splits the chains")


def wait_until_assigned(pipeline: Pipeline, role: str, timeout_s: float = 60) -> None:
    """Until every running worker of `role` has logged a partition assignment."""
    deadline = time.monotonic() + timeout_s
    for worker in pipeline.workers.running[role]:
        while b'"partitions assigned"' not in worker.log_file.read_bytes():
            pipeline.workers.assert_alive()
            assert time.monotonic() < deadline, f"a {role} worker got no partitions in {timeout_s} s"
            time.sleep(0.1)


def wait_until_every_chain_lists_a_file(pipeline: Pipeline, s3: Any, bucket: str, timeout_s: float = 60) -> None:
    """Until each region's chain has a digest that lists a log file."""
    deadline = time.monotonic() + timeout_s
    while {region_of(key) for key, (document, _) in digests_in(s3, bucket).items() if document["logFiles"]} \
            != set(REGIONS):
        pipeline.workers.assert_alive()
        assert time.monotonic() < deadline, f"not every chain listed a log file in {timeout_s} s"
        time.sleep(0.5)


def stop_first(pipeline: Pipeline, role: str, signal_name: str) -> None:
    if signal_name == "SIGKILL":
        pipeline.workers.kill(role, index=0)
    else:
        pipeline.workers.terminate(role, index=0)


def assert_each_digest_stored_once(s3: Any, bucket: str) -> None:
    """No chain period got two digests: no digest key has a second version."""
    versions: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            if "/CloudTrail-Digest/" in version["Key"]:
                versions[version["Key"]] = versions.get(version["Key"], 0) + 1
    assert versions and max(versions.values()) == 1, [key for key, n in versions.items() if n > 1]


def assert_chains_whole(pipeline: Pipeline, aws_cli: Path, s3: Any, bucket: str, trail: Trail,
                        start: datetime) -> None:
    """Every log file in one digest, unbroken chains, no period digested twice, both validators agreeing."""
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    digests = digests_in(s3, bucket)
    log_files = log_files_in(s3, bucket)
    assert_one_unbroken_chain_per_region(digests, log_files)
    assert_each_digest_stored_once(s3, bucket)
    assert validators_agree(aws_cli, pipeline, trail, start, end) == (len(digests), len(log_files))


@pytest.mark.parametrize("signal_name", SIGNALS)
def test_two_of_each_role_losing_one_of_each_mid_stream_keep_every_pair_once_and_the_chains_whole(
        pipeline: Pipeline, aws_cli: Path, signal_name: str) -> None:
    s3, bucket = versioned_bucket(pipeline)
    records = simulate(4_000, seed=43)
    trail = split_trail(pipeline, bucket, records[0]["recipientAccountId"])
    apply_trails(pipeline.settings, [trail])
    pipeline.start_api(trail.account_id)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    for instance in ("p0", "p1"):
        for role in ("processors", "s3", "digests"):
            pipeline.workers.start(role, instance)
    for role in ("processors", "s3", "digests"):
        wait_until_assigned(pipeline, role)
    replay = Replay(pipeline.workers, records, seconds=10)
    replay.start()
    wait_until_every_chain_lists_a_file(pipeline, s3, bucket)  # so the lost digest worker's chains are in S3
    for role in ("processors", "s3", "digests"):
        stop_first(pipeline, role, signal_name)
    replay.finish()
    wait_until_stored(pipeline.workers)
    # the survivor takes the lost worker's chains over within its session timeout, finds them again in S3
    # and goes on with them
    wait_until_listed(pipeline, s3, bucket, timeout_s=pipeline.settings.digests.session_timeout_s + 60)
    pipeline.workers.stop_all()

    pairs = pairs_in_files({k: v for k, v in stored_files(pipeline.aws_endpoint, (trail,)).items()
                            if "/CloudTrail/" in k[1]}, (trail,))
    doubled = [pair for pair, n in pairs.items() if n > 1]
    assert not doubled, f"{len(doubled)} pairs in more than one file, e.g. {doubled[:3]}"
    assert set(pairs) == expected_pairs(records, (trail,))
    assert_chains_whole(pipeline, aws_cli, s3, bucket, trail, start)
