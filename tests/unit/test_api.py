"""The CloudTrail API as boto3 sees it: every operation over HTTP (aiohttp in a thread), SigV4, account scoping,
shadow trails, pagination, errors; every response parsed by botocore's JSON parser for the operation's output
shape and held to that shape member by member (no member the model lacks, every type as modeled)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from kafkatrail.api.auth import Principal, load_credentials, verify_request, write_credentials
from kafkatrail.api.errors import ApiError
from kafkatrail.api.operations import Call, CloudTrailApi, MemoryStore, decode_token, encode_token
from kafkatrail.api.server import ApiHandler, listening_socket, serve, server_for
from kafkatrail.schemas.contract import TrailStatusUpdate
from kafkatrail.sinks.signing_keys import SigningKeys
from kafkatrail.sinks.status import StatusReporter
from kafkatrail.trails.model import Trail
from tests.signed_client import TARGET_PREFIX, cloudtrail_client, exchange, signed_call, signed_headers

ACCOUNT, OTHER_ACCOUNT, ORG_ACCOUNT = "111122223333", "444455556666", "777788889999"
ORG = "o-a1b2c3d4e5"
KEY, SECRET = "AKIDEXAMPLE000001", "secret-one-0000000000"
OTHER_KEY, OTHER_SECRET = "AKIDEXAMPLE000002", "secret-two-0000000000"
ORG_KEY, ORG_SECRET = "AKIDEXAMPLE000003", "secret-org-0000000000"
PRINCIPALS = {
    KEY: Principal(KEY, ACCOUNT, secret_access_key=SECRET),
    OTHER_KEY: Principal(OTHER_KEY, OTHER_ACCOUNT, secret_access_key=OTHER_SECRET),
    ORG_KEY: Principal(ORG_KEY, ORG_ACCOUNT, ORG, True, ORG_SECRET),
}
HOME = Trail(name="audit", home_region="eu-west-1", account_id=ACCOUNT, s3_bucket_name="audit-bucket",
             s3_key_prefix="p", is_multi_region_trail=True, log_file_validation_enabled=True,
             sns_topic_name="files")
LOCAL = Trail(name="local", home_region="us-east-1", account_id=ACCOUNT, s3_bucket_name="local-bucket")
FOREIGN = Trail(name="foreign", home_region="us-east-1", account_id=OTHER_ACCOUNT, s3_bucket_name="their-bucket")
ORG_TRAIL = Trail(name="org", home_region="us-east-1", account_id=ACCOUNT, s3_bucket_name="org-bucket",
                  is_organization_trail=True, organization_id=ORG)
NOW = 1_714_560_000
MODEL = botocore.session.get_session().get_service_model("cloudtrail")


class FakeStatus:
    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], dict[str, TrailStatusUpdate]] = {}

    def add(self, update: TrailStatusUpdate) -> None:
        self.reports.setdefault((update.trail_arn, update.region), {})[
            f"{update.kind}|{'ok' if update.error is None else 'error'}"] = update

    def status(self, trail_arn: str, region: str) -> Mapping[str, TrailStatusUpdate]:
        return self.reports.get((trail_arn, region), {})


class Endpoint:
    def __init__(self, url: str, store: MemoryStore, status: FakeStatus) -> None:
        self.url, self.store, self.status = url, store, status


def run_server(handler: ApiHandler, idle_timeout_s: float = 15) -> Iterator[str]:
    sock = listening_socket("127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    stopping: asyncio.Event | None = None
    ready = threading.Event()

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        ready.set()
        await serve(server_for(handler, idle_timeout_s), sock, None, stopping)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    SigningKeys(tmp_path, rotation_s=86_400, clock=lambda: NOW).current()
    store = MemoryStore([HOME, LOCAL, FOREIGN, ORG_TRAIL])
    status = FakeStatus()
    api = CloudTrailApi(store, tmp_path, status=status, clock=lambda: NOW, list_page=2)
    for url in run_server(ApiHandler(api, PRINCIPALS, "us-east-1")):
        yield Endpoint(url, store, status)


def strict(value: Any, shape: Any, path: str = "") -> None:
    """`value` (raw JSON) has only the shape's members, each of the modeled type."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        for member, item in value.items():
            assert member in shape.members, f"{path}.{member}: not a member of {shape.name}"
            strict(item, shape.members[member], f"{path}.{member}")
    elif kind == "list":
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            strict(item, shape.member, f"{path}[{index}]")
    elif kind == "string":
        assert isinstance(value, str), path
        assert not shape.enum or value in shape.enum, path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "timestamp":
        assert isinstance(value, int | float) and not isinstance(value, bool), path
    elif kind == "blob":
        base64.b64decode(value, validate=True)


def check_response(http_response: Any, model: Any, **_: Any) -> None:
    """botocore's after-call hook: parse the raw body with botocore's JSON parser and hold it to the shape."""
    if http_response.status_code != 200:
        return
    raw = json.loads(http_response.content or b"{}")
    if model.output_shape is None:
        assert raw == {}
        return
    strict(raw, model.output_shape, model.name)
    parsed = create_parser("json").parse({"body": http_response.content, "headers": http_response.headers,
                                          "status_code": 200}, model.output_shape)
    assert set(parsed) - {"ResponseMetadata"} == set(raw)


def client(endpoint: Endpoint | str, region: str = "us-east-1", key: str = KEY, secret: str = SECRET) -> Any:
    ct = cloudtrail_client(endpoint.url if isinstance(endpoint, Endpoint) else endpoint, region, key, secret)
    ct.meta.events.register("after-call.cloudtrail", check_response)
    return ct


def code_of(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


# --- SigV4 (botocore-signed requests, verified with botocore's signer) ---------------------------------------------


def signed(key: str, secret: str, at: float, service: str = "cloudtrail") -> dict[str, str]:
    return signed_headers("http://127.0.0.1:8470", "ListTrails", b"{}", key=key, secret=secret, region="us-east-1",
                          at=at, service=service)


class CaseInsensitive(dict):  # type: ignore[type-arg]
    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        for key, value in self.items():
            if key.lower() == name.lower():
                return value
        return default


SIGV4_CASES = {
    "a correct signature": (KEY, SECRET, 0, b"{}", None),
    "a clock 4 minutes behind": (KEY, SECRET, -240, b"{}", None),
    "a wrong secret": (KEY, "not-the-secret-000", 0, b"{}", "InvalidSignatureException"),
    "an unknown key": ("AKIDUNKNOWN000000", SECRET, 0, b"{}", "UnrecognizedClientException"),
    "a clock 6 minutes behind": (KEY, SECRET, -360, b"{}", "InvalidSignatureException"),
    "a clock 6 minutes ahead": (KEY, SECRET, 360, b"{}", "InvalidSignatureException"),
    "a body changed after signing": (KEY, SECRET, 0, b'{"x": 1}', "InvalidSignatureException"),
}


@pytest.mark.parametrize(("key", "secret", "skew", "body", "code"), SIGV4_CASES.values(), ids=SIGV4_CASES.keys())
def test_sigv4_is_verified_with_botocores_signer(key: str, secret: str, skew: int, body: bytes,
                                                 code: str | None) -> None:
    headers = CaseInsensitive(signed(key, secret, NOW + skew))
    if code is None:
        verified = verify_request("POST", "http://127.0.0.1:8470/", headers, b"{}", PRINCIPALS, NOW)
        assert (verified.principal.account_id, verified.region) == (ACCOUNT, "us-east-1")
        return
    with pytest.raises(ApiError) as caught:
        verify_request("POST", "http://127.0.0.1:8470/", headers, body, PRINCIPALS, NOW)
    assert caught.value.code == code
    assert SECRET not in caught.value.message and headers["Authorization"][-64:] not in caught.value.message
    if "minutes" in str(skew):
        assert "Signature expired" in caught.value.message


def test_sigv4_refuses_other_services_and_missing_headers() -> None:
    headers = CaseInsensitive(signed(KEY, SECRET, NOW, service="s3"))
    with pytest.raises(ApiError, match="correct service"):
        verify_request("POST", "http://127.0.0.1:8470/", headers, b"{}", PRINCIPALS, NOW)
    with pytest.raises(ApiError) as caught:
        verify_request("POST", "http://127.0.0.1:8470/", CaseInsensitive(), b"{}", PRINCIPALS, NOW)
    assert (caught.value.code, caught.value.status) == ("MissingAuthenticationTokenException", 403)
    headers = CaseInsensitive(signed(KEY, SECRET, NOW))
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=nonsense"
    with pytest.raises(ApiError, match=r"IncompleteSignature|Credential") as caught:
        verify_request("POST", "http://127.0.0.1:8470/", headers, b"{}", PRINCIPALS, NOW)
    assert caught.value.code == "IncompleteSignatureException"


@pytest.mark.parametrize(("key", "secret", "code"), [
    ("AKIDUNKNOWN000000", SECRET, "UnrecognizedClientException"),
    (KEY, "not-the-secret-000", "InvalidSignatureException"),
])
def test_the_server_refuses_bad_credentials(endpoint: Endpoint, key: str, secret: str, code: str) -> None:
    assert code_of(lambda: client(endpoint, key=key, secret=secret).list_trails()) == code


def test_credentials_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    write_credentials(path, list(PRINCIPALS.values()))
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_credentials(path)
    assert loaded[ORG_KEY].organization_management and loaded[KEY].account_id == ACCOUNT
    assert SECRET not in repr(loaded[KEY])
    path.chmod(0o640)
    with pytest.raises(ValueError, match="0640"):
        load_credentials(path)


@pytest.mark.parametrize("text", [
    '[[principals]]\naccess_key_id = "AKID1"\nsecret_access_key = ""\naccount_id = "111122223333"\n',
    '[[principals]]\naccess_key_id = "AKID1"\nsecret_access_key = "long-enough"\naccount_id = "1"\n',
    '[[principals]]\naccess_key_id = "AKID1"\nsecret_access_key = "long-enough"\naccount_id = "111122223333"\n'
    'organization_management = true\n',
    'principals = 3\n', "not toml [",
])
def test_bad_credentials_files_are_refused_without_showing_secrets(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ValueError) as caught:
        load_credentials(path)
    assert "long-enough" not in str(caught.value)


# --- reading trails: regions, shadows, accounts -----------------------------------------------------------------


@pytest.mark.parametrize(("region", "key", "request_members", "names"), [
    ("us-east-1", KEY, {}, ["audit", "local", "org"]),
    ("us-east-1", KEY, {"includeShadowTrails": False}, ["local", "org"]),
    ("ap-southeast-2", KEY, {}, ["audit"]),
    ("eu-west-1", KEY, {}, ["audit"]),
    ("us-east-1", KEY, {"trailNameList": ["local"]}, ["local"]),
    ("us-east-1", KEY, {"trailNameList": ["audit"]}, []),
    ("us-east-1", KEY, {"trailNameList": [HOME.arn]}, ["audit"]),
    ("us-east-1", OTHER_KEY, {}, ["foreign"]),
    ("us-east-1", OTHER_KEY, {"trailNameList": [LOCAL.arn]}, []),
    ("us-east-1", ORG_KEY, {}, ["org"]),
])
def test_describe_trails_shows_the_regions_trails_shadows_and_only_the_callers(
        endpoint: Endpoint, region: str, key: str, request_members: dict[str, Any], names: list[str]) -> None:
    secret = PRINCIPALS[key].secret_access_key
    trails = client(endpoint, region, key, secret).describe_trails(**request_members)["trailList"]
    assert sorted(t["Name"] for t in trails) == names


def test_a_trail_object_has_the_models_members(endpoint: Endpoint) -> None:
    trail = client(endpoint, "ap-southeast-2").get_trail(Name=HOME.arn)["Trail"]
    assert trail == {
        "Name": "audit", "S3BucketName": "audit-bucket", "S3KeyPrefix": "p", "SnsTopicName": "files",
        "SnsTopicARN": f"arn:aws:sns:eu-west-1:{ACCOUNT}:files", "IncludeGlobalServiceEvents": True,
        "IsMultiRegionTrail": True, "HomeRegion": "eu-west-1", "TrailARN": HOME.arn,
        "LogFileValidationEnabled": True, "HasCustomEventSelectors": False, "HasInsightSelectors": False,
        "IsOrganizationTrail": False, "RecursiveLogging": True}


LOOKUP_ERRORS = {
    "a shadow by name": ("us-east-1", KEY, "audit", "TrailNotFoundException"),
    "an unknown name": ("eu-west-1", KEY, "nope", "TrailNotFoundException"),
    "a malformed ARN": ("eu-west-1", KEY, "arn:aws:cloudtrail:eu-west-1:1:trail/x", "CloudTrailARNInvalidException"),
    "a bad name": ("eu-west-1", KEY, "my--trail", "InvalidTrailNameException"),
    "a single-region trail from elsewhere": ("eu-west-1", KEY, LOCAL.arn, "TrailNotFoundException"),
    "another account's trail by ARN": ("us-east-1", KEY, FOREIGN.arn, "TrailNotFoundException"),
    "another account's trail by name": ("us-east-1", KEY, "foreign", "TrailNotFoundException"),
}


@pytest.mark.parametrize(("region", "key", "name", "code"), LOOKUP_ERRORS.values(), ids=LOOKUP_ERRORS.keys())
def test_lookups_fail_as_aws_does(endpoint: Endpoint, region: str, key: str, name: str, code: str) -> None:
    ct = client(endpoint, region, key, PRINCIPALS[key].secret_access_key)
    assert code_of(lambda: ct.get_trail(Name=name)) == code
    assert code_of(lambda: ct.get_trail_status(Name=name)) == code


def test_another_accounts_trail_is_answered_as_a_missing_one(endpoint: Endpoint) -> None:
    ct = client(endpoint)
    with pytest.raises(ClientError) as theirs:
        ct.get_trail(Name=FOREIGN.arn)
    missing = FOREIGN.arn.replace("foreign", "absent")
    with pytest.raises(ClientError) as absent:
        ct.get_trail(Name=missing)
    assert theirs.value.response["Error"]["Message"].replace("foreign", "absent") == \
        absent.value.response["Error"]["Message"]
    for call in (lambda: ct.delete_trail(Name=FOREIGN.arn), lambda: ct.start_logging(Name=FOREIGN.arn),
                 lambda: ct.put_event_selectors(TrailName=FOREIGN.arn, EventSelectors=[{"ReadWriteType": "All"}])):
        assert code_of(call) == "TrailNotFoundException"
    assert FOREIGN.arn in endpoint.store.trails()


def test_list_trails_pages_through_the_callers_trails(endpoint: Endpoint) -> None:
    ct = client(endpoint, "ap-southeast-2")
    pages = list(ct.get_paginator("list_trails").paginate())
    assert [len(page["Trails"]) for page in pages] == [2, 1]
    listed = [t["TrailARN"] for page in pages for t in page["Trails"]]
    assert listed == sorted([HOME.arn, LOCAL.arn, ORG_TRAIL.arn])
    assert code_of(lambda: ct.list_trails(NextToken="!!not-a-token")) == "InvalidNextTokenException"
    assert decode_token(encode_token(HOME.arn), "X") == HOME.arn


# --- changing trails ------------------------------------------------------------------------------------------


def test_a_trail_lifecycle(endpoint: Endpoint) -> None:
    ct = client(endpoint, "us-west-2")
    created = ct.create_trail(Name="fresh", S3BucketName="fresh-bucket", IsMultiRegionTrail=True,
                              TagsList=[{"Key": "team", "Value": "audit"}])
    arn = f"arn:aws:cloudtrail:us-west-2:{ACCOUNT}:trail/fresh"
    assert created["TrailARN"] == arn and "HomeRegion" not in created
    assert ct.get_trail_status(Name="fresh")["IsLogging"] is False
    ct.start_logging(Name="fresh")
    status = ct.get_trail_status(Name="fresh")
    assert status["IsLogging"] is True and status["StartLoggingTime"] == datetime.fromtimestamp(NOW, UTC)
    assert code_of(lambda: client(endpoint, "eu-west-1").stop_logging(Name=arn)) == "InvalidHomeRegionException"
    assert client(endpoint, "eu-west-1").get_trail_status(Name=arn)["IsLogging"] is True
    updated = ct.update_trail(Name=arn, S3KeyPrefix="logs", EnableLogFileValidation=True)
    assert updated["S3KeyPrefix"] == "logs" and updated["LogFileValidationEnabled"] is True
    assert ct.update_trail(Name="fresh", S3KeyPrefix="")["S3BucketName"] == "fresh-bucket"
    assert "S3KeyPrefix" not in ct.get_trail(Name="fresh")["Trail"]
    ct.add_tags(ResourceId=arn, TagsList=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "sec"}])
    tags = ct.list_tags(ResourceIdList=[arn])["ResourceTagList"][0]["TagsList"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "sec")]
    ct.remove_tags(ResourceId=arn, TagsList=[{"Key": "env"}])
    assert [t["Key"] for t in ct.list_tags(ResourceIdList=[arn])["ResourceTagList"][0]["TagsList"]] == ["team"]
    ct.stop_logging(Name="fresh")
    assert ct.get_trail_status(Name="fresh")["StopLoggingTime"] == datetime.fromtimestamp(NOW, UTC)
    assert code_of(lambda: ct.create_trail(Name="fresh", S3BucketName="fresh-bucket")) == \
        "TrailAlreadyExistsException"
    ct.delete_trail(Name="fresh")
    assert arn not in endpoint.store.trails()
    assert code_of(lambda: ct.get_trail(Name="fresh")) == "TrailNotFoundException"


def test_event_and_insight_selectors(endpoint: Endpoint) -> None:
    ct = client(endpoint)
    default = ct.get_event_selectors(TrailName="local")
    assert default["EventSelectors"][0]["ReadWriteType"] == "All"
    basic = ct.put_event_selectors(TrailName="local", EventSelectors=[
        {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True,
         "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::b/"]}]}])
    assert basic["EventSelectors"][0]["ReadWriteType"] == "WriteOnly"
    advanced = [{"Name": "writes", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]},
                                                      {"Field": "readOnly", "Equals": ["false"]}]}]
    assert ct.put_event_selectors(TrailName="local", AdvancedEventSelectors=advanced)["AdvancedEventSelectors"] \
        == advanced
    got = ct.get_event_selectors(TrailName=LOCAL.arn)
    assert got["AdvancedEventSelectors"] == advanced and "EventSelectors" not in got
    assert ct.get_trail(Name="local")["Trail"]["HasCustomEventSelectors"] is True
    assert code_of(lambda: ct.get_insight_selectors(TrailName="local")) == "InsightNotEnabledException"
    insights = [{"InsightType": "ApiCallRateInsight"}]
    assert ct.put_insight_selectors(TrailName="local", InsightSelectors=insights)["InsightSelectors"] == insights
    assert ct.get_insight_selectors(TrailName="local")["InsightSelectors"] == insights


SELECTOR_ERRORS = {
    "six basic selectors": ({"EventSelectors": [{"ReadWriteType": "All"}] * 6}, "InvalidEventSelectorsException"),
    "basic and advanced in one call": ({"EventSelectors": [{"ReadWriteType": "All"}], "AdvancedEventSelectors": [
        {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}, "InvalidEventSelectorsException"),
    "neither": ({}, "InvalidEventSelectorsException"),
    "an unknown advanced field": ({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "colour", "Equals": ["red"]}]}]},
        "InvalidEventSelectorsException"),
    "a bad ReadWriteType": ({"EventSelectors": [{"ReadWriteType": "Sometimes"}]}, "InvalidEventSelectorsException"),
    "over 500 condition values": ({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN", "StartsWith": [f"arn:aws:s3:::b{i}/" for i in range(501)]}]}]},
        "InvalidEventSelectorsException"),
}


@pytest.mark.parametrize(("members", "code"), SELECTOR_ERRORS.values(), ids=SELECTOR_ERRORS.keys())
def test_bad_event_selectors_are_refused_and_change_nothing(endpoint: Endpoint, members: dict[str, Any],
                                                            code: str) -> None:
    before = endpoint.store.trails()[LOCAL.arn]
    raw = raw_call(endpoint, "PutEventSelectors", {"TrailName": "local", **members})
    assert raw[1]["__type"] == code, raw
    assert endpoint.store.trails()[LOCAL.arn] == before


CREATE_ERRORS = {
    "a bad name": ({"Name": "my-_trail"}, "InvalidTrailNameException"),
    "an IP address name": ({"Name": "192.168.5.4"}, "InvalidTrailNameException"),
    "a taken name": ({"Name": "local"}, "TrailAlreadyExistsException"),
    "a bad bucket name": ({"S3BucketName": "Bad_Bucket"}, "InvalidS3BucketNameException"),
    "a malformed log group ARN": ({"CloudWatchLogsLogGroupArn": "arn:aws:logs:nope",
                                   "CloudWatchLogsRoleArn": f"arn:aws:iam::{ACCOUNT}:role/r"},
                                  "InvalidCloudWatchLogsLogGroupArnException"),
    "51 tags": ({"TagsList": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]}, "TagsLimitExceededException"),
    "a duplicate tag": ({"TagsList": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]},
                        "InvalidTagParameterException"),
    "a multi-region trail without global events": ({"IsMultiRegionTrail": True, "IncludeGlobalServiceEvents": False},
                                                   "InvalidParameterCombinationException"),
    "an organization trail from a member account": ({"IsOrganizationTrail": True}, "OrganizationsNotInUseException"),
    "an unknown member": ({"Colour": "red"}, "InvalidParameterException"),
    "a wrong type": ({"IsMultiRegionTrail": "yes"}, "InvalidParameterException"),
}


@pytest.mark.parametrize(("members", "code"), CREATE_ERRORS.values(), ids=CREATE_ERRORS.keys())
def test_create_trail_refusals_change_nothing(endpoint: Endpoint, members: dict[str, Any], code: str) -> None:
    before = dict(endpoint.store.trails())
    status, answer = raw_call(endpoint, "CreateTrail", {"Name": "newer", "S3BucketName": "b-ok", **members})
    assert (status, answer["__type"]) == (400, code), answer
    assert endpoint.store.trails() == before


def test_the_sixth_trail_in_a_region_is_refused(endpoint: Endpoint) -> None:
    ct = client(endpoint)  # us-east-1 holds local, org and the shadow of audit
    ct.create_trail(Name="four", S3BucketName="b-four")
    ct.create_trail(Name="five", S3BucketName="b-five")
    assert code_of(lambda: ct.create_trail(Name="six", S3BucketName="b-six")) == \
        "MaximumNumberOfTrailsExceededException"


def test_tags_refusals(endpoint: Endpoint) -> None:
    ct = client(endpoint)
    assert code_of(lambda: ct.add_tags(ResourceId=LOCAL.arn, TagsList=[{"Key": "aws:x", "Value": "v"}])) == \
        "InvalidTagParameterException"
    assert code_of(lambda: ct.add_tags(ResourceId=LOCAL.arn, TagsList=[
        {"Key": f"k{i}", "Value": "v"} for i in range(51)])) == "TagsLimitExceededException"
    assert code_of(lambda: ct.add_tags(ResourceId=FOREIGN.arn, TagsList=[{"Key": "k", "Value": "v"}])) == \
        "ResourceNotFoundException"
    assert code_of(lambda: ct.list_tags(ResourceIdList=["local"])) == "CloudTrailARNInvalidException"


def test_organization_trails_belong_to_the_management_account(endpoint: Endpoint) -> None:
    org = client(endpoint, key=ORG_KEY, secret=ORG_SECRET)
    assert org.get_trail(Name=ORG_TRAIL.arn)["Trail"]["IsOrganizationTrail"] is True
    created = org.create_trail(Name="org-two", S3BucketName="b-org", IsOrganizationTrail=True)
    assert created["IsOrganizationTrail"] is True
    assert endpoint.store.trails()[created["TrailARN"]].organization_id == ORG
    assert code_of(lambda: client(endpoint, key=OTHER_KEY, secret=OTHER_SECRET).get_trail(Name=ORG_TRAIL.arn)) == \
        "TrailNotFoundException"


def test_trail_status_comes_from_the_sinks_reports(endpoint: Endpoint) -> None:
    for update in (TrailStatusUpdate(LOCAL.arn, "us-east-1", "delivery", NOW + 1.5),
                   TrailStatusUpdate(LOCAL.arn, "us-east-1", "delivery", NOW + 2, "NoSuchBucket: gone"),
                   TrailStatusUpdate(LOCAL.arn, "us-east-1", "notification", NOW + 3),
                   TrailStatusUpdate(LOCAL.arn, "us-east-1", "digest", NOW + 4),
                   TrailStatusUpdate(LOCAL.arn, "us-east-1", "cloudwatch", NOW + 5, "ResourceNotFoundException: x"),
                   TrailStatusUpdate(HOME.arn, "ap-southeast-2", "delivery", NOW + 6)):
        endpoint.status.add(update)
    status = client(endpoint).get_trail_status(Name="local")
    assert status["LatestDeliveryTime"] == datetime.fromtimestamp(NOW + 1.5, UTC)
    assert status["LatestDeliveryError"] == "NoSuchBucket: gone"
    assert status["LatestNotificationTime"] == datetime.fromtimestamp(NOW + 3, UTC)
    assert status["LatestDigestDeliveryTime"] == datetime.fromtimestamp(NOW + 4, UTC)
    assert status["LatestCloudWatchLogsDeliveryError"].startswith("ResourceNotFoundException")
    shadow = client(endpoint, "ap-southeast-2").get_trail_status(Name=HOME.arn)
    assert shadow["LatestDeliveryTime"] == datetime.fromtimestamp(NOW + 6, UTC)
    assert "LatestDeliveryTime" not in client(endpoint, "eu-west-1").get_trail_status(Name="audit")


def test_status_reports_are_coalesced_to_one_a_second_and_the_last_one_kept() -> None:
    sent: list[TrailStatusUpdate] = []
    now = [0.0]
    reporter = StatusReporter(sent.append, clock=lambda: now[0], wall_clock=lambda: 1000 + now[0])
    for step in range(10):
        now[0] = step * 0.1
        reporter.report("arn", "us-east-1", "delivery")
    assert len(sent) == 1
    now[0] = 1.05
    reporter.flush()
    assert [u.time for u in sent] == [1000.0, 1000.9]
    reporter.report("arn", "us-east-1", "delivery", "AccessDenied: no")  # another key: not held back
    assert sent[-1].error == "AccessDenied: no"
    assert TrailStatusUpdate.decode(sent[-1].encode()) == sent[-1]


def test_status_reports_from_many_threads_at_once_lose_nothing() -> None:
    """The S3 sink reports from its store and notify threads (a KeyError here once stopped the sink)."""
    sent: list[TrailStatusUpdate] = []
    reporter = StatusReporter(sent.append, min_interval_s=0.0)
    failures: list[BaseException] = []

    def report_many(thread: int) -> None:
        try:
            for i in range(3_000):
                reporter.report("arn", f"r{i % 4}", "delivery", f"thread {thread} report {i}")
        except BaseException as exc:
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=report_many, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    reporter.flush(force=True)
    assert failures == []
    assert reporter.pending == {}
    assert {u.region for u in sent if u.error and u.error.endswith("report 2999")} == {"r3"}


def test_list_public_keys_returns_der_keys_in_range(endpoint: Endpoint) -> None:
    ct = client(endpoint)
    (key,) = ct.list_public_keys(StartTime=datetime.fromtimestamp(NOW - 3600, UTC),
                                 EndTime=datetime.fromtimestamp(NOW + 3600, UTC))["PublicKeyList"]
    assert isinstance(key["Value"], bytes) and key["ValidityStartTime"] == datetime.fromtimestamp(NOW, UTC)
    assert code_of(lambda: ct.list_public_keys(StartTime=datetime.fromtimestamp(NOW, UTC),
                                               EndTime=datetime.fromtimestamp(NOW - 1, UTC))) == \
        "InvalidTimeRangeException"


def test_the_logic_runs_without_http() -> None:
    api = CloudTrailApi(MemoryStore([LOCAL]), Path("/nonexistent"))
    call = Call(PRINCIPALS[KEY], "us-east-1", {"Name": "local"})
    assert api.call("GetTrail", call)["Trail"]["Name"] == "local"
    with pytest.raises(ApiError, match=r"UnknownOperation|not an operation"):
        api.call("CreateEventDataStore", call)


# --- HTTP hardening -------------------------------------------------------------------------------------------


def raw_call(endpoint: Endpoint, operation: str, body: dict[str, Any], region: str = "us-east-1") -> tuple[int, Any]:
    """A signed call whose body goes as is (no client-side validation)."""
    return signed_call(endpoint.url, operation, json.dumps(body).encode(), key=KEY, secret=SECRET, region=region)


TARGET = TARGET_PREFIX + "DescribeTrails"
HOSTILE = {
    "a negative Content-Length": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: -1\r\n\r\n", 400, "InvalidRequest"),
    "a Content-Length that is no number": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: abc\r\n\r\n", 400,
        "InvalidRequest"),
    "a body over the limit, announced and not sent": (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: 104857600\r\n\r\n",
        413, "RequestEntityTooLarge"),
    "another method": ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "InvalidRequest"),
    "a broken request line": ("NONSENSE\r\n\r\n", 400, "InvalidRequest"),
    "no signature": (f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: 2\r\n\r\n{{}}",
                     403, "MissingAuthenticationTokenException"),
}


@pytest.mark.parametrize(("request_text", "status", "code"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_requests_get_a_json_error_at_once(endpoint: Endpoint, request_text: str, status: int,
                                                   code: str) -> None:
    answered, headers, body = exchange(endpoint.url, request_text.encode(), timeout_s=5)
    assert answered == status
    assert json.loads(body)["__type"] == code
    assert "Python" not in headers.get("Server", "") and "Traceback" not in body.decode()


@pytest.mark.parametrize(("body", "operation", "code"), [
    (b"{not json", "DescribeTrails", "SerializationException"),
    (b"[1]", "DescribeTrails", "SerializationException"),
    (b"{}", "LaunchRockets", "UnknownOperationException"),
    (b"{}", None, "UnknownOperationException"),
])
def test_signed_but_malformed_calls(endpoint: Endpoint, body: bytes, operation: str | None, code: str) -> None:
    status, answer = signed_call(endpoint.url, operation, body, key=KEY, secret=SECRET, region="us-east-1")
    assert (status, answer["__type"]) == (400, code)


def test_an_unexpected_failure_is_a_logged_500_without_details(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryStore):
        def trails(self) -> Mapping[str, Trail]:
            raise RuntimeError("the secret internals")

    api = CloudTrailApi(Broken(), tmp_path)
    for url in run_server(ApiHandler(api, PRINCIPALS, "us-east-1")):
        with pytest.raises(ClientError) as caught:
            client(url).list_trails()
        error = caught.value.response["Error"]
        assert error["Code"] == "InternalFailure" and "secret internals" not in error["Message"]
    assert "the secret internals" in caplog.text


def test_a_client_that_stops_sending_gets_a_timeout(tmp_path: Path) -> None:
    api = CloudTrailApi(MemoryStore(), tmp_path)
    for url in run_server(ApiHandler(api, PRINCIPALS, "us-east-1", body_timeout_s=0.5)):
        began = time.monotonic()
        status, _, body = exchange(url, (
            f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET}\r\nContent-Length: 10\r\n\r\n{{").encode())
        assert (status, json.loads(body)["__type"]) == (408, "RequestTimeout")
        assert time.monotonic() - began < 5


def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    api = CloudTrailApi(MemoryStore(), tmp_path)
    for url in run_server(ApiHandler(api, PRINCIPALS, "us-east-1"), idle_timeout_s=0.5):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            began = time.monotonic()
            assert connection.recv(100) == b""  # closed by the server
            assert time.monotonic() - began < 4
