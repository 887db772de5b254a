"""Digest key layout, document, string to sign and chain links (docs/cloudtrail.md §4)."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kafkatrail.sinks.digest_files import (
    ChainId,
    LogFileEntry,
    build_digest,
    digest_document,
    key_time,
    period_end_after,
    previous_from_digest,
    string_to_sign,
)

END = datetime(2024, 5, 1, 11, 1, 31, tzinfo=UTC)
START = datetime(2024, 5, 1, 10, 1, 31, tzinfo=UTC)


def chain(prefix: str = "", org: str | None = None) -> ChainId:
    return ChainId("my-trail", "us-east-1", "audit-bucket", prefix, org, "111122223333", "eu-west-1")


@pytest.mark.parametrize(("prefix", "org", "key"), [
    ("", None, "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
               "111122223333_CloudTrail-Digest_eu-west-1_my-trail_us-east-1_20240501T110131Z.json.gz"),
    ("my/prefix", None, "my/prefix/AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
                        "111122223333_CloudTrail-Digest_eu-west-1_my-trail_us-east-1_20240501T110131Z.json.gz"),
    ("/slashes/", None, "slashes/AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
                        "111122223333_CloudTrail-Digest_eu-west-1_my-trail_us-east-1_20240501T110131Z.json.gz"),
    ("", "o-a1b2c3d4e5", "AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
                         "111122223333_CloudTrail-Digest_eu-west-1_my-trail_us-east-1_20240501T110131Z.json.gz"),
])
def test_digest_keys_follow_the_validators_layout(prefix: str, org: str | None, key: str) -> None:
    assert chain(prefix, org).key(END) == key
    assert chain(prefix, org).owns(key)
    assert key[-24:-8] == "20240501T110131Z" and key_time(key) == END


@pytest.mark.parametrize("other", [
    "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
    "111122223333_CloudTrail-Digest_eu-west-1_other-trail_us-east-1_20240501T110131Z.json.gz",
    "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/"
    "111122223333_CloudTrail-Digest_eu-west-1_my-trail_us-east-1_20240501T110131Z_backfill.json.gz",
    "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/111122223333_CloudTrail_eu-west-1_20240501T1005Z_x.json.gz",
])
def test_a_chain_does_not_own_other_trails_digests_backfills_or_log_files(other: str) -> None:
    assert not chain().owns(other)


def entry(name: str, oldest: str, newest: str) -> LogFileEntry:
    return LogFileEntry("audit-bucket", f"AWSLogs/{name}.json.gz", hashlib.sha256(name.encode()).hexdigest(),
                        oldest, newest)


def test_a_starting_digest_has_null_links_and_an_empty_one_null_event_times() -> None:
    document = digest_document(chain(), START, END, [], None, "ab" * 16)
    assert document["digestStartTime"] == "2024-05-01T10:01:31Z"
    assert document["digestEndTime"] == "2024-05-01T11:01:31Z"
    assert document["digestS3Object"] == chain().key(END)
    assert document["logFiles"] == []
    assert document["newestEventTime"] is None and document["oldestEventTime"] is None
    assert all(document[f"previousDigest{m}"] is None
               for m in ("S3Bucket", "S3Object", "HashValue", "HashAlgorithm", "Signature"))


def test_event_times_span_every_listed_file() -> None:
    files = [entry("a", "2024-05-01T09:58:40Z", "2024-05-01T10:04:11Z"),
             entry("b", "2024-05-01T10:10:00Z", "2024-05-01T10:54:02Z")]
    document = digest_document(chain(), START, END, files, None, "ab" * 16)
    assert (document["oldestEventTime"], document["newestEventTime"]) == ("2024-05-01T09:58:40Z",
                                                                          "2024-05-01T10:54:02Z")
    assert [f["hashValue"] for f in document["logFiles"]] == [f.sha256 for f in files]
    assert document["logFiles"][0]["hashAlgorithm"] == "SHA-256"


@pytest.mark.parametrize(("previous_signature", "last_line"), [(None, "null"), ("7d21" * 128, "7d21" * 128)])
def test_the_string_to_sign_has_four_lines_and_no_trailing_newline(previous_signature: str | None,
                                                                    last_line: str) -> None:
    document = {"digestEndTime": "2024-05-01T11:01:31Z", "digestS3Bucket": "b", "digestS3Object": "k/x.json.gz",
                "previousDigestSignature": previous_signature}
    assert string_to_sign(document, "ff" * 32) == (
        f"2024-05-01T11:01:31Z\nb/k/x.json.gz\n{'ff' * 32}\n{last_line}").encode()


def test_a_two_digest_chain_links_signature_hash_and_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(message: bytes) -> bytes:
        return private.sign(message, padding.PKCS1v15(), hashes.SHA256())

    first = build_digest(digest_document(chain(), START, END, [], None, "ab" * 16), sign)
    later = datetime(2024, 5, 1, 12, 1, 31, tzinfo=UTC)
    second_document = digest_document(chain(), END, later, [], first.previous_for_next, "ab" * 16)
    second = build_digest(second_document, sign)

    content = gzip.decompress(first.body)
    assert first.metadata["signature-algorithm"] == "SHA256withRSA"
    assert previous_from_digest("audit-bucket", chain().key(END), content, first.metadata["signature"]) == \
        first.previous_for_next
    assert second_document["previousDigestS3Object"] == chain().key(END)
    assert second_document["previousDigestHashValue"] == hashlib.sha256(content).hexdigest()
    assert second_document["previousDigestSignature"] == first.metadata["signature"]
    second_content = gzip.decompress(second.body)
    assert json.loads(second_content) == second_document
    private.public_key().verify(bytes.fromhex(second.metadata["signature"]),
                                string_to_sign(second_document, hashlib.sha256(second_content).hexdigest()),
                                padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(("now", "period", "end"), [
    (1714561291.0, 3600, 1714561200 + 3600),
    (1714561200.0, 3600, 1714561200 + 3600),
    (1714561291.9, 5, 1714561295),
])
def test_periods_end_on_multiples_of_the_period(now: float, period: int, end: int) -> None:
    assert period_end_after(now, period).timestamp() == end
