"""`kafkatrail validate-logs`: the checks and verdicts of `aws cloudtrail validate-logs` (docs/cloudtrail.md §5).

For each digest chain in range (one per account and source region of the trail, or every chain under the
bucket and prefix), walk from the newest digest back along `previousDigestS3Object`: check each digest's
format, location, public key and signature, then the SHA-256 of every log file it lists. Log files are
fetched and hashed concurrently. Only the CloudTrail API (DescribeTrails, ListPublicKeys) and S3 are used,
so it validates AWS's own trails as well as kafkatrail's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from kafkatrail.sinks.digest_files import ChainId, key_time, parse_time, string_to_sign, time_text
from kafkatrail.sinks.signing_keys import load_pkcs1, verify

REQUIRED_MEMBERS = ("digestStartTime", "digestEndTime", "digestS3Bucket", "digestS3Object",
                    "digestPublicKeyFingerprint", "previousDigestSignature")
DIGEST_NAME = re.compile(r"^(?P<account>\d{12})_CloudTrail-Digest_(?P<region>[a-z0-9-]+)_(?P<trail>.+)_"
                         r"(?P<home>[a-z0-9-]+)_(?P<end>\d{8}T\d{6}Z)\.json\.gz$")
TRAIL_ARN = re.compile(r"^arn:[^:]+:cloudtrail:(?P<home>[^:]+):(?P<account>\d{12}):trail/(?P<name>.+)$")


class ValidationError(Exception):
    """Validation could not run (bad arguments, no trail, no public keys)."""


@dataclass
class Verdict:
    """One checked file: `problem` None means valid."""

    kind: str
    bucket: str
    key: str
    problem: str | None = None

    def line(self) -> str:
        return f"{self.kind}\ts3://{self.bucket}/{self.key}\t{'valid' if self.problem is None else 'INVALID: '}" + (
            self.problem or "")


@dataclass
class DigestCheck:
    """A checked digest, its window when it could be read, and the pending checks of its log files."""

    verdict: Verdict
    start: datetime | None = None
    end: datetime | None = None
    logs: list[Future[Verdict]] = field(default_factory=list)
    gap: str | None = None


def check_log_file(s3: Any, bucket: str, key: str, expected_sha256: str) -> Verdict:
    """Fetch, inflate one gzip member, hash and compare."""
    verdict = Verdict("Log file", bucket, key)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        verdict.problem = "not found" if _code(exc) in ("NoSuchKey", "404") else str(exc)
        return verdict
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        content = inflater.decompress(body) + inflater.flush()
    except zlib.error:
        verdict.problem = "invalid format"
        return verdict
    if inflater.unused_data:
        verdict.problem = "unexpected data after end of compressed stream"
    elif hashlib.sha256(content).hexdigest() != expected_sha256:
        verdict.problem = "hash value doesn't match"
    return verdict


def check_digest(s3: Any, bucket: str, key: str, public_keys: dict[str, bytes],
                 home_region: str) -> tuple[Verdict, dict[str, Any] | None]:
    """The digest's verdict, and its document when it is valid (its log files are to be checked then)."""
    verdict = Verdict("Digest file", bucket, key)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        verdict.problem = "not found" if _code(exc) in ("NoSuchKey", "404") else str(exc)
        return verdict, None
    try:
        content = gzip.decompress(response["Body"].read())
        document = json.loads(content)
        if not isinstance(document, dict) or any(member not in document for member in REQUIRED_MEMBERS):
            raise ValueError("required member missing")
        if not isinstance(document.get("logFiles", []), list):
            raise ValueError("logFiles: not a list")
    except (OSError, EOFError, ValueError):
        verdict.problem = "invalid format"
        return verdict, None
    if document["digestS3Bucket"] != bucket or document["digestS3Object"] != key:
        verdict.problem = "has been moved from its original location"
        return verdict, None
    fingerprint = document["digestPublicKeyFingerprint"]
    if fingerprint not in public_keys:
        verdict.problem = f"public key not found in region {home_region} for fingerprint {fingerprint}"
        return verdict, None
    try:
        public_key: rsa.RSAPublicKey = load_pkcs1(public_keys[fingerprint])
    except ValueError:
        verdict.problem = f"Unable to load PKCS #1 key with fingerprint {fingerprint}"
        return verdict, None
    metadata = response.get("Metadata", {})
    try:
        if "signature-algorithm" not in metadata:
            raise KeyError("signature-algorithm")
        signature = bytes.fromhex(metadata["signature"])
    except (KeyError, ValueError):
        verdict.problem = "signature verification failed"
        return verdict, None
    if not verify(public_key, signature, string_to_sign(document, hashlib.sha256(content).hexdigest())):
        verdict.problem = "signature verification failed"
        return verdict, None
    return verdict, document


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def chains_in(s3: Any, bucket: str, prefix: str, start: datetime, end: datetime,
              trail: tuple[str, str] | None = None, region: str | None = None) -> dict[ChainId, list[str]]:
    """Digest keys per chain under `[prefix/]AWSLogs/` whose end time is in [start - 1 min, end + 1 h].

    `trail` = (name, home region) keeps that trail's chains only; `region` one source region only.
    """
    root = f"{prefix.strip('/')}/AWSLogs/" if prefix.strip("/") else "AWSLogs/"
    low, high = start - timedelta(minutes=1), end + timedelta(hours=1)
    chains: dict[ChainId, list[str]] = {}
    for account_folder, organization_id in _account_folders(s3, bucket, root):
        account = account_folder.rstrip("/").rsplit("/", 1)[-1]
        for region_folder in _folders(s3, bucket, f"{account_folder}CloudTrail-Digest/"):
            source_region = region_folder.rstrip("/").rsplit("/", 1)[-1]
            if region and source_region != region:
                continue
            for key in _keys(s3, bucket, region_folder, start_after=f"{region_folder}{low:%Y/%m/%d}/"):
                match = DIGEST_NAME.match(key.rsplit("/", 1)[-1])
                if not match or match["account"] != account or match["region"] != source_region:
                    continue
                if trail and (match["trail"], match["home"]) != trail:
                    continue
                if not low <= key_time(key) <= high:
                    continue
                chain = ChainId(match["trail"], match["home"], bucket, prefix.strip("/"), organization_id, account,
                                source_region)
                if chain.owns(key):
                    chains.setdefault(chain, []).append(key)
    return {chain: sorted(keys, key=key_time) for chain, keys in chains.items()}


def _account_folders(s3: Any, bucket: str, root: str) -> Iterator[tuple[str, str | None]]:
    for folder in _folders(s3, bucket, root):
        name = folder.removeprefix(root).rstrip("/")
        if name.isdigit() and len(name) == 12:
            yield folder, None
        elif name.startswith("o-"):
            for member in _folders(s3, bucket, folder):
                account = member.removeprefix(folder).rstrip("/")
                if account.isdigit() and len(account) == 12:
                    yield member, name


def _folders(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]


def _keys(s3: Any, bucket: str, prefix: str, start_after: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, StartAfter=start_after)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


class LogValidator:
    """Walks digest chains and checks digests and log files, with `workers` concurrent log file checks."""

    def __init__(self, s3: Any, public_keys: dict[str, bytes], workers: int = 16) -> None:
        self.s3 = s3
        self.public_keys = public_keys
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def walk(self, chain: ChainId, keys: list[str], start: datetime) -> Iterator[DigestCheck]:
        """Newest digest first, following previous-digest links; a broken link resumes at the next older listed key."""
        remaining = list(keys)
        bucket = chain.bucket
        key: str | None = remaining.pop() if remaining else None
        while key is not None:
            verdict, document = check_digest(self.s3, bucket, key, self.public_keys, chain.home_region)
            if document is None:
                yield DigestCheck(verdict)
                key = self._older(remaining, key)
                continue
            check = DigestCheck(verdict, parse_time(document["digestStartTime"]),
                                parse_time(document["digestEndTime"]))
            check.logs = [self.pool.submit(check_log_file, self.s3, entry["s3Bucket"], entry["s3Object"],
                                           entry["hashValue"]) for entry in document.get("logFiles", [])]
            previous = document.get("previousDigestS3Object")
            if check.start is not None and check.start < start:
                yield check
                return
            if previous:
                bucket = document.get("previousDigestS3Bucket") or bucket
                remaining = [k for k in remaining if k < previous]
                key = previous
            else:
                key = self._older(remaining, key)
                if key is not None:
                    check.gap = (f"No log files were delivered by CloudTrail between {time_text(key_time(key))} and "
                                 f"{document['digestStartTime']}")
            yield check

    @staticmethod
    def _older(remaining: list[str], key: str) -> str | None:
        while remaining:
            candidate = remaining.pop()
            if candidate < key:
                return candidate
        return None


@dataclass
class Tally:
    digests_valid: int = 0
    digests_invalid: int = 0
    logs_valid: int = 0
    logs_invalid: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, verdict: Verdict) -> None:
        digest = verdict.kind == "Digest file"
        valid = verdict.problem is None
        if digest:
            self.digests_valid += valid
            self.digests_invalid += not valid
        else:
            self.logs_valid += valid
            self.logs_invalid += not valid

    def lines(self) -> list[str]:
        def counts(valid: int, invalid: int, what: str) -> str:
            total = valid + invalid
            text = f"{valid}/{total} {what} valid"
            return text + (f", {invalid}/{total} {what} INVALID" if invalid else "")

        return [counts(self.digests_valid, self.digests_invalid, "digest files"),
                counts(self.logs_valid, self.logs_invalid, "log files")]


def validate(s3: Any, public_keys: dict[str, bytes], chains: dict[ChainId, list[str]], start: datetime,
             end: datetime, verbose: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print the verdicts and the summary; 1 if anything is invalid, else 0."""
    print(f"Validating log files for {len(chains)} digest chain(s)", file=out)
    tally = Tally()
    validator = LogValidator(s3, public_keys)
    try:
        for chain, keys in sorted(chains.items(), key=lambda item: item[0].folder):
            for check in validator.walk(chain, keys, start):
                _report(check.verdict, tally, verbose, out, err)
                if check.start is not None:
                    tally.first = min(filter(None, (tally.first, check.start)))
                    tally.last = max(filter(None, (tally.last, check.end)))
                for future in check.logs:
                    _report(future.result(), tally, verbose, out, err)
                if check.gap:
                    print(check.gap, file=err)
    finally:
        validator.close()
    print(f"\nResults requested for {time_text(start)} to {time_text(end)}", file=out)
    if not tally.digests_valid + tally.digests_invalid:
        print("No digests found", file=out)
        return 0
    if tally.first and tally.last:
        print(f"Results found for {time_text(tally.first)} to {time_text(tally.last)}:", file=out)
    print("\n" + "\n".join(tally.lines()), file=out)
    return 1 if tally.digests_invalid or tally.logs_invalid else 0


def _report(verdict: Verdict, tally: Tally, verbose: bool, out: TextIO, err: TextIO) -> None:
    tally.add(verdict)
    if verdict.problem is not None:
        print(verdict.line(), file=err)
    elif verbose:
        print(verdict.line(), file=out)


def parse_when(text: str, option: str) -> datetime:
    """An ISO 8601 time (`2024-05-01T10:00:00Z`, or a date); naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{option}: not an ISO 8601 date or time (got {text!r})") from None
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def trail_of_arn(trail_arn: str) -> tuple[str, str]:
    """(trail name, home region) of a trail ARN."""
    match = TRAIL_ARN.match(trail_arn)
    if not match:
        raise ValidationError(f"--trail-arn: must look like arn:aws:cloudtrail:<region>:<account>:trail/<name> "
                              f"(got {trail_arn!r})")
    return match["name"], match["home"]


def run_validation(cloudtrail: Any, s3: Any, trail_arn: str | None, bucket: str | None, prefix: str | None,
                   start: datetime, end: datetime, region: str | None, verbose: bool) -> int:
    """Resolve the trail (DescribeTrails) and the public keys (ListPublicKeys), then validate."""
    trail: tuple[str, str] | None = None
    if trail_arn:
        trail = trail_of_arn(trail_arn)
        if bucket is None:
            found = [t for t in cloudtrail.describe_trails()["trailList"] if t.get("TrailARN") == trail_arn]
            if not found:
                raise ValidationError(f"--trail-arn: {trail_arn}: no such trail (DescribeTrails)")
            bucket, prefix = found[0]["S3BucketName"], found[0].get("S3KeyPrefix")
    if bucket is None:
        raise ValidationError("give --trail-arn or --s3-bucket")
    if end < start:
        raise ValidationError("--end-time: must not be before --start-time")
    keys = cloudtrail.list_public_keys(StartTime=start, EndTime=end + timedelta(hours=2))["PublicKeyList"]
    if not keys:
        raise ValidationError(f"No public keys found between {time_text(start)} and {time_text(end)}")
    public_keys = {key["Fingerprint"]: key["Value"] for key in keys}
    chains = chains_in(s3, bucket, prefix or "", start, end, trail, region)
    return validate(s3, public_keys, chains, start, end, verbose)
