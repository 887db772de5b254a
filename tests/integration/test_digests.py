"""Digest files end to end: the pipeline with a 3-second digest period, a SIGKILLed digest worker, AWS's own
`aws cloudtrail validate-logs` (aws-cli v1 from PyPI) and ours agreeing on every file, and on each tampering;
and a KMS key in the AWS stand-in as the signing key."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import boto3
import pytest

from kafkatrail.api.auth import Principal, write_credentials
from kafkatrail.core.topics import create_topics
from kafkatrail.sinks.signing_keys import SigningKeys, load_pkcs1, read_public_keys, verify
from kafkatrail.stack import Endpoints
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import Workers, fresh_settings, publish, simulate
from tests.integration.test_s3_sink import wait_until_stored

PERIOD_S = 3
REGIONS = ("ap-southeast-2", "eu-west-1", "us-east-1")


class Pipeline:
    """Processors, S3 sink, digest worker and `kafkatrail api` on a fresh topic prefix, one validated trail."""

    def __init__(self, stack: Endpoints, tmp_path: Path, s3: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = fresh_settings(stack.bootstrap_servers,
                                       s3=s3 or {"flush_interval_s": 1, "max_file_records": 100})
        create_topics(self.settings)
        self.aws_endpoint = stack.aws_endpoint_url
        self.api_port = free_port()
        env = {"AWS_ENDPOINT_URL": stack.aws_endpoint_url, "KAFKATRAIL_KEYS__FOLDER": str(tmp_path / "keys"),
               "KAFKATRAIL_DIGESTS__GROUP_ID": f"{self.settings.topic_prefix}-digests",
               "KAFKATRAIL_DIGESTS__PERIOD_S": str(PERIOD_S), "KAFKATRAIL_API__PORT": str(self.api_port),
               **(env or {})}
        self.workers = Workers(self.settings, tmp_path, env=env)
        self.api: subprocess.Popen[bytes] | None = None
        self.log_dir = tmp_path

    def start_api(self, account_id: str) -> None:
        """`kafkatrail api`, with aws-cli's test credentials (the stack's AWS_ACCESS_KEY_ID) acting for the account."""
        credentials = self.log_dir / "api-credentials.toml"
        key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
        write_credentials(credentials, [Principal(key, account_id, secret_access_key=secret)])
        log = (self.log_dir / "api.log").open("wb")
        self.api = subprocess.Popen([sys.executable, "-m", "kafkatrail.cli", "api"],
                                    env={**self.workers.env, "KAFKATRAIL_API__CREDENTIALS_FILE": str(credentials)},
                                    stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.workers.stop_all()
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            self.api.wait(30)


@pytest.fixture
def pipeline(stack: Endpoints, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(stack, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def digests_in(s3: Any, bucket: str) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """Every digest object in the bucket: key -> (document, metadata)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if "/CloudTrail-Digest/" in item["Key"]:
                response = s3.get_object(Bucket=bucket, Key=item["Key"])
                found[item["Key"]] = json.loads(gzip.decompress(response["Body"].read())), response["Metadata"]
    return found


def log_files_in(s3: Any, bucket: str) -> set[str]:
    return {item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", []) if "/CloudTrail/" in item["Key"]}


def wait_until_listed(pipeline: Pipeline, s3: Any, bucket: str, timeout_s: float = 60) -> None:
    """Every log file in the bucket is listed in a digest, and one more (empty) period has been digested."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.workers.assert_alive()
        listed = {f["s3Object"] for document, _ in digests_in(s3, bucket).values() for f in document["logFiles"]}
        if log_files_in(s3, bucket) <= listed:
            time.sleep(PERIOD_S + 1)
            return
        time.sleep(1)
    unlisted = sorted(log_files_in(s3, bucket) - listed)
    raise AssertionError(f"{len(unlisted)} log files not listed in digests in {timeout_s} s, e.g. {unlisted[:3]}:\n"
                         f"{pipeline.workers.log_tail()}")


def region_of(digest_key: str) -> str:
    """The source region of a digest key (`.../CloudTrail-Digest/<region>/...`)."""
    return digest_key.split("/CloudTrail-Digest/")[1].split("/")[0]


def assert_one_unbroken_chain_per_region(digests: dict[str, tuple[dict[str, Any], dict[str, str]]],
                                         log_files: set[str]) -> None:
    """Per region: contiguous windows, each digest linked to the one before, one start; each file listed once."""
    by_region: dict[str, list[tuple[str, dict[str, Any], dict[str, str]]]] = {}
    for key, (document, metadata) in digests.items():
        by_region.setdefault(region_of(key), []).append((key, document, metadata))
    assert sorted(by_region) == list(REGIONS)
    for chain in by_region.values():
        chain.sort(key=lambda item: item[0][-24:-8])
        assert chain[0][1]["previousDigestS3Object"] is None
        for (key, document, metadata), (next_key, following, _) in pairwise(chain):
            assert following["previousDigestS3Object"] == key, f"{next_key} does not follow {key}"
            assert following["previousDigestSignature"] == metadata["signature"]
            assert following["digestStartTime"] == document["digestEndTime"]
    listed = Counter(f["s3Object"] for document, _ in digests.values() for f in document["logFiles"])
    assert set(listed) == log_files
    assert max(listed.values()) == 1, "a log file is listed in more than one digest"


def run_aws(aws: Path, pipeline: Pipeline, arguments: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": pipeline.aws_endpoint,
           "AWS_ENDPOINT_URL_CLOUDTRAIL": f"http://127.0.0.1:{pipeline.api_port}"}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run([str(aws), *arguments], env=env, capture_output=True, text=True, timeout=120)


def both_validators(aws: Path, pipeline: Pipeline, trail: Trail, start: datetime, end: datetime,
                    region: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """(aws cloudtrail validate-logs, kafkatrail validate-logs) for one source region."""
    times = ["--start-time", f"{start:%Y-%m-%dT%H:%M:%SZ}", "--end-time", f"{end:%Y-%m-%dT%H:%M:%SZ}"]
    theirs = run_aws(aws, pipeline, ["cloudtrail", "validate-logs", "--trail-arn", trail.arn, "--region", region,
                                     "--verbose", *times])
    ours = run_aws(Path(sys.executable), pipeline, ["-m", "kafkatrail.cli", "validate-logs", "--trail-arn",
                                                    trail.arn, "--region", region, "--verbose", *times])
    return theirs, ours


def validators_agree(aws: Path, pipeline: Pipeline, trail: Trail, start: datetime, end: datetime) -> tuple[int, int]:
    """Both validators find every digest and log file of each region valid, alike; (digests, log files) checked.
    Prints AWS's summary per region."""
    totals = Counter[str]()
    for region in REGIONS:
        theirs, ours = both_validators(aws, pipeline, trail, start, end, region)
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        assert ours.returncode == 0, ours.stdout + ours.stderr
        valid_digests, all_digests, valid_logs, all_logs = summary(theirs.stdout)
        assert (valid_digests, valid_logs) == (all_digests, all_logs)
        assert summary(ours.stdout) == summary(theirs.stdout)
        totals.update(digests=all_digests, logs=all_logs)
        print(f"\naws cloudtrail validate-logs --region {region}:\n"
              + "\n".join(line for line in theirs.stdout.splitlines() if not line.startswith(("Digest", "Log"))))
    return totals["digests"], totals["logs"]


def summary(output: str) -> tuple[int, int, int, int]:
    """(valid digests, digests, valid logs, logs) from a validator's summary lines."""
    digests = re.search(r"^(\d+)/(\d+) digest files valid", output, re.M)
    logs = re.search(r"^(\d+)/(\d+) log files valid", output, re.M)
    assert digests and logs, output
    return int(digests[1]), int(digests[2]), int(logs[1]), int(logs[2])


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_aws_validator_accepts_the_chains_and_both_validators_catch_tampering(
        pipeline: Pipeline, aws_cli: Path, capsys: pytest.CaptureFixture[str], signal_name: str) -> None:
    s3 = boto3.client("s3", endpoint_url=pipeline.aws_endpoint)
    bucket = f"audit-digests-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    records = simulate(6_000, seed=31, duplicates=0.0)
    first_batch, second_batch = records[:3_000], records[3_000:]
    trail = Trail(name="audit", home_region="us-east-1", account_id=first_batch[0]["recipientAccountId"],
                  s3_bucket_name=bucket, s3_key_prefix="validated", is_multi_region_trail=True,
                  log_file_validation_enabled=True)
    apply_trails(pipeline.settings, [trail])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    for role in ("processors", "s3", "digests"):
        pipeline.workers.start(role)
    pipeline.start_api(trail.account_id)
    publish(pipeline.settings, first_batch)
    wait_until_stored(pipeline.workers)
    wait_until_listed(pipeline, s3, bucket)

    if signal_name == "SIGKILL":
        pipeline.workers.kill("digests")
    else:
        pipeline.workers.terminate("digests")
    time.sleep(PERIOD_S)
    pipeline.workers.start("digests")
    publish(pipeline.settings, second_batch)
    wait_until_stored(pipeline.workers)
    wait_until_listed(pipeline, s3, bucket)
    pipeline.workers.stop_all()
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    digests = digests_in(s3, bucket)
    log_files = log_files_in(s3, bucket)
    assert_one_unbroken_chain_per_region(digests, log_files)
    assert any(not document["logFiles"] for document, _ in digests.values()), "empty periods get digests too"

    with capsys.disabled():
        assert validators_agree(aws_cli, pipeline, trail, start, end) == (len(digests), len(log_files))

    for name, tamper, expected in tampering(s3, bucket, digests):
        restore = tamper()
        try:
            region = expected.split("/CloudTrail")[1].split("/")[1]
            theirs, ours = both_validators(aws_cli, pipeline, trail, start, end, region)
            for result in (theirs, ours):
                assert result.returncode == 1, f"{name}: {result.stdout}{result.stderr}"
                assert expected in result.stderr.splitlines(), f"{name}: {result.stderr}"
            with capsys.disabled():
                print(f"{name}: {expected}")
        finally:
            restore()


def tampering(s3: Any, bucket: str, digests: dict[str, tuple[dict[str, Any], dict[str, str]]]
              ) -> list[tuple[str, Callable[[], Callable[[], None]], str]]:
    """(name, tamper -> restore, the INVALID line both validators must print) for each kind of tampering."""
    followed = {document["previousDigestS3Object"] for document, _ in digests.values()}
    middle = max((key for key, (document, _) in digests.items()
                  if key in followed and document["previousDigestS3Object"]),
                 key=lambda key: len(digests[key][0]["logFiles"]))
    files = [entry["s3Object"] for entry in digests[middle][0]["logFiles"]]
    assert len(files) >= 2, "a linked digest in the middle of a chain lists two log files to tamper with"
    log_a, log_b = files[:2]

    def saved(key: str) -> Callable[[], None]:
        response = s3.get_object(Bucket=bucket, Key=key)
        body, metadata = response["Body"].read(), response["Metadata"]
        return lambda: s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)

    def change_one_byte() -> Callable[[], None]:
        restore = saved(log_a)
        content = bytearray(gzip.decompress(s3.get_object(Bucket=bucket, Key=log_a)["Body"].read()))
        content[len(content) // 2] ^= 0x01
        s3.put_object(Bucket=bucket, Key=log_a, Body=gzip.compress(bytes(content)))
        return restore

    def delete(key: str) -> Callable[[], Callable[[], None]]:
        def tamper() -> Callable[[], None]:
            restore = saved(key)
            s3.delete_object(Bucket=bucket, Key=key)
            return restore
        return tamper

    def edit_digest() -> Callable[[], None]:
        restore = saved(middle)
        response = s3.get_object(Bucket=bucket, Key=middle)
        document = json.loads(gzip.decompress(response["Body"].read()))
        document["logFiles"] = document["logFiles"][1:]
        s3.put_object(Bucket=bucket, Key=middle, Body=gzip.compress(json.dumps(document).encode()),
                      Metadata=response["Metadata"])
        return restore

    def remove_signature() -> Callable[[], None]:
        restore = saved(middle)
        s3.copy_object(Bucket=bucket, Key=middle, CopySource={"Bucket": bucket, "Key": middle},
                       MetadataDirective="REPLACE", Metadata={})
        return restore

    return [
        ("one changed byte in a log file", change_one_byte,
         f"Log file\ts3://{bucket}/{log_a}\tINVALID: hash value doesn't match"),
        ("a deleted log file", delete(log_b), f"Log file\ts3://{bucket}/{log_b}\tINVALID: not found"),
        ("a deleted digest", delete(middle), f"Digest file\ts3://{bucket}/{middle}\tINVALID: not found"),
        ("an edited digest", edit_digest,
         f"Digest file\ts3://{bucket}/{middle}\tINVALID: signature verification failed"),
        ("a digest without its signature metadata", remove_signature,
         f"Digest file\ts3://{bucket}/{middle}\tINVALID: signature verification failed"),
    ]


def test_a_kms_key_signs_digests_and_no_private_key_touches_disk(stack: Endpoints, tmp_path: Path) -> None:
    kms = boto3.client("kms", endpoint_url=stack.aws_endpoint_url)
    key_arn = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    keys = SigningKeys(tmp_path, rotation_s=86_400, kms_key_id=key_arn, kms_client=kms)
    key = keys.current()
    der = base64.b64decode(key.value)
    assert key.value.startswith("MIIBCgKCAQEA") and key.fingerprint == hashlib.md5(der).hexdigest()
    assert verify(load_pkcs1(der), keys.sign(key, b"string to sign"), b"string to sign")
    assert [path.name for path in tmp_path.iterdir()] == ["public-keys.json"]
    assert read_public_keys(tmp_path) == [key] and key.kms_key_id == key_arn
