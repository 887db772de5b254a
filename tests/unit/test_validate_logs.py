"""validate-logs verdicts on a three-digest chain in a fake S3: valid, and each kind of tampering."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kafkatrail.sinks.digest_files import ChainId, LogFileEntry, Previous, build_digest, digest_document
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.validate_logs import chains_in, validate

BUCKET = "audit-bucket"
CHAIN = ChainId("my-trail", "us-east-1", BUCKET, "p", None, "111122223333", "eu-west-1")
T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


class FakeS3:
    """get_object and list_objects_v2 (Prefix, Delimiter, StartAfter) over a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}

    def put(self, bucket: str, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        self.objects[bucket, key] = (body, dict(metadata or {}))

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "missing"}}, "GetObject")
        body, metadata = self.objects[Bucket, Key]
        return {"Body": io.BytesIO(body), "Metadata": dict(metadata)}

    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str, Delimiter: str | None = None,
                 StartAfter: str = "") -> Iterator[dict[str, Any]]:
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix) and k > StartAfter)
        if Delimiter:
            folders = sorted({Prefix + k[len(Prefix):].split(Delimiter, 1)[0] + Delimiter for k in keys
                              if Delimiter in k[len(Prefix):]})
            yield {"CommonPrefixes": [{"Prefix": f} for f in folders]}
        else:
            yield {"Contents": [{"Key": k} for k in keys]}


def log_key(n: int) -> str:
    return f"p/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/111122223333_CloudTrail_eu-west-1_{n}.json.gz"


@pytest.fixture
def world(tmp_path: Path) -> tuple[FakeS3, dict[str, bytes], list[str]]:
    """Three hourly digests (the middle one empty) listing three log files; returns (s3, keys, digest keys)."""
    s3 = FakeS3()
    keys = SigningKeys(tmp_path, rotation_s=86_400)
    key = keys.current()
    previous: Previous | None = None
    digest_keys = []
    files_per_digest = [[1, 2], [], [3]]
    for hour, numbers in enumerate(files_per_digest):
        entries = []
        for n in numbers:
            content = json.dumps({"Records": [{"eventID": str(n)}]}).encode()
            s3.put(BUCKET, log_key(n), gzip.compress(content))
            entries.append(LogFileEntry(BUCKET, log_key(n), hashlib.sha256(content).hexdigest(),
                                        "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z"))
        start, end = T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1)
        document = digest_document(CHAIN, start, end, entries, previous, key.fingerprint)
        signed = build_digest(document, lambda message: keys.sign(key, message))
        s3.put(BUCKET, CHAIN.key(end), signed.body, signed.metadata)
        previous = signed.previous_for_next
        digest_keys.append(CHAIN.key(end))
    return s3, {key.fingerprint: base64.b64decode(key.value)}, digest_keys


def run(s3: FakeS3, public_keys: dict[str, bytes]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    chains = chains_in(s3, BUCKET, "p", T0, T0 + timedelta(hours=3))
    status = validate(s3, public_keys, chains, T0, T0 + timedelta(hours=3), verbose=True, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def edit_digest(s3: FakeS3, key: str, change: Callable[[dict[str, Any]], None]) -> None:
    body, metadata = s3.objects[BUCKET, key]
    document = json.loads(gzip.decompress(body))
    change(document)
    s3.put(BUCKET, key, gzip.compress(json.dumps(document).encode()), metadata)


def change_log_byte(s3: FakeS3, digests: list[str]) -> None:
    body, _ = s3.objects[BUCKET, log_key(2)]
    content = bytearray(gzip.decompress(body))
    content[15] ^= 1
    s3.put(BUCKET, log_key(2), gzip.compress(bytes(content)))


def append_gzip_member(s3: FakeS3, digests: list[str]) -> None:
    body, _ = s3.objects[BUCKET, log_key(3)]
    s3.put(BUCKET, log_key(3), body + gzip.compress(b"more"))


def remove_signature(s3: FakeS3, digests: list[str]) -> None:
    body, _ = s3.objects[BUCKET, digests[1]]
    s3.put(BUCKET, digests[1], body, {})


def move_digest(s3: FakeS3, digests: list[str]) -> None:
    edit_digest(s3, digests[2], lambda d: d.update(digestS3Bucket="elsewhere"))


def unknown_fingerprint(s3: FakeS3, digests: list[str]) -> None:
    edit_digest(s3, digests[2], lambda d: d.update(digestPublicKeyFingerprint="0" * 32))


def not_json(s3: FakeS3, digests: list[str]) -> None:
    _, metadata = s3.objects[BUCKET, digests[2]]
    s3.put(BUCKET, digests[2], gzip.compress(b"{not json"), metadata)


@pytest.mark.parametrize(("tamper", "invalid"), [
    (lambda s3, d: None, []),
    (change_log_byte, [f"Log file\ts3://{BUCKET}/{log_key(2)}\tINVALID: hash value doesn't match"]),
    (append_gzip_member, [f"Log file\ts3://{BUCKET}/{log_key(3)}\tINVALID: unexpected data after end of "
                          "compressed stream"]),
    (lambda s3, d: s3.objects.pop((BUCKET, log_key(1))), [f"Log file\ts3://{BUCKET}/{log_key(1)}\tINVALID: not found"]),
    (lambda s3, d: s3.objects.pop((BUCKET, d[1])), [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=2))}"
                                                    "\tINVALID: not found"]),
    (lambda s3, d: edit_digest(s3, d[0], lambda doc: doc["logFiles"].pop()),
     [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=1))}\tINVALID: signature verification failed"]),
    (remove_signature, [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=2))}\tINVALID: signature "
                        "verification failed"]),
    (move_digest, [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=3))}\tINVALID: has been moved from "
                   "its original location"]),
    (unknown_fingerprint, [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=3))}\tINVALID: public key "
                           f"not found in region us-east-1 for fingerprint {'0' * 32}"]),
    (not_json, [f"Digest file\ts3://{BUCKET}/{CHAIN.key(T0 + timedelta(hours=3))}\tINVALID: invalid format"]),
])
def test_each_kind_of_tampering_gets_the_aws_verdict(world: tuple[FakeS3, dict[str, bytes], list[str]],
                                                     tamper: Callable[[FakeS3, list[str]], None],
                                                     invalid: list[str]) -> None:
    s3, public_keys, digests = world
    tamper(s3, digests)
    status, out, err = run(s3, public_keys)
    assert [line for line in err.splitlines() if "INVALID" in line] == invalid
    assert status == (1 if invalid else 0)
    if not invalid:
        assert "3/3 digest files valid\n3/3 log files valid" in out
        assert "Results found for 2024-05-01T10:00:00Z to 2024-05-01T13:00:00Z:" in out


def test_a_chain_that_starts_over_is_a_gap_not_an_error(world: tuple[FakeS3, dict[str, bytes], list[str]],
                                                         tmp_path: Path) -> None:
    s3, public_keys, digests = world
    keys = SigningKeys(tmp_path / "other", rotation_s=86_400)
    key = keys.current()
    public_keys[key.fingerprint] = base64.b64decode(key.value)
    end = T0 + timedelta(hours=3)
    restarted = build_digest(digest_document(CHAIN, end - timedelta(minutes=30), end, [], None, key.fingerprint),
                             lambda message: keys.sign(key, message))
    s3.put(BUCKET, digests[2], restarted.body, restarted.metadata)
    status, out, err = run(s3, public_keys)
    assert status == 0
    assert "No log files were delivered by CloudTrail between 2024-05-01T12:00:00Z and 2024-05-01T12:30:00Z" in err
    assert "3/3 digest files valid\n2/2 log files valid" in out


def test_organization_chains_are_found_per_member_account_and_other_trails_left_out(tmp_path: Path) -> None:
    s3 = FakeS3()
    end = T0 + timedelta(hours=1)
    members = [ChainId("org", "us-east-1", BUCKET, "", "o-a1b2c3d4e5", account, "eu-west-1")
               for account in ("111122223333", "444455556666")]
    other = ChainId("other", "us-east-1", BUCKET, "", "o-a1b2c3d4e5", "111122223333", "eu-west-1")
    for chain in [*members, other]:
        s3.put(BUCKET, chain.key(end), b"")
    s3.put(BUCKET, members[0].key(T0 + timedelta(days=2)), b"")
    found = chains_in(s3, BUCKET, "", T0, end, trail=("org", "us-east-1"))
    assert found == {chain: [chain.key(end)] for chain in members}
