"""Benchmark: event history at scale: ingest through the real history worker, and LookupEvents through the API
(SigV4) from 4 concurrent clients while that ingest goes on.

1. The store: N management events over the last 90 days (default 10,000,000), generated straight into a store
   file by `bench/history_lookup.py`'s generator; `--store PATH` reuses a file generated before.
2. Ceiling: one plain consumer reads the pre-published history topic without storing anything (how fast Kafka
   hands this machine the records).
3. Ingest: M records (default 1,000,000; recent management events as the processor writes them: compact JSON
   keyed by eventID) pre-published to a fresh history topic; one `kafkatrail worker history` child process
   stores them into the big store; the rate is timed from its first stored event to its last through /metrics.
4. Lookups, while the ingest runs: one API server process (`ApiHandler` over the store, SigV4 verified per
   request) and 4 concurrent keep-alive clients cycling through signed requests that mix all 8 attribute keys
   and no attribute, over the whole 90 days, the last day and a random week. Also `GET /healthz` as the server's
   ceiling in the same run.

Prints events/s, requests/s with p50/p95/p99, bytes per stored event and the peak RSS of the worker and the API.
Uses the broker in KAFKATRAIL_BOOTSTRAP_SERVERS, or starts (and stops) a private local stack.

    .venv/bin/python bench/history.py [--events 10000000] [--ingest 1000000] [--seconds 20] [--store PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import ClientSession, TCPConnector
from api import percentile
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from history_lookup import ACCOUNTS, DAY_MS, DAYS, REGIONS, Vocabulary, attribute, generate, records
from workers import Worker, peak_rss_mib

from kafkatrail.api.auth import Principal
from kafkatrail.api.history_view import StoreHistory
from kafkatrail.api.operations import CloudTrailApi, MemoryStore
from kafkatrail.api.server import ApiHandler, listening_socket, serve, server_for
from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings, StackSettings, settings_environment
from kafkatrail.core.topics import create_topics
from kafkatrail.sinks.history_store import HistoryStore
from kafkatrail.stack import LocalStack
from kafkatrail.stack.processes import free_port

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
KEYS = {account: (f"AKIDBENCH{n:07d}", f"bench-secret-{n}") for n, (account, _) in enumerate(ACCOUNTS)}
STORED = "kafkatrail_history_events_stored_total"
REPEATED = "kafkatrail_history_events_repeated_total"
SIGNED_REQUESTS = 600
SEED = 1


def run_api(port: int, store: Path) -> None:
    """One API server process over the store, every request's SigV4 verified (the real handler and server)."""
    import logging

    logging.getLogger().handlers[:] = [logging.NullHandler()]
    api = CloudTrailApi(MemoryStore(), Path(tempfile.mkdtemp()), history=StoreHistory(store))
    principals = {key: Principal(key, account, secret_access_key=secret) for account, (key, secret) in KEYS.items()}
    handler = ApiHandler(api, principals, "us-east-1")

    async def main() -> None:
        await serve(server_for(handler, 15), listening_socket("127.0.0.1", port), None, asyncio.Event())

    asyncio.run(main())


def signed_lookups(url: str, count: int, events: int, end_ms: int) -> list[tuple[dict[str, str], bytes]]:
    """`count` signed LookupEvents requests: every attribute key and none, over 90 days, the last day or a week."""
    rng = random.Random(SEED)
    vocabulary = Vocabulary.build()
    accounts = [account for account, share in ACCOUNTS for _ in range(share)]
    start_ms = end_ms - DAYS * DAY_MS
    requests = []
    for _ in range(count):
        account, region = accounts[rng.randrange(100)], REGIONS[rng.randrange(2)]
        window = rng.randrange(3)
        low = (start_ms if window == 0 else end_ms - DAY_MS if window == 1
               else start_ms + rng.randrange((DAYS - 7) * DAY_MS))
        high = end_ms if window < 2 else low + 7 * DAY_MS
        body: dict[str, object] = {"StartTime": low / 1000, "EndTime": high / 1000, "MaxResults": 50}
        chosen = attribute(rng, vocabulary, SEED, events, end_ms, account, region)
        if chosen is not None:
            body["LookupAttributes"] = [{"AttributeKey": chosen[0], "AttributeValue": chosen[1]}]
        data = orjson.dumps(body)
        request = AWSRequest(method="POST", url=url + "/", data=data, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET})
        key, secret = KEYS[account]
        SigV4Auth(Credentials(key, secret), "cloudtrail", region).add_auth(request)
        requests.append((dict(request.headers.items()), data))
    return requests


async def measure(url: str, requests: list[tuple[dict[str, str], bytes]] | None, seconds: float,
                  clients: int) -> tuple[float, list[float], int]:
    """Requests/s, latencies and events returned of `clients` keep-alive clients cycling through `requests`
    (None: GET /healthz)."""
    latencies: list[float] = []
    returned = 0
    deadline = time.perf_counter() + seconds
    async with ClientSession(connector=TCPConnector(limit=clients)) as session:
        async def one_client(first: int) -> None:
            nonlocal returned
            index = first
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                if requests is None:
                    async with session.get(url + "/healthz") as response:
                        await response.read()
                        assert response.status == 200
                else:
                    headers, body = requests[index % len(requests)]
                    index += clients
                    async with session.post(url + "/", data=body, headers=headers) as response:
                        payload = await response.read()
                        assert response.status == 200, payload[:300]
                        returned += len(orjson.loads(payload)["Events"])
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies, returned


def prepublish(settings: Settings, count: int) -> float:
    """`count` recent management events on the history topic as the processor writes them; returns seconds."""
    producer = Producer(kafka_config(settings, **{"linger.ms": 50, "batch.size": 1_000_000,
                                                 "compression.type": "lz4"}))
    began = time.perf_counter()
    seed = int(time.time())  # eventIDs no earlier run stored (a reused store ignores a repeat)
    for text in records(count, seed=seed, end_ms=int(time.time() * 1000)):
        event_id = orjson.loads(text)["eventID"]
        while True:
            try:
                producer.produce(settings.topics.history, text, event_id.encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)
    return time.perf_counter() - began


def consume_ceiling(settings: Settings, count: int) -> float:
    """Events/s of one plain read_committed consumer reading the history topic, storing nothing."""
    consumer = Consumer(kafka_config(settings, **{"group.id": f"ceiling-{uuid.uuid4()}", "enable.auto.commit": False,
                                                 "isolation.level": "read_committed", "auto.offset.reset": "earliest"}))
    topic = settings.topics.history
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen, began = 0, None
    deadline = time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        for message in consumer.consume(5_000, timeout=1.0):
            if message.error() is None or message.error().code() != KafkaError._PARTITION_EOF:
                began = began or time.perf_counter()
                seen += 1
    consumer.close()
    return seen / (time.perf_counter() - (began or time.perf_counter()))


def ingest_and_look_up(bootstrap: str, store: Path, count: int, args: argparse.Namespace) -> None:
    prefix = f"benchhist{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, history={
        "group_id": f"{prefix}-history", "store_path": store, "purge_interval_s": 3600})
    create_topics(settings)
    print(f"pre-published {args.ingest:,} events to {settings.topics.history} in "
          f"{prepublish(settings, args.ingest):.1f} s")
    print(f"ceiling: one consumer reads the topic, storing nothing: {consume_ceiling(settings, args.ingest):,.0f} "
          "events/s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = multiprocessing.get_context("spawn").Process(target=run_api, args=(port, store), daemon=True)
    api.start()
    requests = signed_lookups(url, SIGNED_REQUESTS, count, int(time.time() * 1000))
    time.sleep(3)
    asyncio.run(measure(url, requests, 1.0, args.clients))  # warm-up
    scratch = Path(tempfile.mkdtemp(prefix="history-bench-"))
    worker = Worker("history", {**os.environ, **settings_environment(settings)}, scratch / "history.log")
    try:
        deadline = time.monotonic() + 120
        while handled(worker) == 0:
            worker.check(deadline, "waiting for the first stored event")
            time.sleep(0.05)
        first_stored, began = handled(worker), time.perf_counter()
        rate, latencies, returned = asyncio.run(measure(url, requests, args.seconds, args.clients))
        during = handled(worker)
        print(f"LookupEvents (SigV4, {args.clients} clients, while ingesting): {rate:,.0f} req/s, "
              f"p50 {percentile(latencies, 0.5):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
              f"p99 {percentile(latencies, 0.99):.2f} ms ({len(latencies):,} requests, "
              f"{returned / max(len(latencies), 1):.1f} events per page); ingest meanwhile "
              f"{(during - first_stored) / (time.perf_counter() - began):,.0f} events/s")
        deadline = time.monotonic() + 900
        while (stored := handled(worker)) < args.ingest:
            worker.check(deadline, f"storing ({stored:,.0f} of {args.ingest:,})")
            time.sleep(0.1)
        elapsed = time.perf_counter() - began
        print(f"ingest through `kafkatrail worker history` into the {count:,}-event store: "
              f"{(args.ingest - first_stored) / elapsed:,.0f} events/s ({args.ingest:,} events, {elapsed:.1f} s); "
              f"worker peak RSS {worker.peak_rss_mib():,.0f} MiB")
        rate, latencies, _ = asyncio.run(measure(url, None, 5.0, args.clients))
        print(f"ceiling: GET /healthz on the same server: {rate:,.0f} req/s, p99 {percentile(latencies, 0.99):.2f} ms")
        print(f"API peak RSS {peak_rss_mib(api.pid or 0):,.0f} MiB")
    finally:
        print(f"history worker {worker.stop()}")
        api.terminate()
        api.join(10)
        shutil.rmtree(scratch, ignore_errors=True)


def handled(worker: Worker) -> float:
    """Records the history worker has taken in: stored, or ignored as an eventID the store held."""
    samples = worker.scrape()
    return samples[STORED] + samples[REPEATED]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events of the 90-day store")
    parser.add_argument("--ingest", type=int, default=1_000_000, help="events ingested through Kafka")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the lookup phase")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--store", type=Path, help="a store file to reuse, or where to generate and keep one")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="history-bench-store-"))
    store = args.store or scratch / "events.sqlite3"
    try:
        if not store.exists():
            print(f"generating {args.events:,} events over {DAYS} days into {store}")
            print(f"generated at {generate(store, args.events, SEED):,.0f} events/s")
        opened = HistoryStore(store, readonly=True)
        count, size = opened.count(), opened.size_bytes()
        opened.close()
        print(f"store: {count:,} events, {size / 2**20:,.0f} MiB, {size / count:,.0f} bytes per event")
        if bootstrap := os.environ.get("KAFKATRAIL_BOOTSTRAP_SERVERS"):
            ingest_and_look_up(bootstrap, store, count, args)
        else:
            with tempfile.TemporaryDirectory(prefix="kafkatrail-bench-stack-") as data_dir:
                stack = LocalStack(StackSettings(data_dir=Path(data_dir), kafka_port=free_port(),
                                                 aws_port=free_port()))
                try:
                    ingest_and_look_up(stack.up().bootstrap_servers, store, count, args)
                finally:
                    stack.down()
        opened = HistoryStore(store, readonly=True)
        after = opened.count(), opened.size_bytes()
        opened.close()
        print(f"store after ingest: {after[0]:,} events, {after[1] / after[0]:,.0f} bytes per event")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
