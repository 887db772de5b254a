"""The API over HTTP: an aiohttp server (`serve`), and `ApiService`, which runs it beside the topics it follows.

One request: `POST /` with `X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.<Operation>`,
a JSON body of at most 1 MiB (413 `RequestEntityTooLarge` otherwise; a body not received within
`api.body_timeout_s` is 408 `RequestTimeout`), signed with SigV4 (`kafkatrail.api.auth`). The answer is JSON 1.1:
200 with the output members, or `{"__type", "Message"}` with 4xx; an unexpected failure is logged with its
traceback and answered 500 `InternalFailure` with only a request id. A connection idle for `api.idle_timeout_s`,
including one that never completes its request headers, is closed. Even the HTTP parser's own refusals (a broken
request line, a bad Content-Length) are answered in JSON. Each request is logged in one line: operation, access
key id, status, milliseconds.

Reads of trails run on the event loop; LookupEvents runs on a pool of reader threads (it reads the event-history
store, and SQLite releases the GIL while it searches); calls that change a trail run one at a time in a thread
(they publish to the trails topic and wait until the feed has read the change back, so the next call sees it).
`GET /healthz` answers without authentication (liveness, and the benchmark's ceiling), and so does `GET /readyz`
(the socket is served only once the trails and trail-status topics are read), `GET /metrics` with the
API's Prometheus metrics (requests and their latency by operation and outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from kafkatrail.api.auth import ANONYMOUS, Principal, load_credentials, verify_request
from kafkatrail.api.errors import ApiError
from kafkatrail.api.operations import MUTATING, Call, CloudTrailApi
from kafkatrail.core.settings import Settings
from kafkatrail.schemas.contract import TrailStatusUpdate
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)
access_log = logging.getLogger("kafkatrail.api.access")

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVER = "kafkatrail"
MAX_BODY_BYTES = 1 << 20  # the largest CloudTrail request (PutEventSelectors) is a few KiB
OFF_LOOP_READS = frozenset({"LookupEvents"})
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """What `kafkatrail api` serves on GET /metrics (its own registry: several servers may share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.requests = Counter("kafkatrail_api_requests_total",
                                "API requests by operation and outcome (ok, or the AWS error code)",
                                ["operation", "outcome"], registry=registry)
        self.latency = Histogram("kafkatrail_api_request_seconds", "From request received to response ready",
                                 ["operation"], buckets=LATENCY_BUCKETS_S, registry=registry)


class _JsonErrors(RequestHandler):
    """aiohttp's connection handler, answering its own refusals (bad request line, headers) in JSON."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("request failed before it reached the API", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        code = "InternalFailure" if status >= 500 else "InvalidRequest"
        text = "internal error" if status >= 500 else (message or "malformed HTTP request")[:200]
        response = web.Response(status=status, body=orjson.dumps({"__type": code, "Message": text}),
                                headers={"Content-Type": CONTENT_TYPE, "Server": SERVER})
        response.force_close()
        return response


class _JsonServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)


class ApiHandler:
    """Turns HTTP requests into API calls: size limit, SigV4, target, JSON, dispatch, access log."""

    def __init__(self, api: CloudTrailApi, principals: Mapping[str, Principal] | None, default_region: str,
                 body_timeout_s: float = 10.0, clock: Callable[[], float] = time.time,
                 writer: ThreadPoolExecutor | None = None, metrics: ApiMetrics | None = None) -> None:
        self.api = api
        self.principals = principals  # None: anonymous access allowed
        self.default_region = default_region
        self.body_timeout_s = body_timeout_s
        self.clock = clock
        self.writer = writer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-write")
        self.readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="api-read")
        self.metrics = metrics or ApiMetrics()
        self._write_lock = threading.Lock()

    async def __call__(self, request: BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        operation, access_key = "-", "-"
        close = False
        try:
            if request.method == "GET" and request.path in ("/healthz", "/readyz"):
                return web.Response(body=b'{"status":"ok"}', headers={"Content-Type": "application/json",
                                                                       "Server": SERVER})
            if request.method == "GET" and request.path == "/metrics":
                return web.Response(body=generate_latest(self.metrics.registry),
                                    headers={"Content-Type": CONTENT_TYPE_LATEST, "Server": SERVER})
            if request.method != "POST":
                raise ApiError("InvalidRequest", f"method {request.method[:20]}: only POST is served", status=405)
            body = await self._body(request)
            target = request.headers.get("X-Amz-Target", "")
            operation = target.removeprefix(TARGET_PREFIX)[:64] if target.startswith(TARGET_PREFIX) else "-"
            principal, region = self._authenticate(request, body)
            access_key = principal.access_key_id or "anonymous"
            if not target.startswith(TARGET_PREFIX):
                raise ApiError("UnknownOperationException", f"X-Amz-Target: must start with {TARGET_PREFIX}")
            if not self.api.known(operation):
                raise ApiError("UnknownOperationException", f"{operation}: not an operation this endpoint serves")
            try:
                document = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError:
                raise ApiError("SerializationException", "request body: not JSON") from None
            if not isinstance(document, dict):
                raise ApiError("SerializationException", "request body: must be a JSON object")
            call = Call(principal, region, document)
            if operation in MUTATING:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self.writer, self._write, operation, call)
            elif operation in OFF_LOOP_READS:
                result = await asyncio.get_running_loop().run_in_executor(self.readers, self.api.call, operation, call)
            else:
                result = self.api.call(operation, call)
            status, payload = 200, result
        except ApiError as exc:
            status, payload = exc.status, exc.body()
            close = exc.status in (408, 413)  # the body was not read: the connection cannot carry on
        except Exception:
            log.exception("API call failed", extra={"operation": operation, "request_id": request_id})
            status, payload = 500, {"__type": "InternalFailure", "Message": f"internal error {request_id}"}
        response = web.Response(status=status, body=orjson.dumps(payload), headers={
            "Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id, "Server": SERVER})
        if close:
            response.force_close()
        elapsed_s = time.perf_counter() - started
        label = operation if self.api.known(operation) else "unknown"  # the client names it: keep the set closed
        self.metrics.requests.labels(label, "ok" if status == 200 else payload["__type"]).inc()
        self.metrics.latency.labels(label).observe(elapsed_s)
        access_log.info("request", extra={"operation": operation, "access_key_id": access_key, "status": status,
                                          "ms": round(elapsed_s * 1000, 2), "request_id": request_id})
        return response

    def _write(self, operation: str, call: Call) -> dict[str, Any]:
        with self._write_lock:
            return self.api.call(operation, call)

    async def _body(self, request: BaseRequest) -> bytes:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise ApiError("RequestEntityTooLarge", f"request body: at most {MAX_BODY_BYTES:,} bytes", status=413)
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            while True:
                chunk = await request.content.read(65536)
                if not chunk:
                    return
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ApiError("RequestEntityTooLarge", f"request body: at most {MAX_BODY_BYTES:,} bytes",
                                   status=413)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), self.body_timeout_s)
        except TimeoutError:
            raise ApiError("RequestTimeout", f"request body: not received within {self.body_timeout_s:g} s",
                           status=408) from None
        return b"".join(chunks)

    def _authenticate(self, request: BaseRequest, body: bytes) -> tuple[Principal, str]:
        if self.principals is None:
            from kafkatrail.api.auth import parse_authorization

            header = request.headers.get("Authorization")
            region = self.default_region
            if header:
                with contextlib.suppress(ApiError):
                    region = parse_authorization(header)[2]
            return ANONYMOUS, region
        url = f"{request.scheme}://{request.headers.get('Host', request.host)}{request.raw_path}"
        signed = verify_request(request.method, url, request.headers, body, self.principals, self.clock())
        return signed.principal, signed.region


def server_for(handler: ApiHandler, idle_timeout_s: float) -> web.Server:
    """The low-level aiohttp server for `handler` (no aiohttp access log: the handler writes its own)."""
    return _JsonServer(handler, keepalive_timeout=idle_timeout_s, access_log=None,
                       max_line_size=8190, max_field_size=8190)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("api.tls_cert and api.tls_key: set both or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(server: web.Server, sock: socket.socket, ssl_context: ssl.SSLContext | None,
                stopping: asyncio.Event) -> None:
    """Serve on `sock` until `stopping` is set; then close connections (in-flight calls get 5 s)."""
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()


class TopicViews:
    """The trails and the trail-status topics as the API sees them, followed in a thread; writes wait for them.

    Also the API's `TrailStore` (writes go to the trails topic, then wait until the feed has read them) and
    `StatusView`.
    """

    def __init__(self, settings: Settings, publish_timeout_s: float = 30.0) -> None:
        from kafkatrail.api.status_feed import StatusFeed
        from kafkatrail.trails.topic import TrailFeed

        self.settings = settings
        self.publish_timeout_s = publish_timeout_s
        self._trails: dict[str, Trail] = {}
        self._status: dict[tuple[str, str], dict[str, TrailStatusUpdate]] = {}
        self._applied = threading.Condition()
        self.feed = TrailFeed(settings, self._trail_changed)
        self.status_feed = StatusFeed(settings, self._status_changed)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # TrailStore
    def trails(self) -> Mapping[str, Trail]:
        return self._trails

    def put(self, trail: Trail) -> None:
        from kafkatrail.trails.topic import publish_trail

        self._wait_for(*publish_trail(self.settings, trail, timeout_s=self.publish_timeout_s))

    def delete(self, arn: str) -> None:
        from kafkatrail.trails.topic import delete_trail

        self._wait_for(*delete_trail(self.settings, arn, timeout_s=self.publish_timeout_s))

    # StatusView
    def status(self, trail_arn: str, region: str) -> Mapping[str, TrailStatusUpdate]:
        return self._status.get((trail_arn, region), {})

    def _wait_for(self, partition: int, offset: int) -> None:
        deadline = time.monotonic() + self.publish_timeout_s
        with self._applied:
            while self.feed.positions.get(partition, 0) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ApiError("ServiceUnavailableException", "the change was written but not read back in time; "
                                   "it takes effect shortly", status=503)
                self._applied.wait(remaining)

    def _trail_changed(self, arn: str, trail: Trail | None) -> None:
        trails = dict(self._trails)  # copy on write: readers on the event loop take the reference without a lock
        if trail is None:
            trails.pop(arn, None)
        else:
            trails[arn] = trail
        self._trails = trails

    def _status_changed(self, update: TrailStatusUpdate) -> None:
        place = (update.trail_arn, update.region)
        reports = dict(self._status.get(place, {}))
        reports[f"{update.kind}|{'ok' if update.error is None else 'error'}"] = update
        self._status = {**self._status, place: reports}

    def start(self) -> None:
        self.feed.catch_up()
        self.status_feed.catch_up()
        self._thread = threading.Thread(target=self._follow, name="api-feeds", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stopping.is_set():
            try:
                self.feed.poll()
                self.status_feed.poll()
            except Exception:
                log.exception("following the topics failed; retrying")
            with self._applied:
                self._applied.notify_all()
            self._stopping.wait(0.05)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        self.feed.close()
        self.status_feed.close()


class ApiService:
    """`kafkatrail api`: the server, the topic views, the credentials; `run()` until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        from kafkatrail.api.history_view import StoreHistory
        from kafkatrail.api.resources import AwsResources

        self.config = settings.api
        if self.config.allow_anonymous:
            principals: dict[str, Principal] | None = None
            log.warning("api.allow_anonymous is set: requests are NOT authenticated and every caller sees every "
                        "trail; bind to a private address")
        elif self.config.credentials_file is None:
            raise ValueError("api.credentials_file: required (or set api.allow_anonymous, which turns off "
                             "authentication)")
        else:
            principals = load_credentials(self.config.credentials_file)
        self.ssl = tls_context(self.config.tls_cert, self.config.tls_key)
        self.views = TopicViews(settings)
        self.history = StoreHistory(settings.history.store_path)
        self.api = CloudTrailApi(self.views, settings.keys.folder, resources=AwsResources(settings),
                                 status=self.views, history=self.history,
                                 history_retention_days=settings.history.retention_days)
        self.handler = ApiHandler(self.api, principals, self.config.default_region, self.config.body_timeout_s)
        self.sock = listening_socket(self.config.host, self.config.port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{'https' if self.ssl else 'http'}://{host}:{port}"

    def run(self) -> None:
        self.views.start()
        log.info("CloudTrail API listening", extra={"url": self.url})
        try:
            asyncio.run(self._main())
        finally:
            self.views.close()
            self.handler.writer.shutdown(wait=False)
            self.handler.readers.shutdown(wait=True)
            self.history.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self._stop_requested.is_set():
            return
        await serve(server_for(self.handler, self.config.idle_timeout_s), self.sock, self.ssl, self._stopping)

    def stop(self) -> None:
        self._stop_requested.set()
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
