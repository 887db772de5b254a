"""Benchmark: `kafkatrail validate-logs` over thousands of log files in the AWS stand-in.

Stores N small gzipped log files and one signed digest per 100 files (one chain), then times the
validation of the whole chain (the digest walk plus every log file fetched and hashed). Uses the
stand-in at AWS_ENDPOINT_URL, or starts (and stops) a private one.

    .venv/bin/python bench/validate_logs.py [--files 3000]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from kafkatrail.sinks.digest_files import ChainId, LogFileEntry, Previous, build_digest, digest_document
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.stack.aws_standin import start_aws_standin, wait_until_ready
from kafkatrail.stack.processes import free_port, stop
from kafkatrail.validate_logs import chains_in, validate

FILES_PER_DIGEST = 100


def run(endpoint: str, count: int) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    chain = ChainId("bench", "us-east-1", bucket, "", None, "111122223333", "us-east-1")
    keys = SigningKeys(Path(tempfile.mkdtemp()), rotation_s=86_400)
    key = keys.current()
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def store(n: int) -> LogFileEntry:
        content = b'{"Records":[{"eventID":"%d","eventTime":"2026-01-01T00:00:00Z"}]}' % n
        object_key = f"AWSLogs/111122223333/CloudTrail/us-east-1/2026/01/01/file-{n:06d}.json.gz"
        s3.put_object(Bucket=bucket, Key=object_key, Body=gzip.compress(content))
        return LogFileEntry(bucket, object_key, hashlib.sha256(content).hexdigest(), "2026-01-01T00:00:00Z",
                            "2026-01-01T00:00:00Z")

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        entries = list(pool.map(store, range(count)))
    previous: Previous | None = None
    for index in range(0, count, FILES_PER_DIGEST):
        window_start = start + timedelta(hours=index // FILES_PER_DIGEST)
        document = digest_document(chain, window_start, window_start + timedelta(hours=1),
                                   entries[index:index + FILES_PER_DIGEST], previous, key.fingerprint)
        signed = build_digest(document, lambda message: keys.sign(key, message))
        s3.put_object(Bucket=bucket, Key=document["digestS3Object"], Body=signed.body, Metadata=signed.metadata)
        previous = signed.previous_for_next
    print(f"stored {count} log files and {-(-count // FILES_PER_DIGEST)} digests in {time.monotonic() - began:.1f} s")

    end = start + timedelta(hours=count // FILES_PER_DIGEST + 1)
    began = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    chains = chains_in(s3, bucket, "", start, end)
    status = validate(s3, {key.fingerprint: base64.b64decode(key.value)}, chains, start, end, verbose=False,
                      out=out, err=err)
    elapsed = time.monotonic() - began
    print(out.getvalue().strip().splitlines()[-1])
    print(f"validate-logs: {count} log files in {elapsed:.1f} s ({count / elapsed:,.0f} files/s), exit {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3000)
    args = parser.parse_args()
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        run(endpoint, args.files)
        return
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "moto.log"
    pid = start_aws_standin(port, log)
    try:
        wait_until_ready(pid, port, log, 30)
        run(f"http://127.0.0.1:{port}", args.files)
    finally:
        stop(pid, 10)


if __name__ == "__main__":
    main()
