"""The CloudTrail API as boto3 sees it: JSON 1.1 over HTTP, trail objects, shadow trails, errors, public keys."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kafkatrail.api import CloudTrailApi, make_handler
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.trails.model import Trail

HOME = Trail(name="audit", home_region="eu-west-1", account_id="111122223333", s3_bucket_name="audit-bucket",
             s3_key_prefix="p", is_multi_region_trail=True, log_file_validation_enabled=True,
             sns_topic_name="files")
LOCAL = Trail(name="local", home_region="us-east-1", account_id="111122223333", s3_bucket_name="local-bucket")
NOW = 1_714_560_000


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    SigningKeys(tmp_path, rotation_s=86_400, clock=lambda: NOW).current()
    api = CloudTrailApi(lambda: {t.arn: t for t in (HOME, LOCAL)}, tmp_path, clock=lambda: NOW)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api, "us-east-1"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client(endpoint: str, region: str) -> Any:
    return boto3.client("cloudtrail", endpoint_url=endpoint, region_name=region, aws_access_key_id="k",
                        aws_secret_access_key="s", config=Config(retries={"max_attempts": 1}))


@pytest.mark.parametrize(("region", "request_members", "names"), [
    ("us-east-1", {}, ["audit", "local"]),
    ("us-east-1", {"includeShadowTrails": False}, ["local"]),
    ("ap-southeast-2", {}, ["audit"]),
    ("eu-west-1", {}, ["audit"]),
    ("us-east-1", {"trailNameList": ["local"]}, ["local"]),
    ("us-east-1", {"trailNameList": ["audit"]}, []),
    ("us-east-1", {"trailNameList": [HOME.arn]}, ["audit"]),
])
def test_describe_trails_shows_the_regions_trails_and_shadows(endpoint: str, region: str,
                                                              request_members: dict[str, Any],
                                                              names: list[str]) -> None:
    trails = client(endpoint, region).describe_trails(**request_members)["trailList"]
    assert sorted(t["Name"] for t in trails) == names


def test_a_trail_object_has_the_models_members(endpoint: str) -> None:
    trail = client(endpoint, "eu-west-1").get_trail(Name="audit")["Trail"]
    assert trail == {
        "Name": "audit", "S3BucketName": "audit-bucket", "S3KeyPrefix": "p", "SnsTopicName": "files",
        "SnsTopicARN": "arn:aws:sns:eu-west-1:111122223333:files", "IncludeGlobalServiceEvents": True,
        "IsMultiRegionTrail": True, "HomeRegion": "eu-west-1", "TrailARN": HOME.arn,
        "LogFileValidationEnabled": True, "HasCustomEventSelectors": False, "HasInsightSelectors": False,
        "IsOrganizationTrail": False}


@pytest.mark.parametrize(("region", "name", "code"), [
    ("us-east-1", "audit", "TrailNotFoundException"),
    ("eu-west-1", "nope", "TrailNotFoundException"),
    ("eu-west-1", "arn:aws:cloudtrail:eu-west-1:1:trail/x", "CloudTrailARNInvalidException"),
])
def test_get_trail_errors_are_aws_shaped(endpoint: str, region: str, name: str, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        client(endpoint, region).get_trail(Name=name)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_list_public_keys_returns_der_keys_in_range(endpoint: str, tmp_path: Path) -> None:
    ct = client(endpoint, "us-east-1")
    (key,) = ct.list_public_keys(StartTime=datetime.fromtimestamp(NOW - 3600, UTC),
                                 EndTime=datetime.fromtimestamp(NOW + 3600, UTC))["PublicKeyList"]
    assert isinstance(key["Value"], bytes) and key["Value"][:4] == base64.b64decode("MIIBCgKCAQEA")[:4]
    assert key["ValidityStartTime"] == datetime.fromtimestamp(NOW, UTC)
    assert ct.list_public_keys(StartTime=datetime.fromtimestamp(NOW - 7200, UTC),
                               EndTime=datetime.fromtimestamp(NOW - 3600, UTC))["PublicKeyList"] == []
    with pytest.raises(ClientError, match="InvalidTimeRangeException"):
        ct.list_public_keys(StartTime=datetime.fromtimestamp(NOW, UTC), EndTime=datetime.fromtimestamp(NOW - 1, UTC))


def raw_exchange(endpoint: str, request: bytes, timeout_s: float = 15) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is; (status, headers, body) of the answer."""
    import socket
    from http.client import HTTPResponse

    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as connection:
        connection.sendall(request)
        response = HTTPResponse(connection)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.DescribeTrails"
HOSTILE = {
    "a negative Content-Length": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: -1\r\n\r\n",
        400, "SerializationException"),
    "a Content-Length that is no number": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: abc\r\n\r\n",
        400, "SerializationException"),
    "a body over the limit, announced and not sent": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: 104857600\r\n\r\n",
        413, "RequestEntityTooLarge"),
    "another method": ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "InvalidRequest"),
    "a broken request line": ("NONSENSE\r\n\r\n", 400, "InvalidRequest"),
}


@pytest.mark.parametrize(("request_text", "status", "code"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_requests_get_a_json_error_at_once(endpoint: str, request_text: str, status: int, code: str) -> None:
    answered, headers, body = raw_exchange(endpoint, request_text.encode(), timeout_s=5)
    assert answered == status
    assert json.loads(body)["__type"] == code
    assert "Python" not in headers.get("Server", "") and "BaseHTTP" not in headers.get("Server", "")


def test_a_client_that_stops_sending_gets_a_timeout_and_gives_its_thread_back(tmp_path: Path) -> None:
    api = CloudTrailApi(lambda: {}, tmp_path, clock=lambda: NOW)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api, "us-east-1", timeout_s=0.5))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        began = time.monotonic()
        status, _, body = raw_exchange(f"http://127.0.0.1:{server.server_address[1]}", (
            f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: 10\r\n\r\n{{").encode())
        assert (status, json.loads(body)["__type"]) == (408, "RequestTimeout")
        assert time.monotonic() - began < 5
    finally:
        server.shutdown()
        server.server_close()
