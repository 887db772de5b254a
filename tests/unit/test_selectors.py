"""Which trails log a record: scope, basic and advanced selector semantics (docs/cloudtrail.md §6)."""

from __future__ import annotations

from typing import Any

import pytest

from kafkatrail.processors.selectors import Selection, TrailMatcher, select_trails
from kafkatrail.trails.model import Trail

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
FUNCTION = "arn:aws:lambda:eu-west-1:111122223333:function:"
TABLE = "arn:aws:dynamodb:eu-west-1:111122223333:table/"


def trail(name: str = "audit", **changes: Any) -> Trail:
    values: dict[str, Any] = {"name": name, "home_region": "eu-west-1", "account_id": ACCOUNT,
                              "s3_bucket_name": "audit-bucket"}
    values.update(changes)
    return Trail(**values)


def record(category: str | None = "Management", read_only: bool | None = False, source: str = "ec2",
           name: str = "RunInstances", arn: str | None = None, resource_type: str = "AWS::S3::Object",
           **fields: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "eventVersion": "1.11",
        "eventSource": f"{source}.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "recipientAccountId": ACCOUNT,
        "eventType": "AwsApiCall",
    }
    if category is not None:
        made["eventCategory"] = category
    if read_only is not None:
        made["readOnly"] = read_only
    if arn is not None:
        made["resources"] = [{"type": resource_type, "ARN": arn, "accountId": ACCOUNT}]
    made.update(fields)
    return made


def matches(t: Trail, r: dict[str, Any]) -> bool:
    return TrailMatcher(t).matches(r)


def field(name: str, **operators: list[str]) -> dict[str, Any]:
    return {"Field": name, **operators}


def advanced(*field_selectors: dict[str, Any]) -> dict[str, Any]:
    return {"FieldSelectors": list(field_selectors)}


def data(*more: dict[str, Any], resource_type: str = "AWS::S3::Object") -> dict[str, Any]:
    return advanced(field("eventCategory", Equals=["Data"]), field("resources.type", Equals=[resource_type]), *more)


# --- docs/cloudtrail.md §6.4: the worked example ------------------------------------------------

WORKED_TRAILS = {
    "T0": trail("trail-0"),
    "T1": trail("trail-1", event_selectors=[{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True,
                                             "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]),
    "T2": trail("trail-2", event_selectors=[{
        "ReadWriteType": "All", "IncludeManagementEvents": False,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::audit-bucket/reports/"]},
                          {"Type": "AWS::Lambda::Function", "Values": [FUNCTION + "hello"]}]}]),
    "T3": trail("trail-3", advanced_event_selectors=[
        advanced(field("eventCategory", Equals=["Management"]), field("readOnly", Equals=["false"])),
        data(field("eventName", Equals=["PutObject", "DeleteObject"]),
             field("resources.ARN", NotStartsWith=["arn:aws:s3:::audit-bucket/"])),
    ]),
    "T4": trail("trail-4", advanced_event_selectors=[advanced(
        field("eventCategory", Equals=["NetworkActivity"]), field("eventSource", Equals=["s3.amazonaws.com"]),
        field("errorCode", Equals=["VpceAccessDenied"]))]),
}
REPORT = "arn:aws:s3:::audit-bucket/reports/q1.csv"
WORKED_RECORDS = {
    1: record("Management", False, "ec2", "RunInstances"),
    2: record("Management", True, "ec2", "DescribeInstances"),
    3: record("Management", True, "kms", "Decrypt"),
    4: record("Management", False, "kms", "ScheduleKeyDeletion"),
    5: record("Data", True, "s3", "GetObject", REPORT),
    6: record("Data", False, "s3", "PutObject", REPORT),
    7: record("Data", False, "s3", "PutObject", "arn:aws:s3:::media/img.png"),
    8: record("Data", False, "lambda", "Invoke", FUNCTION + "hello2", "AWS::Lambda::Function"),
    9: record("Data", False, "lambda", "Invoke", FUNCTION + "hello", "AWS::Lambda::Function"),
    10: record("NetworkActivity", None, "s3", "PutObject", errorCode="VpceAccessDenied", eventType="AwsVpceEvents",
               vpcEndpointId="vpce-0a1b2c3d4e5f67890"),
    11: record("NetworkActivity", None, "s3", "GetObject", eventType="AwsVpceEvents",
               vpcEndpointId="vpce-0a1b2c3d4e5f67890"),
    12: record("Management", False, "iam", "CreateUser", awsRegion="us-east-1"),
}
# The table of docs/cloudtrail.md §6.4, row by row: T0 T1 T2 T3 T4.
WORKED_TABLE = {
    1: "yes yes no yes no",
    2: "yes no no no no",
    3: "yes no no no no",
    4: "yes no no yes no",
    5: "no no yes no no",
    6: "no no yes no no",
    7: "no no no yes no",
    8: "no no no no no",
    9: "no no yes no no",
    10: "no no no no yes",
    11: "no no no no no",
    12: "no no no no no",
}
WORKED_CASES = [(row, name, answer == "yes") for row, answers in WORKED_TABLE.items()
                for name, answer in zip(WORKED_TRAILS, answers.split(), strict=True)]


@pytest.mark.parametrize(("row", "trail_name", "expected"), WORKED_CASES)
def test_worked_examples(row: int, trail_name: str, expected: bool) -> None:
    assert matches(WORKED_TRAILS[trail_name], WORKED_RECORDS[row]) is expected


def test_row_12_reaches_a_multi_region_trail() -> None:
    everywhere = trail("everywhere", is_multi_region_trail=True)
    assert matches(everywhere, WORKED_RECORDS[12])


def test_worked_examples_through_a_selection() -> None:
    selection = Selection(WORKED_TRAILS.values())
    assert [t.name for t in selection.select(WORKED_RECORDS[1])] == ["trail-0", "trail-1", "trail-3"]
    assert [t.name for t in selection.select(WORKED_RECORDS[9])] == ["trail-2"]
    assert selection.select(WORKED_RECORDS[12]) == []


# --- scope: logging, region, global services, account, organization ----------------------------


def test_a_trail_not_logging_matches_nothing() -> None:
    stopped = trail(logging=False)
    everything = [*WORKED_RECORDS.values(), record(), record(awsRegion="us-east-1", source="iam")]
    assert not any(matches(stopped, r) for r in everything)
    assert matches(trail(), record())


@pytest.mark.parametrize(
    ("changes", "region", "expected"),
    [
        ({}, "eu-west-1", True),
        ({}, "eu-west-2", False),
        ({}, None, False),
        ({"is_multi_region_trail": True}, "ap-southeast-7", True),
        ({"is_multi_region_trail": True, "home_region": "us-east-1"}, "eu-west-1", True),
    ],
)
def test_region_scope(changes: dict[str, Any], region: str | None, expected: bool) -> None:
    assert matches(trail(**changes), record(awsRegion=region)) is expected


@pytest.mark.parametrize(
    ("changes", "source", "region", "expected"),
    [
        ({"home_region": "us-east-1"}, "iam", "us-east-1", True),
        ({"home_region": "us-east-1", "include_global_service_events": False}, "iam", "us-east-1", False),
        ({"home_region": "us-east-1", "include_global_service_events": False}, "sts", "us-east-1", False),
        ({"home_region": "us-east-1", "include_global_service_events": False}, "cloudfront", "us-east-1", False),
        ({"home_region": "us-east-1", "include_global_service_events": False}, "ec2", "us-east-1", True),
        ({"include_global_service_events": False}, "sts", "eu-west-1", True),  # a regional STS endpoint
        ({}, "iam", "us-east-1", False),  # single-region in eu-west-1: region scope
        ({"is_multi_region_trail": True}, "iam", "us-east-1", True),
        ({"is_multi_region_trail": True}, "cloudfront", "us-east-1", True),
        ({"is_multi_region_trail": True}, "iam", None, True),  # no region is not the global region
        ({"home_region": "cn-north-1", "partition": "aws-cn", "include_global_service_events": False},
         "iam", "cn-north-1", True),  # no documented global region outside partition aws
    ],
)
def test_global_service_events(changes: dict[str, Any], source: str, region: str, expected: bool) -> None:
    assert matches(trail(**changes), record(source=source, awsRegion=region)) is expected


@pytest.mark.parametrize(
    ("changes", "recipient", "expected"),
    [
        ({}, ACCOUNT, True),
        ({}, OTHER_ACCOUNT, False),
        ({}, None, False),
        ({"is_organization_trail": True}, OTHER_ACCOUNT, True),
        ({"is_organization_trail": True}, ACCOUNT, True),
    ],
)
def test_account_scope(changes: dict[str, Any], recipient: str | None, expected: bool) -> None:
    assert matches(trail(**changes), record(recipientAccountId=recipient)) is expected


# --- categories ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "read_only", "expected"),
    [
        ("Management", True, True),
        ("Management", False, True),
        ("Management", None, True),
        ("Data", True, False),
        ("NetworkActivity", None, False),
        ("Insight", None, False),
    ],
)
def test_no_selectors_log_all_management_events(category: str, read_only: bool | None, expected: bool) -> None:
    assert matches(trail(), record(category, read_only, arn="arn:aws:s3:::b/k")) is expected


def test_insight_records_are_never_selected() -> None:
    insight = {"eventVersion": "1.11", "eventCategory": "Insight", "eventType": "AwsCloudTrailInsight",
               "awsRegion": "eu-west-1", "recipientAccountId": ACCOUNT, "insightDetails": {"state": "Start"}}
    every_category = trail(advanced_event_selectors=[advanced(field("eventCategory", Equals=["Management"])),
                                                     data()])
    assert not matches(trail(), insight)
    assert not matches(every_category, insight)


ALL_S3 = [{"ReadWriteType": "All", "IncludeManagementEvents": False,
           "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]


@pytest.mark.parametrize(
    ("selectors", "management_event", "expected"),
    [
        (None, None, True),  # no eventCategory, no managementEvent: Management
        (None, True, True),
        (None, False, False),  # managementEvent false: Data, which a default trail does not log
        (ALL_S3, False, True),
        (ALL_S3, True, False),
    ],
)
def test_records_without_event_category(selectors: list[dict[str, Any]] | None, management_event: bool | None,
                                        expected: bool) -> None:
    old = record(None, False, "s3", "PutObject", "arn:aws:s3:::b/k", eventVersion="1.05")
    if management_event is not None:
        old["managementEvent"] = management_event
    assert matches(trail(event_selectors=selectors), old) is expected


# --- basic selectors ----------------------------------------------------------------------------

S3_ALL = {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}


@pytest.mark.parametrize(
    ("read_write", "read_only", "expected"),
    [
        ("All", True, True), ("All", False, True), ("All", None, True),
        ("ReadOnly", True, True), ("ReadOnly", False, False), ("ReadOnly", None, False),
        ("WriteOnly", True, False), ("WriteOnly", False, True), ("WriteOnly", None, False),
    ],
)
@pytest.mark.parametrize("category", ["Management", "Data"])
def test_read_write_type(read_write: str, read_only: bool | None, expected: bool, category: str) -> None:
    chosen = trail(event_selectors=[{"ReadWriteType": read_write, "DataResources": [S3_ALL]}])
    assert matches(chosen, record(category, read_only, "s3", "GetObject", "arn:aws:s3:::b/k")) is expected


def test_read_write_type_defaults_to_all() -> None:
    chosen = trail(event_selectors=[{"IncludeManagementEvents": True}])
    assert matches(chosen, record(read_only=True)) and matches(chosen, record(read_only=False))


def test_include_management_events() -> None:
    off = trail(event_selectors=[{"IncludeManagementEvents": False, "DataResources": [S3_ALL]}])
    assert not matches(off, record())
    assert matches(off, record("Data", True, "s3", "GetObject", "arn:aws:s3:::b/k"))
    data_only_default = trail(event_selectors=[{"DataResources": [S3_ALL]}])
    assert matches(data_only_default, record())  # IncludeManagementEvents defaults to true


@pytest.mark.parametrize(
    ("excluded", "source", "expected"),
    [
        (["kms.amazonaws.com"], "kms", False),
        (["kms.amazonaws.com"], "rdsdata", True),
        (["rdsdata.amazonaws.com"], "rdsdata", False),
        (["kms.amazonaws.com", "rdsdata.amazonaws.com"], "rdsdata", False),
        (["kms.amazonaws.com", "rdsdata.amazonaws.com"], "ec2", True),
        ([], "kms", True),
    ],
)
def test_exclude_management_event_sources(excluded: list[str], source: str, expected: bool) -> None:
    chosen = trail(event_selectors=[{"ExcludeManagementEventSources": excluded}])
    assert matches(chosen, record(source=source)) is expected


def test_exclusions_do_not_apply_to_data_events() -> None:
    lambdas = {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}
    excluding = {"ExcludeManagementEventSources": ["kms.amazonaws.com"], "DataResources": [lambdas]}
    chosen = trail(event_selectors=[excluding])
    assert matches(chosen, record("Data", False, "kms", "Invoke", FUNCTION + "f", "AWS::Lambda::Function"))


def test_basic_selectors_are_ored() -> None:
    chosen = trail(event_selectors=[
        {"ReadWriteType": "WriteOnly", "ExcludeManagementEventSources": ["kms.amazonaws.com"]},
        {"ReadWriteType": "ReadOnly"},
        {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": False,
         "DataResources": [{"Type": "AWS::Lambda::Function", "Values": [FUNCTION + "hello"]}]},
    ])
    assert matches(chosen, record(source="kms", read_only=True))  # second selector
    assert not matches(chosen, record(source="kms", read_only=False))  # only the first admits writes
    assert matches(chosen, record(source="ec2", read_only=False))
    assert matches(chosen, record("Data", False, "lambda", "Invoke", FUNCTION + "hello", "AWS::Lambda::Function"))
    assert not matches(chosen, record("Data", True, "lambda", "Invoke", FUNCTION + "hello", "AWS::Lambda::Function"))


def test_exclusion_needs_every_admitting_selector_to_exclude() -> None:
    both = trail(event_selectors=[{"ExcludeManagementEventSources": ["kms.amazonaws.com"]},
                                  {"ExcludeManagementEventSources": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]}])
    assert not matches(both, record(source="kms"))
    assert matches(both, record(source="rdsdata"))


@pytest.mark.parametrize(
    ("kind", "value", "arn", "expected"),
    [
        ("AWS::S3::Object", "arn:aws:s3", "arn:aws:s3:::any-bucket/any/key", True),
        ("AWS::S3::Object", "arn:aws:s3:::", "arn:aws:s3:::any-bucket/key", True),
        ("AWS::S3::Object", "arn:aws:s3:::audit-bucket/", "arn:aws:s3:::audit-bucket/key", True),
        ("AWS::S3::Object", "arn:aws:s3:::audit-bucket/", "arn:aws:s3:::audit-bucket2/key", False),
        ("AWS::S3::Object", "arn:aws:s3:::audit-bucket/images/", "arn:aws:s3:::audit-bucket/images/a.png", True),
        ("AWS::S3::Object", "arn:aws:s3:::audit-bucket/images/", "arn:aws:s3:::audit-bucket/docs/a.png", False),
        ("AWS::S3::Object", "arn:aws:s3:::audit-bucket/Images/", "arn:aws:s3:::audit-bucket/images/a.png", False),
        ("AWS::Lambda::Function", "arn:aws:lambda", FUNCTION + "anything", True),
        ("AWS::Lambda::Function", "arn:aws:lambda", "arn:aws:lambda:us-west-2:444455556666:function:x", True),
        ("AWS::Lambda::Function", FUNCTION + "hello", FUNCTION + "hello", True),
        ("AWS::Lambda::Function", FUNCTION + "hello", FUNCTION + "hello2", False),
        ("AWS::DynamoDB::Table", "arn:aws:dynamodb", TABLE + "orders", True),
        ("AWS::DynamoDB::Table", TABLE + "orders", TABLE + "orders", True),
        ("AWS::DynamoDB::Table", TABLE + "orders", TABLE + "orders-archive", False),
    ],
)
def test_data_resource_values(kind: str, value: str, arn: str, expected: bool) -> None:
    chosen = trail(event_selectors=[{"IncludeManagementEvents": False,
                                     "DataResources": [{"Type": kind, "Values": [value]}]}])
    assert matches(chosen, record("Data", False, "x", "Op", arn, kind)) is expected


def test_data_resource_type_must_match_the_entry() -> None:
    chosen = trail(event_selectors=[{"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}])
    bucket_only = record("Data", False, "s3", "PutObject", "arn:aws:s3:::b", "AWS::S3::Bucket")
    assert not matches(chosen, bucket_only)
    both = record("Data", False, "s3", "PutObject", resources=[
        {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}, {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"}])
    assert matches(chosen, both)
    assert not matches(chosen, record("Data", False, "s3", "PutObject"))  # no resources at all
    assert not matches(chosen, record("Data", False, "s3", "PutObject", resources=[{"type": "AWS::S3::Object"}]))


def test_network_activity_never_matches_basic_selectors() -> None:
    chosen = trail(event_selectors=[{"DataResources": [S3_ALL]}])
    assert not matches(chosen, WORKED_RECORDS[10])


# --- advanced selectors: operators --------------------------------------------------------------


@pytest.mark.parametrize(
    ("operators", "value", "expected"),
    [
        ({"Equals": ["PutObject"]}, "PutObject", True),
        ({"Equals": ["PutObject"]}, "PutObjectAcl", False),
        ({"Equals": ["PutObject"]}, "putobject", False),
        ({"Equals": ["GetObject", "PutObject"]}, "PutObject", True),
        ({"StartsWith": ["Put"]}, "PutObjectAcl", True),
        ({"StartsWith": ["Put"]}, "GetObject", False),
        ({"EndsWith": ["Acl"]}, "PutObjectAcl", True),
        ({"EndsWith": ["Acl"]}, "PutObject", False),
        ({"NotEquals": ["PutObject"]}, "PutObject", False),
        ({"NotEquals": ["PutObject"]}, "PutObjectAcl", True),
        ({"NotStartsWith": ["Put"]}, "PutObject", False),
        ({"NotStartsWith": ["Put"]}, "GetObject", True),
        ({"NotEndsWith": ["Acl"]}, "PutObjectAcl", False),
        ({"NotEndsWith": ["Acl"]}, "PutObject", True),
        ({"Equals": ["Put*"]}, "PutObject", False),  # no wildcards
        ({"Equals": ["Put*"]}, "Put*", True),
        # SELECT operators OR'd
        ({"Equals": ["GetObject"], "StartsWith": ["Put"]}, "PutObject", True),
        ({"Equals": ["GetObject"], "EndsWith": ["Acl"]}, "PutObjectAcl", True),
        ({"Equals": ["GetObject"], "StartsWith": ["Delete"]}, "PutObject", False),
        # DESELECT operators: any hit excludes
        ({"NotEquals": ["GetObject"], "NotStartsWith": ["Put"]}, "PutObject", False),
        ({"NotEquals": ["GetObject"], "NotEndsWith": ["Acl"]}, "PutObjectAcl", False),
        ({"NotEquals": ["GetObject"], "NotEndsWith": ["Acl"]}, "PutObject", True),
        # both kinds must hold
        ({"StartsWith": ["Put"], "NotEndsWith": ["Acl"]}, "PutObject", True),
        ({"StartsWith": ["Put"], "NotEndsWith": ["Acl"]}, "PutObjectAcl", False),
        ({"StartsWith": ["Put"], "NotEquals": ["PutObject"]}, "PutObject", False),
        ({"StartsWith": ["Put"], "NotEquals": ["PutObject"]}, "GetObject", False),
    ],
)
def test_operators(operators: dict[str, list[str]], value: str, expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[data(field("eventName", **operators))])
    assert matches(chosen, record("Data", False, "s3", value, "arn:aws:s3:::b/k")) is expected


@pytest.mark.parametrize(
    ("operators", "expected"),
    [
        ({"Equals": ["x"]}, False),
        ({"StartsWith": ["x"]}, False),
        ({"EndsWith": ["x"]}, False),
        ({"NotEquals": ["x"]}, True),
        ({"NotStartsWith": ["x"]}, True),
        ({"NotEndsWith": ["x"]}, True),
        ({"StartsWith": ["x"], "NotEquals": ["y"]}, False),
    ],
)
def test_absent_values_fail_select_and_pass_deselect(operators: dict[str, list[str]], expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[data(field("eventType", **operators))])
    without = record("Data", False, "s3", "GetObject", "arn:aws:s3:::b/k")
    del without["eventType"]
    assert matches(chosen, without) is expected


# --- advanced selectors: every field ------------------------------------------------------------

IDENTITY = {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/ci"}


@pytest.mark.parametrize(
    ("field_selector", "changes", "expected"),
    [
        (field("readOnly", Equals=["true"]), {"readOnly": True}, True),
        (field("readOnly", Equals=["true"]), {"readOnly": False}, False),
        (field("readOnly", Equals=["false"]), {"readOnly": False}, True),
        (field("readOnly", Equals=["false"]), {"readOnly": None}, False),
        (field("readOnly", Equals=["true", "false"]), {"readOnly": False}, True),
        (field("eventSource", Equals=["s3.amazonaws.com"]), {}, True),
        (field("eventSource", NotEquals=["s3.amazonaws.com"]), {}, False),
        (field("eventName", EndsWith=["Object"]), {}, True),
        (field("eventType", Equals=["AwsApiCall"]), {}, True),
        (field("eventType", Equals=["AwsServiceEvent"]), {}, False),
        (field("sessionCredentialFromConsole", Equals=["true"]), {"sessionCredentialFromConsole": "true"}, True),
        (field("sessionCredentialFromConsole", Equals=["true"]), {}, False),
        (field("sessionCredentialFromConsole", NotEquals=["true"]), {}, True),
        (field("userIdentity.arn", StartsWith=["arn:aws:sts::111122223333:assumed-role/Deployer/"]),
         {"userIdentity": IDENTITY}, True),
        (field("userIdentity.arn", StartsWith=["arn:aws:iam::"]), {"userIdentity": IDENTITY}, False),
        (field("userIdentity.arn", NotStartsWith=["arn:aws:iam::"]), {"userIdentity": {"type": "AWSService"}}, True),
        (field("userIdentity.arn", Equals=["arn:aws:iam::1:user/x"]), {}, False),
        (field("userIdentity.arn", NotEquals=["x"]), {"userIdentity": {"arn": 5}}, True),
        (field("resources.ARN", EndsWith=[".csv"]), {}, True),
        (field("resources.ARN", NotEndsWith=[".csv"]), {}, False),
        (field("resources.ARN", Equals=["arn:aws:s3:::audit-bucket/reports/q1.csv"]), {}, True),
    ],
)
def test_data_fields(field_selector: dict[str, Any], changes: dict[str, Any], expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[data(field_selector)])
    assert matches(chosen, record("Data", True, "s3", "GetObject", REPORT, **changes)) is expected


@pytest.mark.parametrize(
    ("field_selector", "changes", "expected"),
    [
        (field("eventName", Equals=["PutObject"]), {}, True),
        (field("eventName", Equals=["GetObject"]), {}, False),
        (field("errorCode", Equals=["VpceAccessDenied"]), {"errorCode": "VpceAccessDenied"}, True),
        (field("errorCode", Equals=["VpceAccessDenied"]), {}, False),
        (field("vpcEndpointId", StartsWith=["vpce-0a1b"]), {}, True),
        (field("vpcEndpointId", NotEquals=["vpce-0a1b2c3d4e5f67890"]), {}, False),
        (field("userIdentity.arn", EndsWith=["/batch"]),
         {"userIdentity": {"arn": "arn:aws:sts::444455556666:assumed-role/Batch/batch"}}, True),
    ],
)
def test_network_activity_fields(field_selector: dict[str, Any], changes: dict[str, Any], expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[advanced(
        field("eventCategory", Equals=["NetworkActivity"]), field("eventSource", Equals=["s3.amazonaws.com"]),
        field_selector)])
    network = record("NetworkActivity", None, "s3", "PutObject", eventType="AwsVpceEvents",
                     vpcEndpointId="vpce-0a1b2c3d4e5f67890", **changes)
    assert matches(chosen, network) is expected
    assert not matches(chosen, network | {"eventSource": "kms.amazonaws.com"})


@pytest.mark.parametrize(
    ("more", "source", "read_only", "expected"),
    [
        ((), "ec2", True, True),
        ((field("readOnly", Equals=["true"]),), "ec2", True, True),
        ((field("readOnly", Equals=["true"]),), "ec2", False, False),
        ((field("eventSource", NotEquals=["kms.amazonaws.com"]),), "kms", False, False),
        ((field("eventSource", NotEquals=["kms.amazonaws.com"]),), "rdsdata", False, True),
        ((field("eventSource", NotEquals=["kms.amazonaws.com", "rdsdata.amazonaws.com"]),), "rdsdata", False, False),
    ],
)
def test_management_fields(more: tuple[dict[str, Any], ...], source: str, read_only: bool, expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[advanced(field("eventCategory", Equals=["Management"]), *more)])
    assert matches(chosen, record("Management", read_only, source)) is expected
    assert not matches(chosen, record("Data", read_only, source, arn="arn:aws:s3:::b/k"))


@pytest.mark.parametrize(
    ("resource_type", "entry_type", "expected"),
    [
        ("AWS::S3::Object", "AWS::S3::Object", True),
        ("AWS::S3::Object", "AWS::S3::Bucket", False),
        ("AWS::DynamoDB::Stream", "AWS::DynamoDB::Stream", True),
        ("AWS::DynamoDB::Stream", "AWS::DynamoDB::Table", False),
    ],
)
def test_resource_type(resource_type: str, entry_type: str, expected: bool) -> None:
    chosen = trail(advanced_event_selectors=[data(resource_type=resource_type)])
    assert matches(chosen, record("Data", False, "x", "Op", "arn:aws:x:::y/z", entry_type)) is expected


# --- advanced selectors: combining --------------------------------------------------------------


def test_field_selectors_are_anded() -> None:
    chosen = trail(advanced_event_selectors=[data(field("eventName", Equals=["PutObject"]),
                                                  field("readOnly", Equals=["false"]))])
    assert matches(chosen, record("Data", False, "s3", "PutObject", REPORT))
    assert not matches(chosen, record("Data", True, "s3", "PutObject", REPORT))
    assert not matches(chosen, record("Data", False, "s3", "DeleteObject", REPORT))


def test_selectors_are_ored() -> None:
    chosen = trail(advanced_event_selectors=[
        data(field("eventName", Equals=["PutObject"])),
        data(field("eventName", Equals=["GetObject"])),
        data(resource_type="AWS::Lambda::Function"),
    ])
    assert matches(chosen, record("Data", False, "s3", "PutObject", REPORT))
    assert matches(chosen, record("Data", True, "s3", "GetObject", REPORT))
    assert matches(chosen, record("Data", False, "lambda", "Invoke", FUNCTION + "f", "AWS::Lambda::Function"))
    assert not matches(chosen, record("Data", False, "s3", "DeleteObject", REPORT))
    assert not matches(chosen, record())


def test_resource_fields_must_hold_for_one_entry() -> None:
    chosen = trail(advanced_event_selectors=[data(field("resources.ARN", StartsWith=["arn:aws:s3:::audit-bucket/"]))])
    split = record("Data", False, "s3", "PutObject", resources=[
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::media/x"},
        {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::audit-bucket/"}])
    assert not matches(chosen, split)
    joined = record("Data", False, "s3", "PutObject", resources=[
        {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::audit-bucket"},
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::audit-bucket/x"}])
    assert matches(chosen, joined)


def test_deselected_resource_entry_does_not_veto_another() -> None:
    outside = field("resources.ARN", NotStartsWith=["arn:aws:s3:::audit-bucket/"])
    chosen = trail(advanced_event_selectors=[data(outside)])
    two_objects = record("Data", False, "s3", "CopyObject", resources=[
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::audit-bucket/a"},
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::media/b"}])
    assert matches(chosen, two_objects)
    assert not matches(chosen, record("Data", False, "s3", "PutObject", "arn:aws:s3:::audit-bucket/a"))


def test_resource_entry_without_arn() -> None:
    selected = trail(advanced_event_selectors=[data(field("resources.ARN", StartsWith=["arn:aws:s3:::"]))])
    deselected = trail(advanced_event_selectors=[data(field("resources.ARN", NotStartsWith=["arn:aws:s3:::x/"]))])
    no_arn = record("Data", False, "s3", "PutObject", resources=[{"type": "AWS::S3::Object"}])
    assert not matches(selected, no_arn)
    assert matches(deselected, no_arn)


# --- the processor's API ------------------------------------------------------------------------


def test_select_trails_keeps_order() -> None:
    matchers = [TrailMatcher(t) for t in WORKED_TRAILS.values()]
    assert [t.name for t in select_trails(matchers, WORKED_RECORDS[4])] == ["trail-0", "trail-3"]
    assert select_trails([], WORKED_RECORDS[4]) == []


def test_selection_follows_updates_and_tombstones() -> None:
    first = trail("first")
    second = trail("second", event_selectors=[{"ReadWriteType": "ReadOnly"}])
    selection = Selection([first, second])
    write = record(read_only=False)
    assert selection.select(write) == [first]
    second_writes = trail("second", event_selectors=[{"ReadWriteType": "WriteOnly"}])
    selection.update(second_writes)
    assert selection.select(write) == [first, second_writes]
    assert selection.trails() == [first, second_writes]
    selection.remove(first.arn)
    assert selection.select(write) == [second_writes]
    selection.remove(first.arn)  # a repeated tombstone
    selection.update(trail("second", event_selectors=[{"ReadWriteType": "WriteOnly"}], logging=False))
    assert selection.select(write) == []
    assert len(selection.trails()) == 1


def test_selection_keys_by_arn_not_name() -> None:
    here, there = trail("audit"), trail("audit", home_region="us-east-1")
    selection = Selection([here, there])
    assert selection.trails() == [here, there]
    assert selection.select(record()) == [here]
    assert selection.select(record(awsRegion="us-east-1")) == [there]
