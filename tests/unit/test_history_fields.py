"""What event history keeps and the lookup fields it derives: category, Username per identity type, Resources and
the whole `LookupFields`, table-driven, over composed records and the real CloudTrail records in tests/data/real."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kafkatrail.sinks.history_fields import (
    MAX_RESOURCES,
    LookupFields,
    history_category,
    lookup_fields,
    resources,
    username,
)

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "stratus-detonation-logs"
REAL_RECORDS = {record["eventID"]: record for path in sorted(REAL.glob("*.json"))
                for record in json.loads(path.read_text())}

ACCOUNT = "111122223333"
ISSUER = {"type": "Role", "principalId": "AROAEXAMPLEID", "arn": f"arn:aws:iam::{ACCOUNT}:role/Deployer",
          "accountId": ACCOUNT, "userName": "Deployer"}
# records.md §8.1: a write management event by an assumed role.
MANAGEMENT: dict[str, Any] = {
    "eventVersion": "1.11",
    "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLEID:ci-run-481",
                     "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/ci-run-481", "accountId": ACCOUNT,
                     "accessKeyId": "ASIAEXAMPLEKEY",
                     "sessionContext": {"sessionIssuer": ISSUER, "webIdFederationData": {},
                                        "attributes": {"creationDate": "2024-05-01T09:12:44Z",
                                                       "mfaAuthenticated": "false"}}},
    "eventTime": "2024-05-01T09:13:02Z", "eventSource": "ec2.amazonaws.com", "eventName": "StopInstances",
    "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.25", "requestParameters": None,
    "responseElements": None, "eventID": "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90", "readOnly": False,
    "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCOUNT,
    "eventCategory": "Management",
    "resources": [{"accountId": ACCOUNT, "type": "AWS::EC2::Instance",
                   "ARN": f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0abc1234def567890"}]}
# docs/cloudtrail.md §9: an Insights record names its event in insightDetails.
INSIGHT: dict[str, Any] = {
    "eventVersion": "1.11", "eventTime": "2024-05-01T10:00:00Z", "awsRegion": "eu-west-1",
    "eventID": "4c3b2a19-8f7e-4d6c-b5a4-39281706f5e4", "eventType": "AwsCloudTrailInsight",
    "recipientAccountId": ACCOUNT, "sharedEventID": "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
    "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                       "insightType": "ApiCallRateInsight", "insightContext": {}},
    "eventCategory": "Insight"}


def changed(record: dict[str, Any], **members: Any) -> dict[str, Any]:
    """A deep copy of `record` with top-level members replaced (None removes the member)."""
    result = copy.deepcopy(record)
    for name, value in members.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


CATEGORY_CASES = {
    "management": ({"eventCategory": "Management"}, "management"),
    "insight": ({"eventCategory": "Insight"}, "insight"),
    "data event": ({"eventCategory": "Data", "managementEvent": False}, None),
    "network activity": ({"eventCategory": "NetworkActivity"}, None),
    "no category, managementEvent true": ({"managementEvent": True}, "management"),
    "no category, managementEvent false (a data event before 1.07)": ({"managementEvent": False}, None),
    "no category, no managementEvent (before 1.06)": ({}, "management"),
}


@pytest.mark.parametrize(("record", "expected"), CATEGORY_CASES.values(), ids=CATEGORY_CASES.keys())
def test_history_keeps_management_events_and_insights_only(record: dict[str, Any], expected: str | None) -> None:
    assert history_category(record) == expected


def identity(**fields: Any) -> dict[str, Any]:
    return {"userIdentity": fields}


USERNAME_CASES = {
    "Root without an alias is root": (identity(type="Root", principalId=ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:root",
                                               accountId=ACCOUNT), "root"),
    "Root with an account alias": (identity(type="Root", arn=f"arn:aws:iam::{ACCOUNT}:root", userName="acme-prod"),
                                   "acme-prod"),
    "Root with an empty userName is root": (identity(type="Root", userName=""), "root"),
    "IAMUser": (identity(type="IAMUser", arn=f"arn:aws:iam::{ACCOUNT}:user/path/alice", userName="alice"), "alice"),
    "IAMUser without userName": (identity(type="IAMUser", arn=f"arn:aws:iam::{ACCOUNT}:user/alice"), None),
    "failed sign-in keeps AWS's placeholder": (identity(type="IAMUser", userName="HIDDEN_DUE_TO_SECURITY_REASONS"),
                                               "HIDDEN_DUE_TO_SECURITY_REASONS"),
    "AssumedRole: the session name": (MANAGEMENT, "ci-run-481"),
    "AssumedRole without an ARN: the role": (identity(type="AssumedRole",
                                                      sessionContext={"sessionIssuer": ISSUER}), "Deployer"),
    "AssumedRole with neither": (identity(type="AssumedRole", principalId="AROAEXAMPLEID:x"), None),
    "FederatedUser: the federated name": (identity(type="FederatedUser", principalId=f"{ACCOUNT}:bob",
                                                   arn=f"arn:aws:sts::{ACCOUNT}:federated-user/bob"), "bob"),
    "FederatedUser without an ARN: from principalId": (identity(type="FederatedUser", principalId=f"{ACCOUNT}:bob"),
                                                       "bob"),
    "AWSService: the invoking service": (identity(type="AWSService", invokedBy="elasticbeanstalk.amazonaws.com"),
                                         "elasticbeanstalk.amazonaws.com"),
    "AWSService without invokedBy": (identity(type="AWSService"), None),
    "AWSAccount: the other account": (identity(type="AWSAccount", principalId="AIDAOTHER", accountId="444455556666"),
                                      "444455556666"),
    "IdentityCenterUser: the user id": (identity(type="IdentityCenterUser", accountId=ACCOUNT,
                                                 onBehalfOf={"userId": "9067d8e2-10c1-70b7-0e1e-5a5b0fbc1f1e",
                                                             "identityStoreArn": "arn:aws:identitystore::x"}),
                                        "9067d8e2-10c1-70b7-0e1e-5a5b0fbc1f1e"),
    "IdentityCenterUser without onBehalfOf": (identity(type="IdentityCenterUser", accountId=ACCOUNT), None),
    "Unknown with a userName": (identity(type="Unknown", userName="someone@example.com"), "someone@example.com"),
    "Unknown without": (identity(type="Unknown", principalId="x"), None),
    "Role": (identity(type="Role", userName="user-defined"), "user-defined"),
    "Directory": (identity(type="Directory", userName="alice@example.com"), "alice@example.com"),
    "SAMLUser": (identity(type="SAMLUser", userName="alice@corp", identityProvider="corp"), "alice@corp"),
    "WebIdentityUser": (identity(type="WebIdentityUser", userName="user-id", identityProvider="accounts.google.com"),
                        "user-id"),
    "no type": (identity(userName="legacy"), "legacy"),
    "a type that is not a string": (identity(type=["Root"], userName="x"), "x"),
    "no userIdentity": ({}, None),
    "userIdentity not an object": ({"userIdentity": "Root"}, None),
    # Real records (tests/data/real): an IAM user, a role session named by the Go SDK, a federated user.
    "real IAMUser": (REAL_RECORDS["ba4609ca-b420-4cb6-bdff-307729b3b7db"], "christophe"),
    "real AssumedRole": (REAL_RECORDS["1a4debbb-12e9-4bde-b8c7-ea29002bb2a7"], "aws-go-sdk-1722511821294449000"),
    "real FederatedUser": (REAL_RECORDS["91529247-c4c4-4793-afc8-d70bbcfe9d19"], "stratus_red_team"),
}


@pytest.mark.parametrize(("record", "expected"), USERNAME_CASES.values(), ids=USERNAME_CASES.keys())
def test_username_per_identity_type(record: dict[str, Any], expected: str | None) -> None:
    assert username(record) == expected


def resource(arn: Any = None, kind: Any = None, **extra: Any) -> dict[str, Any]:
    entry = {"accountId": ACCOUNT, **extra}
    if arn is not None:
        entry["ARN"] = arn
    if kind is not None:
        entry["type"] = kind
    return entry


BUCKET = "arn:aws:s3:::audit-bucket"
ROLE = "arn:aws:iam::111122223333:role/Deployer"
MANY = [resource(f"arn:aws:s3:::bucket-{i:02d}", "AWS::S3::Bucket") for i in range(MAX_RESOURCES + 5)]
RESOURCE_CASES = {
    "none": ({}, []),
    "an empty list": ({"resources": []}, []),
    "typed": ({"resources": [resource(BUCKET, "AWS::S3::Bucket")]}, [("AWS::S3::Bucket", BUCKET)]),
    "untyped: the type is None": ({"resources": [resource(BUCKET)]}, [(None, BUCKET)]),
    "an empty type is None": ({"resources": [resource(BUCKET, "")]}, [(None, BUCKET)]),
    "no ARN: left out": ({"resources": [resource(kind="AWS::S3::Bucket"), resource(ROLE, "AWS::IAM::Role")]},
                         [("AWS::IAM::Role", ROLE)]),
    "not an object: left out": ({"resources": ["arn:aws:s3:::x", resource(ROLE)]}, [(None, ROLE)]),
    "order kept": ({"resources": [resource(ROLE, "AWS::IAM::Role"), resource(BUCKET, "AWS::S3::Bucket")]},
                   [("AWS::IAM::Role", ROLE), ("AWS::S3::Bucket", BUCKET)]),
    "a repeated pair counts once": ({"resources": [resource(BUCKET, "AWS::S3::Bucket")] * 3},
                                    [("AWS::S3::Bucket", BUCKET)]),
    "one ARN with two types: both": ({"resources": [resource(BUCKET, "AWS::S3::Bucket"), resource(BUCKET)]},
                                     [("AWS::S3::Bucket", BUCKET), (None, BUCKET)]),
    f"at most {MAX_RESOURCES}, the first": ({"resources": MANY},
                                            [("AWS::S3::Bucket", f"arn:aws:s3:::bucket-{i:02d}")
                                             for i in range(MAX_RESOURCES)]),
    "not a list": ({"resources": {"ARN": BUCKET}}, []),
    "real AssumeRole: the role": (REAL_RECORDS["d769ddfd-2cda-4cfa-b33f-05d3b886921d"],
                                  [("AWS::IAM::Role",
                                    "arn:aws:iam::457448411975:role/stratus-red-team-ec2-get-password-data-role")]),
    "real GetParameters: untyped parameters": (
        REAL_RECORDS["fb5e100b-273f-4cef-98e4-efc3a52a15e9"],
        [(None, f"arn:aws:ssm:cn-west-3r:933175858973:parameter/credentials/stratus-red-team/credentials-{n}")
         for n in (12, 40)]),
}


@pytest.mark.parametrize(("record", "expected"), RESOURCE_CASES.values(), ids=RESOURCE_CASES.keys())
def test_resources_are_the_records_typed_arns(record: dict[str, Any], expected: list[tuple[str | None, str]]) -> None:
    assert resources(record) == expected


FULL = LookupFields(event_id="0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90", event_name="StopInstances", read_only="false",
                    access_key_id="ASIAEXAMPLEKEY", event_time_ms=1_714_554_782_000, event_source="ec2.amazonaws.com",
                    username="ci-run-481", resources=[("AWS::EC2::Instance", MANAGEMENT["resources"][0]["ARN"])],
                    account=ACCOUNT, region="eu-west-1", category="management")
LOOKUP_CASES = {
    "a management event": (MANAGEMENT, FULL),
    "read-only": (changed(MANAGEMENT, readOnly=True), FULL._replace(read_only="true")),
    "no readOnly": (changed(MANAGEMENT, readOnly=None), FULL._replace(read_only=None)),
    "an empty access key is none": (changed(MANAGEMENT, userIdentity={"type": "IAMUser", "userName": "alice",
                                                                      "accessKeyId": ""}),
                                    FULL._replace(access_key_id=None, username="alice")),
    "no userIdentity": (changed(MANAGEMENT, userIdentity=None), FULL._replace(access_key_id=None, username=None)),
    "before 1.07, no category": (changed(MANAGEMENT, eventCategory=None), FULL),
    "another account and region": (changed(MANAGEMENT, recipientAccountId="444455556666", awsRegion="us-east-1"),
                                   FULL._replace(account="444455556666", region="us-east-1")),
    "an Insights record: name and source from insightDetails": (
        INSIGHT, LookupFields(event_id="4c3b2a19-8f7e-4d6c-b5a4-39281706f5e4", event_name="RunInstances",
                              read_only=None, access_key_id=None, event_time_ms=1_714_557_600_000,
                              event_source="ec2.amazonaws.com", username=None, resources=[], account=ACCOUNT,
                              region="eu-west-1", category="insight")),
    "a data event is not kept": (changed(MANAGEMENT, eventCategory="Data", managementEvent=False), None),
    "a network activity event is not kept": (changed(MANAGEMENT, eventCategory="NetworkActivity"), None),
    "no eventID": (changed(MANAGEMENT, eventID=None), None),
    "an eventID that is not a string": (changed(MANAGEMENT, eventID=7), None),
    "no eventTime": (changed(MANAGEMENT, eventTime=None), None),
    "an eventTime that is not a time": (changed(MANAGEMENT, eventTime="yesterday"), None),
    "no recipientAccountId": (changed(MANAGEMENT, recipientAccountId=None), None),
    "an Insights record without insightDetails": (changed(INSIGHT, insightDetails=None), None),
}


@pytest.mark.parametrize(("record", "expected"), LOOKUP_CASES.values(), ids=LOOKUP_CASES.keys())
def test_lookup_fields(record: dict[str, Any], expected: LookupFields | None) -> None:
    assert lookup_fields(record) == expected


@pytest.mark.parametrize("record", REAL_RECORDS.values(), ids=REAL_RECORDS.keys())
def test_every_real_record_is_kept_with_its_own_fields(record: dict[str, Any]) -> None:
    fields = lookup_fields(record)
    assert fields is not None
    identity_ = record["userIdentity"]
    assert (fields.event_id, fields.event_name, fields.event_source) == (record["eventID"], record["eventName"],
                                                                        record["eventSource"])
    assert fields.event_time_ms == datetime.fromisoformat(record["eventTime"]).timestamp() * 1000
    assert fields.read_only == {True: "true", False: "false"}[record["readOnly"]]
    assert fields.access_key_id == (identity_.get("accessKeyId") or None)
    assert (fields.account, fields.region, fields.category) == (record["recipientAccountId"], record["awsRegion"],
                                                                "management")
    assert fields.username is not None and fields.username in identity_["arn"]
    assert [name for _, name in fields.resources] == [entry["ARN"] for entry in record.get("resources", [])]
