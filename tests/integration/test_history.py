"""Event history end to end on the real broker: events → processors → history topic → `kafkatrail worker history` →
the store → `kafkatrail api` LookupEvents, driven by the real aws-cli; and exactly-once under SIGKILL and SIGTERM.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from confluent_kafka import Producer

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings
from kafkatrail.schemas.contract import record_category
from kafkatrail.sinks.history_fields import lookup_fields
from kafkatrail.stack import Endpoints
from tests.integration.pipeline import Workers, pipeline_settings, publish, simulate
from tests.integration.test_api import KEY, SECRET, Api
from tests.integration.test_clean_stop import Replay, join_and_leave, wait_until_working
from tests.unit.test_history_store import matches

CLI = [sys.executable, "-m", "kafkatrail.cli"]


def history_settings(stack: Endpoints, tmp_path: Path) -> Settings:
    """Fresh pipeline settings whose history store is a file of this test's own."""
    settings = pipeline_settings(stack)
    history = settings.history.model_copy(update={"store_path": tmp_path / "history.sqlite3"})
    return settings.model_copy(update={"history": history})


def stored_event_ids(settings: Settings) -> Counter[str]:
    """eventID -> copies in the store, read with plain SQL (not through the code under test's lookups)."""
    path = settings.history.store_path
    if not path.exists():
        return Counter()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        try:
            return Counter(row[0] for row in connection.execute("SELECT event_id FROM events"))
        except sqlite3.OperationalError:  # the worker has created the file, not yet its tables
            return Counter()


def wait_until_stored(settings: Settings, workers: Workers, expected: int, timeout_s: float = 180) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = stored_event_ids(settings)
        if sum(stored.values()) >= expected:
            return stored
        workers.assert_alive()
        time.sleep(0.5)
    raise AssertionError(f"{sum(stored_event_ids(settings).values())} of {expected} events stored in {timeout_s} s:\n"
                         f"{workers.log_tail()}")


def assert_stored_exactly(settings: Settings, workers: Workers, expected: set[str]) -> None:
    """Once `expected` events are stored (and 2 s more, for anything past them), the store holds each of these
    eventIDs once and nothing else (no data event, no unknown one)."""
    wait_until_stored(settings, workers, len(expected))
    time.sleep(2)
    stored = stored_event_ids(settings)
    assert set(stored) == expected, (f"missing {len(expected - set(stored))}, unexpected "
                                     f"{len(set(stored) - expected)} (data events or unknown)")
    assert max(stored.values()) == 1, f"doubled: {[e for e, n in stored.items() if n > 1][:5]}"


def insight_record(account: str, region: str) -> dict[str, Any]:
    """An Insights record as the Insights worker writes it (its name and source are in insightDetails)."""
    moment = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:00Z")
    return {"eventVersion": "1.08", "eventTime": moment, "awsRegion": region, "eventID": str(uuid.uuid4()),
            "eventType": "AwsCloudTrailInsight", "recipientAccountId": account, "sharedEventID": str(uuid.uuid4()),
            "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                               "insightType": "ApiCallRateInsight", "insightContext": {"statistics": {
                                   "baseline": {"average": 0.1}, "insight": {"average": 4.2},
                                   "baselineDuration": 10080}}},
            "eventCategory": "Insight"}


def publish_json(settings: Settings, topic: str, record: dict[str, Any]) -> None:
    producer = Producer(kafka_config(settings))
    producer.produce(topic, orjson.dumps(record), record["eventID"].encode())
    assert producer.flush(30) == 0


def busiest_scope(records: list[dict[str, Any]]) -> tuple[str, str]:
    """The (account, region) most of `records` are in."""
    return Counter((r["recipientAccountId"], r["awsRegion"]) for r in records).most_common(1)[0][0]


def in_scope(records: list[dict[str, Any]], account: str, region: str) -> list[dict[str, Any]]:
    """The management events of `records` that LookupEvents shows `account` in `region`."""
    return [r for r in records if record_category(r) == "Management"
            and (r["recipientAccountId"], r["awsRegion"]) == (account, region)]


def start_and_store(settings: Settings, workers: Workers, records: list[dict[str, Any]]) -> None:
    """A processor and a history worker running, `records` published, and every management event stored."""
    workers.start("processors")
    workers.start("history")
    publish(settings, records)
    wait_until_stored(settings, workers, len(management_ids(records)))


def management_ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["eventID"].lower() for r in records if record_category(r) == "Management"}


def recent(count: int, seed: int, duplicates: float) -> list[dict[str, Any]]:
    """Simulated records of the last hours (event history keeps 90 days: older ones would be purged)."""
    return simulate(count, seed=seed, duplicates=duplicates,
                    start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3))


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_every_management_event_is_stored_exactly_once_while_the_history_worker_is_stopped_three_times(
        stack: Endpoints, tmp_path: Path, stop: signal.Signals) -> None:
    settings = history_settings(stack, tmp_path)
    records = recent(200_000, seed=1200 + stop, duplicates=0.05)
    expected = management_ids(records)
    assert len(expected) < len({r["eventID"] for r in records}), "the traffic must hold data events too"
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    try:
        replay = Replay(workers, records, seconds=20)
        workers.start("processors")
        workers.start("history")
        replay.start()
        rng = random.Random(stop)
        for _ in range(3):
            wait_until_working(workers, "history")
            time.sleep(rng.uniform(1.0, 4.0))
            if stop == signal.SIGKILL:
                workers.kill("history")
            else:
                workers.terminate("history")
            workers.start("history")
        replay.finish()
        assert_stored_exactly(settings, workers, expected)
    finally:
        workers.stop_all()


def cli_pages(api: Api, aws_cli: Path, region: str, *arguments: str, page_items: int) -> list[list[dict[str, Any]]]:
    """Every page of `aws cloudtrail lookup-events ARGUMENTS`, `page_items` events each (aws-cli's --max-items and
    --starting-token), the service asked for 5 per call (--page-size): many service pages, each aws-cli page
    resumed in the middle of one."""
    pages, token = [], None
    while True:
        extra = ["--starting-token", token] if token else []
        done = api.aws(aws_cli, "lookup-events", "--region", region, *arguments, "--max-items", str(page_items),
                       "--page-size", "5", *extra)
        assert done.returncode == 0, done.stderr
        output = json.loads(done.stdout)
        pages.append(output["Events"])
        token = output.get("NextToken")
        if not token:
            return pages


def three_pages(events: int) -> int:
    """aws-cli page size that splits `events` into about three pages (several, but few aws-cli runs)."""
    return max(1, -(-events // 3))


def test_every_management_event_is_stored_exactly_once_while_a_second_history_worker_joins_and_leaves(
        stack: Endpoints, tmp_path: Path) -> None:
    """The rebalance twin of the stop tests: partitions move to a second worker of the group and back three times,
    mid-batch, both writing the one store file."""
    settings = history_settings(stack, tmp_path)
    records = recent(60_000, seed=1250, duplicates=0.05)
    expected = management_ids(records)
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    try:
        replay = Replay(workers, records, seconds=15)
        workers.start("processors")
        workers.start("history")
        wait_until_working(workers, "history")
        replay.start()
        join_and_leave(workers, "history", 3, random.Random(1250), stay_s=(0.5, 3.0))
        replay.finish()
        assert_stored_exactly(settings, workers, expected)
    finally:
        workers.stop_all()


def lookup_values(records: Iterable[dict[str, Any]], rng: random.Random) -> dict[str, str]:
    """A value for each lookup attribute, each taken from a random record that has one (the simulator's mix
    follows the hour of day, so no single record is sure to carry them all: an AssumedRole call has no
    access key, a read call no resources)."""
    candidates: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r["eventID"]):
        fields = lookup_fields(record)
        assert fields is not None
        values = {"EventId": fields.event_id, "EventName": fields.event_name, "ReadOnly": "true",
                  "Username": fields.username, "EventSource": fields.event_source,
                  "AccessKeyId": fields.access_key_id}
        kinds = [(kind, name) for kind, name in fields.resources if kind is not None]
        if kinds:
            values["ResourceType"], values["ResourceName"] = kinds[0]
        for key, value in values.items():
            if value is not None:
                candidates.setdefault(key, []).append(value)
    missing = {"EventId", "EventName", "ReadOnly", "Username", "EventSource", "AccessKeyId", "ResourceType",
               "ResourceName"} - candidates.keys()
    assert not missing, f"no record has a value for {sorted(missing)}"
    return {key: rng.choice(values) for key, values in sorted(candidates.items())}


def test_aws_cli_lookup_events_pages_through_exactly_what_the_store_holds(
        stack: Endpoints, tmp_path: Path, aws_cli: Path) -> None:
    settings = history_settings(stack, tmp_path)
    records = recent(4_000, seed=1300, duplicates=0.05)
    account, region = busiest_scope(records)
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    api = None
    try:
        start_and_store(settings, workers, records)
        api = Api(stack, tmp_path, settings=settings, account=account)
        mine = {r["eventID"]: r for r in in_scope(records, account, region)}
        lookups = lookup_values(mine.values(), random.Random(5))
        chosen = mine[lookups["EventId"]]
        for key, value in lookups.items():
            wanted = {event_id for event_id, r in mine.items() if matches(r, key, value)}
            pages = cli_pages(api, aws_cli, region, "--lookup-attributes", f"AttributeKey={key},AttributeValue={value}",
                              page_items=three_pages(len(wanted)))
            got = [event["EventId"] for page in pages for event in page]
            assert len(got) == len(set(got)), f"{key}: an event on two pages"
            assert set(got) == wanted, f"{key}={value}: {len(set(got))} events, {len(wanted)} expected"
            assert len(pages) >= 2 or len(wanted) <= 1, key
            times = [event["EventTime"] for page in pages for event in page]
            assert times == sorted(times, reverse=True), f"{key}: not newest first"
        # A time range: the middle third of the records' event times.
        stamps = sorted(r["eventTime"] for r in mine.values())
        start, end = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
        wanted = sorted(event_id for event_id, r in mine.items() if start <= r["eventTime"] <= end)
        pages = cli_pages(api, aws_cli, region, "--start-time", start, "--end-time", end,
                          page_items=three_pages(len(wanted)))
        assert sorted(event["EventId"] for page in pages for event in page) == wanted
        # The whole record comes back as CloudTrailEvent.
        event = cli_pages(api, aws_cli, region, "--lookup-attributes",
                          f"AttributeKey=EventId,AttributeValue={lookups['EventId']}", page_items=1)
        assert json.loads(event[0][0]["CloudTrailEvent"]) == chosen
    finally:
        if api is not None:
            api.stop()
        workers.stop_all()


BAD_LOOKUPS = [  # (aws-cli arguments, the same request for boto3, the AWS error)
    (["--lookup-attributes", "AttributeKey=EventName,AttributeValue=A", "AttributeKey=EventSource,AttributeValue=B"],
     {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A"},
                           {"AttributeKey": "EventSource", "AttributeValue": "B"}]},
     "InvalidLookupAttributesException"),
    (["--event-category", "insight", "--lookup-attributes", "AttributeKey=Username,AttributeValue=B"],
     {"EventCategory": "insight", "LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "B"}]},
     "InvalidLookupAttributesException"),
    (None, {"LookupAttributes": [{"AttributeKey": "Colour", "AttributeValue": "red"}]},
     "InvalidLookupAttributesException"),
    (["--start-time", "2026-12-02T00:00:00Z", "--end-time", "2026-12-01T00:00:00Z"],
     {"StartTime": datetime(2026, 12, 2, tzinfo=UTC), "EndTime": datetime(2026, 12, 1, tzinfo=UTC)},
     "InvalidTimeRangeException"),
    (None, {"MaxResults": 0}, "InvalidMaxResultsException"),  # aws-cli refuses 0 itself
    (["--max-results", "51"], {"MaxResults": 51}, "InvalidMaxResultsException"),
    (["--next-token", "forged.token"], {"NextToken": "forged.token"}, "InvalidNextTokenException"),
]


def test_bad_lookups_get_the_aws_error_and_the_server_goes_on(stack: Endpoints, tmp_path: Path,
                                                               aws_cli: Path) -> None:
    api = Api(stack, tmp_path, settings=history_settings(stack, tmp_path))
    unchecked = boto3.client("cloudtrail", endpoint_url=api.url, region_name="eu-west-1", aws_access_key_id=KEY,
                             aws_secret_access_key=SECRET,
                             config=Config(parameter_validation=False, retries={"max_attempts": 1}))
    try:
        for arguments, request, code in BAD_LOOKUPS:
            if arguments is not None:
                done = api.aws(aws_cli, "lookup-events", *arguments)
                assert done.returncode != 0 and code in done.stderr, (arguments, done.stderr)
                assert "Traceback" not in done.stderr
            with pytest.raises(ClientError) as refused:
                unchecked.lookup_events(**request)
            assert refused.value.response["Error"]["Code"] == code, request
        ok = api.aws(aws_cli, "lookup-events", "--max-results", "5")
        assert ok.returncode == 0 and json.loads(ok.stdout)["Events"] == [], ok.stderr
    finally:
        api.stop()


def test_insights_only_with_their_category_and_a_token_only_for_its_request_and_caller(
        stack: Endpoints, tmp_path: Path) -> None:
    settings = history_settings(stack, tmp_path)
    records = recent(600, seed=1400, duplicates=0.0)
    account, region = busiest_scope(records)
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    api = None
    try:
        start_and_store(settings, workers, records)
        insight = insight_record(account, region)
        publish_json(settings, settings.topics.insights, insight)
        wait_until_stored(settings, workers, len(management_ids(records)) + 1)
        api = Api(stack, tmp_path, settings=settings, account=account)
        client = api.client(region)
        insights = client.lookup_events(EventCategory="insight")["Events"]
        assert [(e["EventId"], e["EventName"], e["EventSource"]) for e in insights] == [
            (insight["eventID"], "RunInstances", "ec2.amazonaws.com")]
        assert json.loads(insights[0]["CloudTrailEvent"]) == insight
        by_name = client.lookup_events(EventCategory="insight", LookupAttributes=[
            {"AttributeKey": "EventName", "AttributeValue": "RunInstances"}])["Events"]
        assert [e["EventId"] for e in by_name] == [insight["eventID"]]
        management = client.get_paginator("lookup_events").paginate().build_full_result()["Events"]
        assert insight["eventID"] not in {e["EventId"] for e in management}, "Insights only with EventCategory"
        assert len(management) == len(in_scope(records, account, region))
        first = client.lookup_events(MaxResults=3)
        token = first["NextToken"]
        again = client.lookup_events(MaxResults=3, NextToken=token)
        assert {e["EventId"] for e in again["Events"]}.isdisjoint(e["EventId"] for e in first["Events"])
        for changed in ({"MaxResults": 4}, {"EventCategory": "insight"},
                        {"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "true"}]}):
            with pytest.raises(client.exceptions.InvalidNextTokenException):
                client.lookup_events(**{"MaxResults": 3, **changed, "NextToken": token})
        other = api.client(region, key="OTHERKEY0001", secret="other-secret")
        with pytest.raises(other.exceptions.InvalidNextTokenException):
            other.lookup_events(MaxResults=3, NextToken=token)
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        with pytest.raises(client.exceptions.InvalidNextTokenException):
            client.lookup_events(MaxResults=3, NextToken=tampered)
        assert other.lookup_events(MaxResults=3)["Events"] == [], "another account sees nothing of this one"
    finally:
        if api is not None:
            api.stop()
        workers.stop_all()


def test_history_lookup_cli_reads_the_same_store(stack: Endpoints, tmp_path: Path) -> None:
    settings = history_settings(stack, tmp_path)
    records = recent(500, seed=1500, duplicates=0.0)
    account, region = busiest_scope(records)
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    try:
        start_and_store(settings, workers, records)
    finally:
        workers.stop_all()
    mine = in_scope(records, account, region)
    name = Counter(r["eventName"] for r in mine).most_common(1)[0][0]
    done = subprocess.run([*CLI, "history", "lookup", "--account", account, "--region", region,
                           "--attribute", f"EventName={name}", "--max", "1000", "--output", "json"],
                          env=workers.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = [e["EventId"] for e in json.loads(done.stdout)["Events"]]
    assert sorted(got) == sorted(r["eventID"] for r in mine if r["eventName"] == name)
    table = subprocess.run([*CLI, "history", "lookup", "--account", account, "--region", region,
                            "--max", "3"], env=workers.env, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 4, table.stdout + table.stderr
    bad = subprocess.run([*CLI, "history", "lookup", "--account", account, "--attribute", "Colour=red"],
                         env=workers.env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "InvalidLookupAttributesException" in bad.stderr, bad.stderr


def test_events_past_the_retention_are_purged_and_the_rest_stay(stack: Endpoints, tmp_path: Path) -> None:
    settings = history_settings(stack, tmp_path)
    history = settings.history.model_copy(update={"retention_days": 2, "purge_interval_s": 1.0})
    settings = settings.model_copy(update={"history": history})
    now = datetime.now(UTC).replace(microsecond=0)
    old = simulate(1_500, seed=1600, duplicates=0.0, start=now - timedelta(days=3))
    young = simulate(1_500, seed=1601, duplicates=0.0, start=now - timedelta(days=1))
    workers = Workers(settings, tmp_path, env={"AWS_ENDPOINT_URL": stack.aws_endpoint_url})
    try:
        workers.start("processors")
        workers.start("history")
        publish(settings, old + young)
        wait_until_stored(settings, workers, len(management_ids(young)))
        deadline = time.monotonic() + 60
        while set(stored_event_ids(settings)) != management_ids(young):
            assert time.monotonic() < deadline, "the events older than 2 days were not purged"
            time.sleep(0.5)
    finally:
        workers.stop_all()
    purged = [line for line in (tmp_path / "history-0.log").read_text().splitlines() if "expired events purged" in line]
    assert purged, "the purge was not logged"
