"""`kafkatrail api`: the CloudTrail control-plane API over HTTP, JSON 1.1 protocol (docs/cloudtrail.md §10).

Operations so far: DescribeTrails, GetTrail, ListPublicKeys, enough for `aws cloudtrail validate-logs`.
`CloudTrailApi.operations` maps an operation name (the suffix of `X-Amz-Target`) to a handler taking the
request (region + JSON body) and returning the JSON response; a handler raises `ApiError` for an AWS-shaped
error. More operations are added as more entries of that table.

The trails are the ones on the trails topic (a `TrailFeed` polled by the serving process); the public keys
are the signing-key folder's index (`kafkatrail.sinks.signing_keys`). Requests are not authenticated: the SigV4
header only tells the region. Bind it to a private address.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kafkatrail.core.settings import Settings
from kafkatrail.sinks.signing_keys import keys_between, read_public_keys
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1 << 20  # the largest CloudTrail request (PutEventSelectors) is a few KiB
REQUEST_TIMEOUT_S = 10.0
SIGV4_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/cloudtrail/aws4_request")
TRAIL_ARN = re.compile(r"^arn:[a-z-]+:cloudtrail:[a-z0-9-]+:\d{12}:trail/.+$")


class ApiError(Exception):
    """An error the client gets as `{"__type": code, "Message": message}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ApiRequest:
    """One call: the region it was sent to and its JSON input."""

    region: str
    body: dict[str, Any]


Handler = Callable[[ApiRequest], dict[str, Any]]


def trail_object(trail: Trail) -> dict[str, Any]:
    """The trail as GetTrail and DescribeTrails return it (docs/cloudtrail.md §10); unset strings omitted."""
    sns_arn = None
    if trail.sns_topic_name:
        sns_arn = trail.sns_topic_name if trail.sns_topic_name.startswith("arn:") else (
            f"arn:{trail.partition}:sns:{trail.home_region}:{trail.account_id}:{trail.sns_topic_name}")
    members = {
        "Name": trail.name,
        "S3BucketName": trail.s3_bucket_name,
        "S3KeyPrefix": trail.s3_key_prefix,
        "SnsTopicName": sns_arn.rsplit(":", 1)[-1] if sns_arn else None,
        "SnsTopicARN": sns_arn,
        "IncludeGlobalServiceEvents": trail.include_global_service_events,
        "IsMultiRegionTrail": trail.is_multi_region_trail,
        "HomeRegion": trail.home_region,
        "TrailARN": trail.arn,
        "LogFileValidationEnabled": trail.log_file_validation_enabled,
        "CloudWatchLogsLogGroupArn": trail.cloud_watch_logs_log_group_arn,
        "CloudWatchLogsRoleArn": trail.cloud_watch_logs_role_arn,
        "KmsKeyId": trail.kms_key_id,
        "HasCustomEventSelectors": trail.event_selectors is not None or trail.advanced_event_selectors is not None,
        "HasInsightSelectors": bool(trail.insight_selectors),
        "IsOrganizationTrail": trail.is_organization_trail,
    }
    return {name: value for name, value in members.items() if value is not None}


def epoch_seconds(value: Any, member: str) -> float:
    """A timestamp member as botocore sends it (epoch seconds, or ISO 8601 text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ApiError("InvalidParameterException", f"{member}: must be a timestamp in epoch seconds (got {value!r})")


class CloudTrailApi:
    """The operations, over a view of the trails and of the public keys."""

    def __init__(self, trails: Callable[[], dict[str, Trail]], keys_folder: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.trails = trails
        self.keys_folder = keys_folder
        self.clock = clock
        self.operations: dict[str, Handler] = {
            "DescribeTrails": self.describe_trails,
            "GetTrail": self.get_trail,
            "ListPublicKeys": self.list_public_keys,
        }

    def call(self, operation: str, request: ApiRequest) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise ApiError("UnknownOperationException", f"{operation}: not an operation this endpoint serves "
                                                        f"(serves: {', '.join(sorted(self.operations))})")
        return handler(request)

    def _visible(self, region: str, shadows: bool = True) -> list[Trail]:
        """Trails of `region`: homed there, plus multi-region trails homed elsewhere when `shadows`."""
        return sorted((t for t in self.trails().values()
                       if t.home_region == region or (shadows and t.is_multi_region_trail)), key=lambda t: t.arn)

    def describe_trails(self, request: ApiRequest) -> dict[str, Any]:
        names = request.body.get("trailNameList") or []
        shadows = request.body.get("includeShadowTrails", True)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError("InvalidParameterException", "trailNameList: must be a list of trail names or ARNs")
        trails = self._visible(request.region, shadows is not False)
        if names:
            trails = [t for t in trails if t.arn in names or (t.name in names and t.home_region == request.region)]
        return {"trailList": [trail_object(t) for t in trails]}

    def get_trail(self, request: ApiRequest) -> dict[str, Any]:
        name = request.body.get("Name")
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidTrailNameException", "Name: required, a trail name or ARN")
        if name.startswith("arn:") and not TRAIL_ARN.match(name):
            raise ApiError("CloudTrailARNInvalidException", f"Name: {name!r} is not a trail ARN "
                                                             "(arn:<partition>:cloudtrail:<region>:<account>:trail/<name>)")
        for trail in self._visible(request.region):
            if trail.arn == name or (trail.name == name and trail.home_region == request.region):
                return {"Trail": trail_object(trail)}
        raise ApiError("TrailNotFoundException", f"Unknown trail: {name} in region {request.region}")

    def list_public_keys(self, request: ApiRequest) -> dict[str, Any]:
        if request.body.get("NextToken"):
            raise ApiError("InvalidTokenException", "NextToken: this endpoint returns every key in one page")
        now = self.clock()
        start = epoch_seconds(request.body["StartTime"], "StartTime") if "StartTime" in request.body else now
        end = epoch_seconds(request.body["EndTime"], "EndTime") if "EndTime" in request.body else now
        if start > end:
            raise ApiError("InvalidTimeRangeException", "StartTime: must not be after EndTime")
        keys = keys_between(read_public_keys(self.keys_folder), int(start), int(end) + 1)
        return {"PublicKeyList": [key.to_api() for key in keys]}


def region_of(authorization: str | None, default: str) -> str:
    """The region of a SigV4 `Authorization` header's credential scope, else `default`."""
    match = SIGV4_REGION.search(authorization or "")
    return match.group(1) if match else default


def body_length(header: str | None) -> int:
    """The request body's length from its Content-Length header; ApiError naming the rule when it is unusable."""
    if header is None or header == "":
        return 0
    if not header.isdigit():
        raise ApiError("SerializationException", "Content-Length: must be a whole number of bytes")
    length = int(header)
    if length > MAX_BODY_BYTES:
        raise ApiError("RequestEntityTooLarge", f"request body: at most {MAX_BODY_BYTES:,} bytes", status=413)
    return length


def make_handler(api: CloudTrailApi, default_region: str,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    """An http.server request handler class serving `api` at `POST /`; every other answer is JSON too."""

    class JsonHandler(BaseHTTPRequestHandler):
        server_version = "kafkatrail"
        sys_version = ""
        default_request_version = "HTTP/1.1"  # so that even a broken request line gets a status line and JSON
        timeout = timeout_s  # a client that stops sending gives its thread back

        def do_POST(self) -> None:
            request_id = str(uuid.uuid4())
            target = self.headers.get("X-Amz-Target", "")
            try:
                length = body_length(self.headers.get("Content-Length"))
                if not target.startswith(TARGET_PREFIX):
                    raise ApiError("UnknownOperationException", f"X-Amz-Target: must start with {TARGET_PREFIX}")
                try:
                    raw = self.rfile.read(length)
                except TimeoutError:
                    self.close_connection = True
                    raise ApiError("RequestTimeout", f"request body: not received within {timeout_s:g} s",
                                   status=408) from None
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise ApiError("SerializationException", "request body: not JSON") from None
                if not isinstance(body, dict):
                    raise ApiError("SerializationException", "request body: must be a JSON object")
                region = region_of(self.headers.get("Authorization"), default_region)
                status, response = 200, api.call(target.removeprefix(TARGET_PREFIX), ApiRequest(region, body))
            except ApiError as exc:
                status, response = exc.status, {"__type": exc.code, "Message": exc.message}
                if exc.status == 413:
                    self.close_connection = True  # the body is not read: the connection cannot carry on
            except Exception:
                log.exception("API call failed", extra={"target": target, "request_id": request_id})
                status, response = 500, {"__type": "InternalFailure", "Message": f"internal error {request_id}"}
            self._reply(status, response, request_id)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The standard library's own refusals (bad request line, unknown method, ...) as JSON errors."""
            self.close_connection = True
            self._reply(code, {"__type": "InvalidRequest" if code < 500 or code == 501 else "InternalFailure",
                               "Message": message or HTTPStatus(code).phrase}, str(uuid.uuid4()))

        def _reply(self, status: int, response: dict[str, Any], request_id: str) -> None:
            payload = json.dumps(response).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", request_id)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("request", extra={"line": format % args})

    return JsonHandler


class ApiService:
    """`kafkatrail api`: serves the API in a thread while the main thread follows the trails topic."""

    def __init__(self, settings: Settings) -> None:
        from kafkatrail.trails.topic import TrailFeed

        self.config = settings.api
        self._trails: dict[str, Trail] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.feed = TrailFeed(settings, self._trail_changed)
        self.api = CloudTrailApi(self.trails, settings.keys.folder)
        self.server = ThreadingHTTPServer((self.config.host, self.config.port),
                                          make_handler(self.api, self.config.default_region))

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def trails(self) -> dict[str, Trail]:
        with self._lock:
            return dict(self._trails)

    def _trail_changed(self, arn: str, trail: Trail | None) -> None:
        with self._lock:
            if trail is None:
                self._trails.pop(arn, None)
            else:
                self._trails[arn] = trail

    def run(self) -> None:
        self.feed.catch_up()
        thread = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)
        thread.start()
        log.info("CloudTrail API listening", extra={"url": self.url})
        try:
            while not self._stopping.wait(0.5):
                self.feed.poll()
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.feed.close()

    def stop(self) -> None:
        self._stopping.set()

