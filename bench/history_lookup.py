"""Benchmark: the event-history store alone (no Kafka, no API): a 90-day store, then LookupEvents' queries on it.

1. Generation: N management events (default 10,000,000) spread evenly over the 90 days before now, in time
   order, stored through `HistoryStore.append` in large transactions (`--batch`, default 50,000 records): the
   real ingest code path, so the printed rate is append's own (parse, derive, insert with every index).
   `--store PATH` keeps the file; when PATH exists it is reused as it is and nothing is generated.
2. Lookups: `--clients` processes (default 4) each open the file read-only and, for `--seconds` (default 20),
   ask one page (MaxResults 50) at a time: an attribute key drawn evenly from the 8 keys and no attribute,
   a value that occurs in the data, and a time range drawn from the whole 90 days, the last day and a random
   week; a third of the requests that got a NextToken continue with the next page.

Prints the generation rate, requests/s, p50/p95/p99 latency in ms, store bytes per event and the peak RSS of the
generating process and of the lookup processes.

The mix (`records`): 3 accounts (60/30/10 %), 2 regions, 30 event sources with 200 event names (Zipf-like
popularity; read-only for Describe/List/Get), 50 identities (15 IAM users, 25 sessions of 8 roles, 3 federated
users, 5 AWS services, root), access keys per IAM user and per role session and hour (AWS rotates session
keys), a quarter of the events with one or two typed resources out of 4,000 per type. Records are compact JSON
of about 1 KB, with deterministic GUID eventIDs (`event_id`), so a reused store and a new run agree on values.

    .venv/bin/python bench/history_lookup.py [--events 10000000] [--store PATH] [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path

from kafkatrail.sinks.history_store import ATTRIBUTE_KEYS, HistoryStore, Lookup

DAY_MS = 86_400_000
DAYS = 90
ACCOUNTS = (("111122223333", 60), ("444455556666", 30), ("777788889999", 10))
REGIONS = ("eu-west-1", "us-east-1")
SOURCES = ("ec2", "iam", "s3", "sts", "lambda", "kms", "cloudtrail", "rds", "ssm", "secretsmanager", "dynamodb",
           "logs", "monitoring", "sns", "sqs", "ecr", "ecs", "eks", "elasticloadbalancing", "autoscaling",
           "cloudformation", "route53", "config", "organizations", "sso", "signin", "kinesis", "glue", "athena",
           "events")
VERBS = ("Describe", "List", "Get", "Create", "Update", "Delete", "Put")
NOUNS = ("Instances", "Resources", "Policy", "Configuration", "Tags", "Attributes", "Settings")
EVENT_NAMES = 200
RESOURCE_TYPES = ("AWS::IAM::Role", "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::EC2::Instance", "AWS::Lambda::Function",
                  "AWS::SSM::Parameter", "AWS::DynamoDB::Table", "AWS::SNS::Topic", "AWS::SQS::Queue",
                  "AWS::SecretsManager::Secret", "AWS::RDS::DBInstance", "AWS::ECR::Repository")
RESOURCES_PER_TYPE = 4_000
ROLES = 8
MASK64 = (1 << 64) - 1
READ_VERBS = ("Describe", "List", "Get")
_RECORD = ('{"eventVersion":"1.11","userIdentity":%s,"eventTime":"%s","eventSource":"%s.amazonaws.com",'
           '"eventName":"%s","awsRegion":"%s","sourceIPAddress":"203.0.113.%d","userAgent":"aws-cli/2.15.0 '
           'Python/3.11.6 Linux/6.1 exe/x86_64","requestParameters":{"maxResults":%d,"filter":"name-%d"},'
           '"responseElements":%s,"requestID":"%s","eventID":"%s","readOnly":%s,%s"eventType":"AwsApiCall",'
           '"managementEvent":true,"recipientAccountId":"%s","eventCategory":"Management","tlsDetails":'
           '{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":'
           '"%s.%s.amazonaws.com"}}')


@dataclass(frozen=True)
class Vocabulary:
    """Every value the generated records use, so lookups ask for values that occur."""

    event_names: tuple[tuple[str, str, bool], ...]  # (source, name, read-only), most popular first
    identities: tuple[tuple[str, str], ...]  # (kind, name); the first KEYED have access keys

    @classmethod
    def build(cls) -> Vocabulary:
        names = []
        for n in range(EVENT_NAMES):  # (source, verb) differs for every n, so every name does too
            source, verb = SOURCES[n % len(SOURCES)], VERBS[n // len(SOURCES) % len(VERBS)]
            names.append((source, f"{verb}{source.title().replace('-', '')}{NOUNS[n % len(NOUNS)]}",
                          verb in READ_VERBS))
        identities = ([("IAMUser", f"user-{n:02d}") for n in range(15)]
                      + [("AssumedRole", f"session-{n:02d}") for n in range(25)]
                      + [("FederatedUser", f"federated-{n}") for n in range(3)]
                      + [("AWSService", f"{source}.amazonaws.com") for source in SOURCES[:5]]
                      + [("Root", "root")] * 2)
        return cls(tuple(names), tuple(identities))

    def access_key(self, identity: int, time_ms: int) -> str | None:
        """The key an identity signs with at `time_ms`: fixed for users, a new one per hour for sessions."""
        kind = self.identities[identity][0]
        if kind == "IAMUser" or kind == "Root":
            return f"AKIA{identity:016d}"
        if kind == "AssumedRole" or kind == "FederatedUser":
            return f"ASIA{identity:04d}{time_ms // 3_600_000:012d}"
        return None


def event_id(seed: int, index: int) -> str:
    """A GUID unique per (seed, index): two bijections of the 64-bit index, printed as one 128-bit number."""
    high = (((index + 1) * 0x9E3779B97F4A7C15) ^ (seed * 0xBF58476D1CE4E5B9)) & MASK64
    low = (high * 0x94D049BB133111EB + index) & MASK64
    return f"{high >> 32:08x}-{(high >> 16) & 0xFFFF:04x}-{high & 0xFFFF:04x}-{low >> 48:04x}-{low & (2**48 - 1):012x}"


def resource_arn(kind: int, number: int, account: str, region: str) -> str:
    """The ARN of resource `number` of type `kind` in an account and region."""
    service = RESOURCE_TYPES[kind].split("::")[1].lower()
    return f"arn:aws:{service}:{region}:{account}:{RESOURCE_TYPES[kind].rsplit('::', 1)[1].lower()}/r-{number:05d}"


def identity_json(vocabulary: Vocabulary, identity: int, account: str, access_key: str | None) -> str:
    kind, name = vocabulary.identities[identity]
    key = f',"accessKeyId":"{access_key}"' if access_key else ""
    if kind == "IAMUser":
        return (f'{{"type":"IAMUser","principalId":"AIDA{identity:016d}","arn":"arn:aws:iam::{account}:user/{name}",'
                f'"accountId":"{account}"{key},"userName":"{name}"}}')
    if kind == "AssumedRole":
        role = f"role-{identity % ROLES}"
        return (f'{{"type":"AssumedRole","principalId":"AROA{identity:016d}:{name}","arn":"arn:aws:sts::{account}:'
                f'assumed-role/{role}/{name}","accountId":"{account}"{key},"sessionContext":{{"sessionIssuer":'
                f'{{"type":"Role","principalId":"AROA{identity:016d}","arn":"arn:aws:iam::{account}:role/{role}",'
                f'"accountId":"{account}","userName":"{role}"}},"webIdFederationData":{{}},"attributes":'
                f'{{"creationDate":"2024-05-01T09:12:44Z","mfaAuthenticated":"false"}}}}}}')
    if kind == "FederatedUser":
        return (f'{{"type":"FederatedUser","principalId":"{account}:{name}","arn":"arn:aws:sts::{account}:'
                f'federated-user/{name}","accountId":"{account}"{key}}}')
    if kind == "AWSService":
        return f'{{"type":"AWSService","invokedBy":"{name}"}}'
    return (f'{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root",'
            f'"accountId":"{account}"{key}}}')


def records(count: int, seed: int = 1, end_ms: int | None = None) -> Iterator[bytes]:
    """`count` management events over the `DAYS` days before `end_ms` (default now), oldest first, as JSON."""
    rng = random.Random(seed)
    vocabulary = Vocabulary.build()
    end_ms = end_ms if end_ms is not None else int(time.time() * 1000)
    start_ms = end_ms - DAYS * DAY_MS
    accounts = [account for account, share in ACCOUNTS for _ in range(share)]
    popularity = [1 / (rank + 1) for rank in range(len(vocabulary.event_names))]
    names = rng.choices(range(len(vocabulary.event_names)), popularity, k=65_536)
    identities: dict[tuple[int, str, int], str] = {}
    stamps: dict[int, str] = {}
    step = DAYS * DAY_MS / max(count, 1)
    for index in range(count):
        time_ms = start_ms + int(index * step)
        second = time_ms // 1000
        stamp = stamps.get(second)
        if stamp is None:
            stamps.clear()
            stamp = stamps[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        account, region = accounts[rng.randrange(100)], REGIONS[rng.randrange(2)]
        source, name, read_only = vocabulary.event_names[names[rng.randrange(65_536)]]
        identity = rng.randrange(len(vocabulary.identities))
        hour = time_ms // 3_600_000
        cached = identities.get((identity, account, hour))
        if cached is None:
            if len(identities) > 10_000:
                identities.clear()
            cached = identities[(identity, account, hour)] = identity_json(
                vocabulary, identity, account, vocabulary.access_key(identity, time_ms))
        draw = rng.random()
        if draw < 0.25:
            kinds = (rng.randrange(len(RESOURCE_TYPES)),) if draw < 0.2 else (0, rng.randrange(len(RESOURCE_TYPES)))
            entries = ",".join(f'{{"accountId":"{account}","type":"{RESOURCE_TYPES[kind]}","ARN":"'
                               f'{resource_arn(kind, rng.randrange(RESOURCES_PER_TYPE), account, region)}"}}'
                               for kind in kinds)
            resources = f'"resources":[{entries}],'
        else:
            resources = ""
        request_id = event_id(seed + 1, index)
        response = "null" if read_only else f'{{"requestId":"{request_id}"}}'
        yield (_RECORD % (cached, stamp, source, name, region, index % 256, index % 1000, index % 97, response,
                          request_id, event_id(seed, index), "true" if read_only else "false", resources, account,
                          source, region)).encode()


def generate(path: Path, count: int, seed: int = 1, batch: int = 50_000, end_ms: int | None = None) -> float:
    """Store `count` generated events into the store at `path` through `append`; returns events per second."""
    store = HistoryStore(path)
    started = time.perf_counter()
    pending: list[bytes] = []
    stored = 0
    try:
        for offset, record in enumerate(records(count, seed, end_ms), start=1):
            pending.append(record)
            if len(pending) == batch or offset == count:
                stored += store.append("bench", {0: offset}, pending)
                pending = []
                if offset % (10 * batch) == 0:
                    print(f"  {stored:,} events, {stored / (time.perf_counter() - started):,.0f}/s", flush=True)
    finally:
        store.close()
    return stored / (time.perf_counter() - started)


def lookups(path: Path, seconds: float, seed: int, end_ms: int, results: Queue[tuple[list[float], int, int]]) -> None:
    """One client: pages of random lookups for `seconds`; puts (latencies in s, events returned, peak RSS KiB)."""
    rng = random.Random(seed)
    vocabulary = Vocabulary.build()
    store = HistoryStore(path, readonly=True)
    count = store.count()
    start_ms = end_ms - DAYS * DAY_MS
    accounts = [account for account, share in ACCOUNTS for _ in range(share)]
    latencies: list[float] = []
    returned = 0
    previous: Lookup | None = None
    cursor = None
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if previous is not None and cursor is not None and rng.random() < 1 / 3:
            query = Lookup(**{**vars(previous), "after": cursor})
        else:
            account, region = accounts[rng.randrange(100)], REGIONS[rng.randrange(2)]
            window = rng.randrange(3)
            if window == 0:
                low, high = start_ms, end_ms
            elif window == 1:
                low, high = end_ms - DAY_MS, end_ms
            else:
                low = start_ms + rng.randrange((DAYS - 7) * DAY_MS)
                high = low + 7 * DAY_MS
            query = Lookup(account, region, "management", low, high, attribute(rng, vocabulary, seed, count, end_ms,
                                                                             account, region), 50, None)
        began = time.perf_counter()
        events, cursor = store.lookup(query)
        latencies.append(time.perf_counter() - began)
        returned += len(events)
        previous = query
    store.close()
    results.put((latencies, returned, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def attribute(rng: random.Random, vocabulary: Vocabulary, seed: int, count: int, end_ms: int, account: str,
              region: str) -> tuple[str, str] | None:
    """A lookup attribute whose value occurs in the generated data (None: no attribute)."""
    key = rng.choice((*ATTRIBUTE_KEYS, None))
    if key == "EventId":
        return key, event_id(seed, rng.randrange(count))
    if key == "EventName":
        return key, vocabulary.event_names[min(int(rng.paretovariate(1.0)) - 1, 199)][1]
    if key == "EventSource":
        return key, f"{rng.choice(SOURCES)}.amazonaws.com"
    if key == "ReadOnly":
        return key, rng.choice(("true", "false"))
    if key == "Username":
        return key, rng.choice(vocabulary.identities)[1]
    if key == "AccessKeyId":
        keyed = [n for n in range(len(vocabulary.identities)) if vocabulary.access_key(n, end_ms) is not None]
        return key, str(vocabulary.access_key(rng.choice(keyed), end_ms - rng.randrange(DAYS * DAY_MS)))
    if key == "ResourceType":
        return key, rng.choice(RESOURCE_TYPES)
    if key == "ResourceName":
        return key, resource_arn(rng.randrange(len(RESOURCE_TYPES)), rng.randrange(RESOURCES_PER_TYPE), account,
                                 region)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--store", type=Path, help="store file to reuse (when it exists) or to generate and keep")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50_000, help="records per append transaction when generating")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="history-bench-"))
    path: Path = args.store or scratch / "history.db"
    try:
        if path.exists():
            print(f"reusing {path}")
        else:
            print(f"generating {args.events:,} events into {path}")
            rate = generate(path, args.events, args.seed, args.batch)
            print(f"generated at {rate:,.0f} events/s (append, {args.batch:,} per transaction, every index)")
        store = HistoryStore(path, readonly=True)
        events, size = store.count(), store.size_bytes()
        newest = max((page[0].event_time_ms for account, _ in ACCOUNTS for region in REGIONS
                      for page, _ in [store.lookup(Lookup(account, region, "management", 0, 2**62, None, 1, None))]
                      if page), default=int(time.time() * 1000))
        store.close()
        print(f"store: {events:,} events, {size / 2**20:,.0f} MiB, {size / max(events, 1):,.0f} bytes per event")
        report_lookups(path, args, newest)
        print(f"peak RSS: generator {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report_lookups(path: Path, args: argparse.Namespace, end_ms: int) -> None:
    context = multiprocessing.get_context("spawn")  # not forked: a client's peak RSS is its own
    results: Queue[tuple[list[float], int, int]] = context.Queue()
    clients = [context.Process(target=lookups, args=(path, args.seconds, args.seed * 1000 + n, end_ms, results))
               for n in range(args.clients)]
    for client in clients:
        client.start()
    outcomes = [results.get() for _ in clients]
    for client in clients:
        client.join()
    latencies = sorted(latency for outcome in outcomes for latency in outcome[0])
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"lookups: {len(latencies) / args.seconds:,.0f} requests/s from {args.clients} processes, "
          f"{sum(outcome[1] for outcome in outcomes) / len(latencies):.1f} events per page; "
          f"p50 {quantiles[49] * 1000:.2f} ms, p95 {quantiles[94] * 1000:.2f} ms, p99 {quantiles[98] * 1000:.2f} ms")
    print(f"peak RSS: lookup process {max(outcome[2] for outcome in outcomes) / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
