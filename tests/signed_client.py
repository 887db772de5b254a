"""A signed client of `kafkatrail api` for the API tests: boto3's CloudTrail client, and requests signed with
botocore's SigV4 sent as raw HTTP (so a test can send what a client library would refuse to, at any time)."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from http.client import HTTPResponse
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."


def cloudtrail_client(url: str, region: str, key: str, secret: str) -> Any:
    """boto3's CloudTrail client for the API at `url`, one attempt per call."""
    return boto3.client("cloudtrail", endpoint_url=url, region_name=region, aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


def exchange(url: str, request: bytes, timeout_s: float = 15) -> tuple[int, dict[str, str], bytes]:
    """Send the raw `request` on a connection of its own; the status, headers and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as connection:
        connection.sendall(request)
        response = HTTPResponse(connection)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def signed_headers(url: str, operation: str | None, body: bytes, *, key: str, secret: str, region: str,
                   at: float | None = None, service: str = "cloudtrail") -> dict[str, str]:
    """The headers of a POST of `body` to `url` calling `operation` (None: no X-Amz-Target), signed by botocore's
    SigV4Auth as of `at` (default now)."""
    amz_date = datetime.fromtimestamp(time.time() if at is None else at, UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": "application/x-amz-json-1.1", "Host": url.removeprefix("http://"),
               "X-Amz-Date": amz_date}
    if operation is not None:
        headers["X-Amz-Target"] = TARGET_PREFIX + operation
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret), service, region)
    to_sign = signer.headers_to_sign(request)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{signer.credential_scope(request)}, "
                                f"SignedHeaders={signer.signed_headers(to_sign)}, Signature={signature}")
    return headers


def signed_request(url: str, operation: str | None, body: bytes, **signing: Any) -> bytes:
    """The raw HTTP request of `signed_headers` (same arguments), body included."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in signed_headers(url, operation, body, **signing).items())
    return f"POST / HTTP/1.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body


def signed_call(url: str, operation: str | None, body: bytes, **signing: Any) -> tuple[int, Any]:
    """Send `signed_request` (same arguments); the status and the parsed JSON answer."""
    status, _, answer = exchange(url, signed_request(url, operation, body, **signing))
    return status, json.loads(answer)
