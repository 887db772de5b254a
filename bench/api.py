"""Benchmark: the CloudTrail API server, SigV4 verified on every request, 8 concurrent clients.

Starts one server process (the real `ApiHandler` and aiohttp server over five trails in memory and sink
reports for GetTrailStatus; no broker is involved in these reads), then, from one client process with 8
concurrent keep-alive connections, measures requests/s and latency percentiles for:

- `GET /healthz`: the same server answering an unauthenticated trivial route (the ceiling of this setup),
- `GetTrailStatus` and `DescribeTrails`, each request signed with SigV4 and verified by the server (botocore's
  signer recomputes the signature per request).

Requests are signed once per operation by botocore and replayed (the server keeps no nonce, so each replay is
verified in full); the client therefore spends no time signing. Client and server share the machine.

    .venv/bin/python bench/api.py [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kafkatrail.api.auth import Principal
from kafkatrail.api.operations import CloudTrailApi, MemoryStore
from kafkatrail.api.server import ApiHandler, listening_socket, serve, server_for
from kafkatrail.schemas.contract import TrailStatusUpdate
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.model import Trail

KEY, SECRET, ACCOUNT, REGION = "AKIDBENCH0000001", "bench-secret", "111122223333", "us-east-1"
TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."


class Reports:
    def __init__(self, trails: list[Trail]) -> None:
        now = time.time()
        self.reports = {(t.arn, REGION): {"delivery|ok": TrailStatusUpdate(t.arn, REGION, "delivery", now)}
                        for t in trails}

    def status(self, trail_arn: str, region: str) -> dict[str, TrailStatusUpdate]:
        return self.reports.get((trail_arn, region), {})


def run_server(port: int) -> None:
    trails = [Trail(name=f"bench-{i}", home_region=REGION, account_id=ACCOUNT, s3_bucket_name=f"bench-bucket-{i}",
                    is_multi_region_trail=i == 0, logging=True) for i in range(5)]
    api = CloudTrailApi(MemoryStore(trails), Path(tempfile.mkdtemp()), status=Reports(trails))
    handler = ApiHandler(api, {KEY: Principal(KEY, ACCOUNT, secret_access_key=SECRET)}, REGION)
    import logging

    from kafkatrail.core.logs import JsonFormatter

    # The access log as `kafkatrail api` writes it (one JSON line per request), to /dev/null.
    sink = logging.FileHandler("/dev/null")
    sink.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [sink]
    logging.getLogger().setLevel(logging.INFO)

    async def main() -> None:
        await serve(server_for(handler, 15), listening_socket("127.0.0.1", port), None, asyncio.Event())

    asyncio.run(main())


def signed(url: str, operation: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation})
    SigV4Auth(Credentials(KEY, SECRET), "cloudtrail", REGION).add_auth(request)
    return dict(request.headers.items())


async def measure(url: str, method: str, headers: dict[str, str], body: bytes, seconds: float,
                  clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with ClientSession(connector=TCPConnector(limit=clients)) as session:
        async def one_client() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                async with session.request(method, url + ("/healthz" if method == "GET" else "/"), data=body,
                                           headers=headers) as response:
                    await response.read()
                    assert response.status == 200, await response.text()
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000)[int(share * 1000) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = multiprocessing.get_context("spawn").Process(target=run_server, args=(port,), daemon=True)
    server.start()
    try:
        time.sleep(3)
        cases = [
            ("GET /healthz (unauthenticated ceiling)", "GET", {}, b""),
            ("GetTrailStatus (SigV4)", "POST", None, b'{"Name": "bench-0"}'),
            ("DescribeTrails (SigV4)", "POST", None, b"{}"),
        ]
        print(f"{args.clients} concurrent clients, {args.seconds:g} s per case, one server process")
        for name, method, headers, body in cases:
            if headers is None:
                headers = signed(url, name.split(" ")[0], body)
            asyncio.run(measure(url, method, headers, body, 1.0, args.clients))  # warm-up
            rate, latencies = asyncio.run(measure(url, method, headers, body, args.seconds, args.clients))
            print(f"{name:42s} {rate:8,.0f} req/s   p50 {percentile(latencies, 0.5):6.2f} ms   "
                  f"p99 {percentile(latencies, 0.99):6.2f} ms   ({len(latencies):,} requests)")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
