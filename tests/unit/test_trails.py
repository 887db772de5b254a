"""The trail model, its topic document, and CloudTrail's rules for one trail and for a set of trails."""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.session
import pytest

from kafkatrail.trails import members
from kafkatrail.trails.errors import TrailError
from kafkatrail.trails.model import Trail
from kafkatrail.trails.validation import check_can_add

ACCOUNT = "111122223333"
LAMBDA = "arn:aws:lambda:eu-west-1:111122223333:function:"
FULLWIDTH = {ord(d): 0xFF10 + int(d) for d in "0123456789"}  # "1" -> "\uff11": a Unicode digit, not ASCII


def trail(**changes: Any) -> Trail:
    values: dict[str, Any] = {
        "name": "audit",
        "home_region": "eu-west-1",
        "account_id": ACCOUNT,
        "s3_bucket_name": "audit-bucket",
    }
    values.update(changes)
    return Trail(**values)


def rejected(code: str, fragment: str, **changes: Any) -> TrailError:
    with pytest.raises(TrailError) as caught:
        trail(**changes)
    assert caught.value.code == code, caught.value
    assert fragment in caught.value.message, caught.value.message
    name = changes.get("name", "audit")
    label = f"trail '{name}'" if isinstance(name, str) else "trail (no Name)"
    assert caught.value.message.startswith(f"{label}: "), caught.value.message
    return caught.value


def field(name: str, **operators: list[str]) -> dict[str, Any]:
    return {"Field": name, **operators}


def advanced(*field_selectors: dict[str, Any]) -> dict[str, Any]:
    return {"FieldSelectors": list(field_selectors)}


def data_selector(*more: dict[str, Any], resource_type: str = "AWS::S3::Object") -> dict[str, Any]:
    return advanced(field("eventCategory", Equals=["Data"]), field("resources.type", Equals=[resource_type]), *more)


# --- the model and its document -----------------------------------------------------------------


def test_defaults_and_arn() -> None:
    t = trail()
    assert t.arn == "arn:aws:cloudtrail:eu-west-1:111122223333:trail/audit"
    assert (t.partition, t.include_global_service_events, t.is_multi_region_trail) == ("aws", True, False)
    assert (t.log_file_validation_enabled, t.is_organization_trail, t.logging) == (False, False, True)
    assert (t.event_selectors, t.advanced_event_selectors, t.insight_selectors) == (None, None, ())
    assert (t.s3_key_prefix, t.sns_topic_name, t.kms_key_id) == (None, None, None)


def test_partition_comes_from_the_home_region_in_documents() -> None:
    document = trail().to_document() | {"HomeRegion": "cn-north-1"}
    china = Trail.from_document(document)
    assert china.partition == "aws-cn"
    assert china.arn == "arn:aws-cn:cloudtrail:cn-north-1:111122223333:trail/audit"


def test_partition_must_match_the_home_region() -> None:
    rejected("InvalidParameterException", "Partition: cn-north-1 is in partition aws-cn", home_region="cn-north-1")


def test_lists_become_tuples_and_the_trail_is_frozen() -> None:
    t = trail(event_selectors=[{"ReadWriteType": "All"}], tags=[{"Key": "team", "Value": "sec"}])
    assert isinstance(t.event_selectors, tuple)
    assert isinstance(t.tags, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.logging = False  # type: ignore[misc]


def test_trails_hash_by_arn_despite_json_selectors() -> None:
    basic = trail(event_selectors=[{"ReadWriteType": "All"}])
    same = trail(event_selectors=[{"ReadWriteType": "All"}])
    changed = trail(event_selectors=[{"ReadWriteType": "ReadOnly"}])
    assert len({basic, same, changed}) == 2
    assert hash(basic) == hash(changed) and basic != changed


def test_document_members_and_omissions() -> None:
    t = trail(
        s3_key_prefix="logs",
        log_file_validation_enabled=True,
        logging=False,
        event_selectors=[{"ReadWriteType": "WriteOnly"}],
    )
    assert t.to_document() == {
        "Name": "audit",
        "HomeRegion": "eu-west-1",
        "AccountId": ACCOUNT,
        "IsLogging": False,
        "S3BucketName": "audit-bucket",
        "S3KeyPrefix": "logs",
        "IncludeGlobalServiceEvents": True,
        "IsMultiRegionTrail": False,
        "LogFileValidationEnabled": True,
        "IsOrganizationTrail": False,
        "TagsList": [],
        "RecursiveLogging": True,
        "EventSelectors": [{"ReadWriteType": "WriteOnly"}],
        "InsightSelectors": [],
    }


FULL = {
    "name": "org.audit_trail-1",
    "home_region": "us-east-1",
    "s3_key_prefix": "cloudtrail/org",
    "sns_topic_name": "arn:aws:sns:us-east-1:111122223333:trail-files",
    "include_global_service_events": True,
    "is_multi_region_trail": True,
    "log_file_validation_enabled": True,
    "cloud_watch_logs_log_group_arn": "arn:aws:logs:us-east-1:111122223333:log-group:CloudTrail/org:*",
    "cloud_watch_logs_role_arn": "arn:aws:iam::111122223333:role/CloudTrailToLogs",
    "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666",
    "is_organization_trail": True,
    "logging": False,
    "tags": [{"Key": "team", "Value": "security"}, {"Key": "empty"}],
    "recursive_logging": False,
    "insight_selectors": [{"InsightType": "ApiCallRateInsight"}, {"InsightType": "ApiErrorRateInsight"}],
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        FULL,
        {"home_region": "us-gov-west-1", "partition": "aws-us-gov"},
        {"event_selectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False,
                              "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::b/x/"]}]}]},
        {"advanced_event_selectors": [data_selector(field("eventName", Equals=["PutObject"])),
                                      advanced(field("eventCategory", Equals=["Management"]))],
         "insight_selectors": [{"InsightType": "ApiErrorRateInsight", "EventCategories": ["Management", "Data"]}]},
    ],
    ids=["defaults", "every-member", "gov-partition", "basic", "advanced"],
)
def test_document_round_trip_is_lossless(changes: dict[str, Any]) -> None:
    original = trail(**changes)
    document = original.to_document()
    copy = Trail.from_document(document)
    assert copy == original
    assert copy.to_document() == document
    assert copy.arn == original.arn


def test_document_is_a_copy() -> None:
    original = trail(event_selectors=[{"ReadWriteType": "All", "ExcludeManagementEventSources": []}])
    document = original.to_document()
    document["EventSelectors"][0]["ReadWriteType"] = "ReadOnly"
    assert original.event_selectors == ({"ReadWriteType": "All", "ExcludeManagementEventSources": []},)


@pytest.mark.parametrize(
    ("document", "code", "fragment"),
    [
        ({"TrailARN": "arn:aws:cloudtrail:eu-west-1:111122223333:trail/audit"}, "InvalidParameterException",
         "TrailARN: unknown member"),
        ({"EnableLogFileValidation": True}, "InvalidParameterException", "EnableLogFileValidation: unknown member"),
        ({"HomeRegion": None}, "InvalidHomeRegionException", "HomeRegion: is required"),
        ({"IsLogging": "yes"}, "InvalidParameterException", "IsLogging: must be a boolean"),
    ],
)
def test_bad_documents_are_refused(document: dict[str, Any], code: str, fragment: str) -> None:
    with pytest.raises(TrailError) as caught:
        Trail.from_document(trail().to_document() | document)
    assert (caught.value.code, fragment in caught.value.message) == (code, True), caught.value


def test_document_must_be_a_mapping() -> None:
    with pytest.raises(TrailError, match="must be a mapping of trail members"):
        Trail.from_document(["Name", "audit"])  # type: ignore[arg-type]


def test_member_tables_follow_botocore() -> None:
    model = botocore.session.get_session().get_service_model("cloudtrail")
    assert set(members.CREATE_TRAIL) == set(model.operation_model("CreateTrail").input_shape.members)
    selector_inputs = set(model.operation_model("PutEventSelectors").input_shape.members) | set(
        model.operation_model("PutInsightSelectors").input_shape.members)
    assert set(members.SELECTORS) <= selector_inputs
    trail_object = set(model.shape_for("Trail").members)
    kafkatrail_members = {"AccountId", "OrganizationId", "IsLogging", "TagsList", "EventSelectors",
                          "AdvancedEventSelectors", "InsightSelectors", "StartLoggingTime", "StopLoggingTime"}
    document_aws_members = set(members.DOCUMENT) - kafkatrail_members
    assert document_aws_members <= trail_object


def test_error_string_carries_the_code() -> None:
    error = TrailError("InvalidTrailNameException", "trail 'x': Name: bad")
    assert str(error) == "InvalidTrailNameException: trail 'x': Name: bad"
    assert error.within("f.yaml").message == "f.yaml: trail 'x': Name: bad"
    assert error.within("f.yaml").code == "InvalidTrailNameException"


# --- trail members ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "a" * 128, "my.trail_1-x", "A1b", "1.2.3.4a", "ab9"])
def test_valid_trail_names(name: str) -> None:
    assert trail(name=name).name == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "3 to 128 characters"),
        ("a" * 129, "3 to 128 characters"),
        ("my-_trail", "no two of '._-' in a row"),
        ("my--trail", "no two of '._-' in a row"),
        ("-trail", "start and end with a letter or digit"),
        ("trail.", "start and end with a letter or digit"),
        ("my trail", "ASCII letters, digits"),
        ("träil", "ASCII letters, digits"),
        ("192.168.5.4", "must not be formatted as an IP address"),
    ],
)
def test_invalid_trail_names(name: str, fragment: str) -> None:
    error = rejected("InvalidTrailNameException", fragment, name=name)
    assert f"trail '{name}': Name: " in error.message


def test_trail_name_is_required_and_a_string() -> None:
    error = rejected("InvalidTrailNameException", "Name: is required", name=None)
    assert error.message.startswith("trail (no Name): ")
    rejected("InvalidTrailNameException", "Name: must be a string (got 5)", name=5)


@pytest.mark.parametrize("bucket", ["abc", "a" * 63, "my.audit-bucket-2"])
def test_valid_bucket_names(bucket: str) -> None:
    assert trail(s3_bucket_name=bucket).s3_bucket_name == bucket


@pytest.mark.parametrize("bucket", ["ab", "a" * 64, "Audit-Bucket", "audit_bucket", "audit..bucket", "-audit",
                                    "192.168.1.1"])
def test_invalid_bucket_names(bucket: str) -> None:
    rejected("InvalidS3BucketNameException", "S3BucketName: must be 3 to 63", s3_bucket_name=bucket)


def test_bucket_is_required() -> None:
    rejected("InvalidS3BucketNameException", "S3BucketName: is required", s3_bucket_name=None)


def test_s3_prefix_limit() -> None:
    assert trail(s3_key_prefix="p" * 200).s3_key_prefix == "p" * 200
    rejected("InvalidS3PrefixException", "S3KeyPrefix: must be at most 200 characters long (got 201)",
             s3_key_prefix="p" * 201)


@pytest.mark.parametrize("prefix", ["logs", "team/audit", "team/audit/", "a.b/c-d_e", "ünïcode/ok"])
def test_s3_prefixes_that_make_plain_paths(prefix: str) -> None:
    assert trail(s3_key_prefix=prefix).s3_key_prefix == prefix


S3_PREFIX_CASES = {
    "a newline": ("pre\nfix", "must not hold control characters"),
    "a NUL": ("pre\x00fix", "must not hold control characters"),
    "DEL": ("pre\x7ffix", "must not hold control characters"),
    "a leading slash": ("/logs", "must not start with '/'"),
    "a parent segment": ("logs/../other", "must not hold a '.' or '..' segment"),
    "only a parent segment": ("..", "must not hold a '.' or '..' segment"),
    "a dot segment": ("./logs", "must not hold a '.' or '..' segment"),
    "an empty segment": ("logs//audit", "must not hold an empty segment"),
    "only a slash": ("/", "must not start with '/'"),
}


@pytest.mark.parametrize(("prefix", "rule"), S3_PREFIX_CASES.values(), ids=S3_PREFIX_CASES.keys())
def test_s3_prefixes_that_would_misplace_files_are_refused(prefix: str, rule: str) -> None:
    rejected("InvalidS3PrefixException", f"S3KeyPrefix: {rule}", s3_key_prefix=prefix)


def test_sns_topic_name_limit() -> None:
    assert trail(sns_topic_name="t" * 256).sns_topic_name == "t" * 256
    rejected("InvalidSnsTopicNameException", "SnsTopicName: must be at most 256", sns_topic_name="t" * 257)


@pytest.mark.parametrize(
    ("changes", "code", "fragment"),
    [
        ({"home_region": None}, "InvalidHomeRegionException", "HomeRegion: is required"),
        ({"home_region": "moon-base-1"}, "InvalidHomeRegionException", "HomeRegion: must be a region"),
        ({"home_region": 7}, "InvalidHomeRegionException", "HomeRegion: must be a region"),
        ({"account_id": "1234"}, "InvalidParameterException", "AccountId: must be a 12-digit account id"),
        ({"account_id": ACCOUNT.translate(FULLWIDTH)}, "InvalidParameterException", "AccountId: must be a 12-digit"),
        ({"account_id": None}, "InvalidParameterException", "AccountId: must be a 12-digit"),
        ({"organization_id": "o-a1b2c3d4e5"}, "InvalidParameterCombinationException",
         "OrganizationId: is only for an organization trail"),
        ({"is_organization_trail": True, "organization_id": "o-short"}, "InvalidParameterException",
         "OrganizationId: must be an organization id"),
        ({"logging": "yes"}, "InvalidParameterException", "IsLogging: must be a boolean"),
        ({"is_multi_region_trail": "yes"}, "InvalidParameterException",
         "IsMultiRegionTrail: must be a boolean (got 'yes')"),
        ({"include_global_service_events": 1}, "InvalidParameterException", "IncludeGlobalServiceEvents: must be"),
        ({"log_file_validation_enabled": "true"}, "InvalidParameterException", "EnableLogFileValidation: must be"),
        ({"kms_key_id": 5}, "InvalidKmsKeyIdException", "KmsKeyId: must be a string"),
        ({"s3_key_prefix": ["logs"]}, "InvalidS3PrefixException", "S3KeyPrefix: must be a string"),
    ],
)
def test_member_types_and_placement(changes: dict[str, Any], code: str, fragment: str) -> None:
    rejected(code, fragment, **changes)


def test_multi_region_needs_global_service_events() -> None:
    rejected("InvalidParameterCombinationException", "Multi-Region trail must include global service events.",
             is_multi_region_trail=True, include_global_service_events=False)
    assert trail(include_global_service_events=False).include_global_service_events is False


GROUP = "arn:aws:logs:eu-west-1:111122223333:log-group:CloudTrail/audit:*"
ROLE = "arn:aws:iam::111122223333:role/service-role/CloudTrailToLogs"


@pytest.mark.parametrize(
    ("group", "role", "code", "fragment"),
    [
        (None, ROLE, "InvalidParameterCombinationException", "CloudWatchLogsRoleArn: needs CloudWatchLogsLogGroupArn"),
        (GROUP, None, "InvalidParameterCombinationException", "CloudWatchLogsLogGroupArn: needs CloudWatchLogsRoleArn"),
        ("CloudTrail/audit", ROLE, "InvalidCloudWatchLogsLogGroupArnException", "CloudWatchLogsLogGroupArn: must be"),
        ("arn:aws:logs:eu-west-1:1111:log-group:x:*", ROLE, "InvalidCloudWatchLogsLogGroupArnException", "must be"),
        (GROUP, "arn:aws:iam::111122223333:user/bob", "InvalidCloudWatchLogsRoleArnException",
         "CloudWatchLogsRoleArn: must be"),
    ],
)
def test_cloudwatch_logs_members(group: str | None, role: str | None, code: str, fragment: str) -> None:
    rejected(code, fragment, cloud_watch_logs_log_group_arn=group, cloud_watch_logs_role_arn=role)


@pytest.mark.parametrize("group", [GROUP, GROUP.removesuffix(":*")])
def test_cloudwatch_logs_accepted(group: str) -> None:
    t = trail(cloud_watch_logs_log_group_arn=group, cloud_watch_logs_role_arn=ROLE)
    assert t.cloud_watch_logs_log_group_arn == group


def tags(count: int) -> list[dict[str, str]]:
    return [{"Key": f"k{i}", "Value": "v"} for i in range(count)]


@pytest.mark.parametrize(
    ("tag_list", "code", "fragment"),
    [
        (tags(51), "TagsLimitExceededException", "TagsList: a trail takes at most 50 tags (got 51)"),
        (tags(201), "InvalidTagParameterException", "TagsList: must have at most 200 items (got 201)"),
        ([{"Key": "a"}, {"Key": "a", "Value": "b"}], "InvalidTagParameterException",
         "TagsList[1].Key: tag key 'a' appears twice"),
        ([{"Key": ""}], "InvalidTagParameterException", "TagsList[0].Key: length must be at least 1 (got 0)"),
        ([{"Key": "k" * 129}], "InvalidTagParameterException", "TagsList[0].Key: must be at most 128"),
        ([{"Key": "k", "Value": "v" * 257}], "InvalidTagParameterException", "TagsList[0].Value: must be at most 256"),
        ([{"Value": "v"}], "InvalidTagParameterException", "TagsList[0].Key: is required"),
        ([{"Key": "k", "Colour": "red"}], "InvalidTagParameterException", "TagsList[0].Colour: unknown member"),
    ],
)
def test_tag_rules(tag_list: list[dict[str, str]], code: str, fragment: str) -> None:
    rejected(code, fragment, tags=tag_list)


def test_tag_limits_at_the_boundary() -> None:
    assert len(trail(tags=tags(50)).tags) == 50
    assert trail(tags=[{"Key": "k" * 128, "Value": "v" * 256}]).tags[0]["Key"] == "k" * 128


# --- basic event selectors ----------------------------------------------------------------------


def s3(*values: str) -> dict[str, Any]:
    return {"Type": "AWS::S3::Object", "Values": list(values)}


def selector(**members_: Any) -> dict[str, Any]:
    return {"ReadWriteType": "All", **members_}


@pytest.mark.parametrize("count", [1, 5])
def test_basic_selector_count_within_limits(count: int) -> None:
    assert len(trail(event_selectors=[selector()] * count).event_selectors) == count


@pytest.mark.parametrize("count", [0, 6])
def test_basic_selector_count_outside_limits(count: int) -> None:
    rejected("InvalidEventSelectorsException", f"EventSelectors: a trail takes 1 to 5 event selectors (got {count})",
             event_selectors=[selector()] * count)


@pytest.mark.parametrize(
    ("basic", "fragment"),
    [
        ({"ReadWriteType": "Sometimes"}, "EventSelectors[0].ReadWriteType: must be one of ReadOnly, WriteOnly, All"),
        ({"IncludeManagementEvents": "true"}, "EventSelectors[0].IncludeManagementEvents: must be a boolean"),
        ({"Colour": "red"}, "EventSelectors[0].Colour: unknown member"),
        ({"DataResources": [{"Type": "AWS::S3::Bucket", "Values": ["arn:aws:s3:::b"]}]},
         "EventSelectors[0].DataResources[0].Type: must be one of AWS::S3::Object, AWS::Lambda::Function, "
         "AWS::DynamoDB::Table"),
        ({"DataResources": [{"Type": "AWS::DynamoDB::Stream", "Values": ["arn:aws:dynamodb"]}]},
         "other types need advanced event selectors"),
        ({"DataResources": [{"Values": ["arn:aws:s3"]}]}, "EventSelectors[0].DataResources[0].Type: is required"),
        ({"DataResources": [{"Type": "AWS::S3::Object"}]}, "DataResources[0].Values: needs at least one value"),
        ({"DataResources": [s3()]}, "DataResources[0].Values: needs at least one value"),
        ({"DataResources": [s3("arn:aws:s3:::audit-bucket")]},
         "DataResources[0].Values[0]: 'arn:aws:s3:::audit-bucket' is not a AWS::S3::Object value"),
        ({"DataResources": [s3("arn:aws:s3:::b/", "audit-bucket/")]}, "DataResources[0].Values[1]"),
        ({"DataResources": [s3("arn:aws-cn:s3:::b/")]}, "is not a AWS::S3::Object value"),
        ({"DataResources": [s3(5)]}, "DataResources[0].Values[0]: must be a string"),
        ({"DataResources": [{"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda:eu-west-1:1:function:f"]}]},
         "is not a AWS::Lambda::Function value"),
        ({"DataResources": [{"Type": "AWS::DynamoDB::Table", "Values": ["arn:aws:dynamodb:eu-west-1:1:table/t"]}]},
         "is not a AWS::DynamoDB::Table value"),
        ({"ExcludeManagementEventSources": ["s3.amazonaws.com"]},
         "EventSelectors[0].ExcludeManagementEventSources[0]: only kms.amazonaws.com and rdsdata.amazonaws.com"),
        ({"IncludeManagementEvents": False, "ExcludeManagementEventSources": ["kms.amazonaws.com"]},
         "ExcludeManagementEventSources: excluding event sources needs IncludeManagementEvents true"),
    ],
)
def test_invalid_basic_selectors(basic: dict[str, Any], fragment: str) -> None:
    rejected("InvalidEventSelectorsException", fragment, event_selectors=[basic])


@pytest.mark.parametrize(
    "basic",
    [
        {},
        {"ReadWriteType": "ReadOnly", "IncludeManagementEvents": False},
        {"ExcludeManagementEventSources": []},
        {"ExcludeManagementEventSources": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]},
        {"DataResources": [s3("arn:aws:s3", "arn:aws:s3:::", "arn:aws:s3:::b/", "arn:aws:s3:::b/logs/2024")]},
        {"DataResources": [{"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda", LAMBDA + "hello"]}]},
        {"DataResources": [{"Type": "AWS::DynamoDB::Table",
                            "Values": ["arn:aws:dynamodb", "arn:aws:dynamodb:eu-west-1:111122223333:table/t"]}]},
    ],
)
def test_valid_basic_selectors(basic: dict[str, Any]) -> None:
    assert trail(event_selectors=[basic]).event_selectors == (basic,)


def buckets(first: int, count: int) -> list[str]:
    return [f"arn:aws:s3:::bucket-{i}/" for i in range(first, first + count)]


def test_data_resource_limit_counts_across_selectors() -> None:
    at_limit = [selector(DataResources=[s3(*buckets(0, 125))]), selector(DataResources=[s3(*buckets(125, 125))])]
    assert len(trail(event_selectors=at_limit).event_selectors) == 2
    over = [selector(DataResources=[s3(*buckets(0, 125))]), selector(DataResources=[s3(*buckets(125, 126))])]
    rejected("InvalidEventSelectorsException", "EventSelectors: at most 250 data resources per trail (got 251)",
             event_selectors=over)


def test_all_resources_forms_do_not_count_toward_the_limit() -> None:
    values = [*buckets(0, 250), "arn:aws:s3", "arn:aws:s3:::"]
    lambdas = {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}
    assert trail(event_selectors=[selector(DataResources=[s3(*values), lambdas])]).event_selectors


# --- advanced event selectors -------------------------------------------------------------------

ANY = ("Equals", "StartsWith", "EndsWith", "NotEquals", "NotStartsWith", "NotEndsWith")
# The fields and operators of docs/cloudtrail.md §6.3, restated here independently of trails.selector_rules.
ALLOWED = {
    "Management": {"readOnly": ("Equals",), "eventSource": ("NotEquals",)},
    "Data": {"readOnly": ("Equals",), "eventSource": ANY, "eventName": ANY, "resources.ARN": ANY, "eventType": ANY,
             "sessionCredentialFromConsole": ("Equals", "NotEquals"), "userIdentity.arn": ANY},
    "NetworkActivity": {"eventName": ANY, "userIdentity.arn": ANY, "errorCode": ("Equals",), "vpcEndpointId": ANY},
}
VALUES = {
    "readOnly": "true",
    "eventSource": "kms.amazonaws.com",
    "resources.ARN": "arn:aws:s3:::audit-bucket/x",
    "errorCode": "VpceAccessDenied",
}


def selector_for(category: str, *more: dict[str, Any]) -> dict[str, Any]:
    if category == "Data":
        return data_selector(*more)
    if category == "NetworkActivity":
        return advanced(field("eventCategory", Equals=["NetworkActivity"]),
                        field("eventSource", Equals=["s3.amazonaws.com"]), *more)
    return advanced(field("eventCategory", Equals=["Management"]), *more)


ALLOWED_CASES = [(c, f, op) for c, fields in ALLOWED.items() for f, ops in fields.items() for op in ops]
FORBIDDEN_CASES = [(c, f, op, ops) for c, fields in ALLOWED.items() for f, ops in fields.items()
                   for op in ANY if op not in ops]


@pytest.mark.parametrize(("category", "name", "operator"), ALLOWED_CASES)
def test_every_allowed_field_and_operator(category: str, name: str, operator: str) -> None:
    chosen = selector_for(category, field(name, **{operator: [VALUES.get(name, "value")]}))
    assert trail(advanced_event_selectors=[chosen]).advanced_event_selectors == (chosen,)


@pytest.mark.parametrize(("category", "name", "operator", "allowed"), FORBIDDEN_CASES)
def test_every_forbidden_operator(category: str, name: str, operator: str, allowed: tuple[str, ...]) -> None:
    chosen = selector_for(category, field(name, **{operator: [VALUES.get(name, "value")]}))
    position = len(chosen["FieldSelectors"]) - 1
    rejected("InvalidEventSelectorsException",
             f"AdvancedEventSelectors[0].FieldSelectors[{position}]: operator {operator} is not allowed for field "
             f"{name} ({' or '.join(allowed)} only)", advanced_event_selectors=[chosen])


@pytest.mark.parametrize(
    ("category", "name", "operator"),
    [
        ("Data", "resources.type", "StartsWith"),
        ("Data", "resources.type", "NotEquals"),
        ("Management", "eventCategory", "NotEquals"),
        ("NetworkActivity", "eventSource", "StartsWith"),
        ("NetworkActivity", "eventSource", "NotEquals"),
    ],
)
def test_forbidden_operators_on_required_fields(category: str, name: str, operator: str) -> None:
    chosen = selector_for(category)
    target = next(fs for fs in chosen["FieldSelectors"] if fs["Field"] == name)
    target[operator] = ["AWS::S3::Object"]
    rejected("InvalidEventSelectorsException", f"operator {operator} is not allowed for field {name} (Equals only)",
             advanced_event_selectors=[chosen])


@pytest.mark.parametrize(
    ("category", "name"),
    [
        ("Management", "eventName"), ("Management", "resources.ARN"), ("Management", "resources.type"),
        ("Management", "eventType"), ("Management", "userIdentity.arn"), ("Management", "errorCode"),
        ("Management", "sessionCredentialFromConsole"), ("Management", "vpcEndpointId"),
        ("Data", "errorCode"), ("Data", "vpcEndpointId"),
        ("NetworkActivity", "readOnly"), ("NetworkActivity", "resources.ARN"), ("NetworkActivity", "eventType"),
        ("NetworkActivity", "sessionCredentialFromConsole"),
    ],
)
def test_fields_not_allowed_in_a_category(category: str, name: str) -> None:
    rejected("InvalidEventSelectorsException", f"field {name} is not allowed in {category} selectors of a trail",
             advanced_event_selectors=[selector_for(category, field(name, Equals=["x"]))])


@pytest.mark.parametrize(
    ("chosen", "fragment"),
    [
        (advanced(field("eventName", Equals=["PutObject"])),
         "AdvancedEventSelectors[0].FieldSelectors: needs an eventCategory field selector"),
        (advanced(field("eventCategory", Equals=["Management"]), field("eventCategory", Equals=["Management"])),
         "FieldSelectors[1]: eventCategory may appear only once per selector"),
        (advanced(field("eventCategory", Equals=["Management", "Data"])),
         "FieldSelectors[0].Equals: eventCategory takes exactly one value (got 2)"),
        (advanced(field("eventCategory", StartsWith=["Manage"])),
         "operator StartsWith is not allowed for field eventCategory (Equals only)"),
        (advanced(field("eventCategory", Equals=["Insight"])), "eventCategory Insight is for event data stores"),
        (advanced(field("eventCategory", Equals=["ConfigurationItem"])), "is for event data stores, not trails"),
        (advanced(field("eventCategory", Equals=["management"])),
         "eventCategory must be one of Management, Data, NetworkActivity (got 'management')"),
        (selector_for("Management", field("colour", Equals=["red"])), "unknown field 'colour' (trails allow: "),
        (selector_for("Management", field("event-source", Equals=["x"])),
         "FieldSelectors[1].Field: must match the pattern"),
        (selector_for("Management", field("readOnly")), "field readOnly needs at least one operator (Equals)"),
        (selector_for("Management", field("readOnly", Equals=[]))
         , "FieldSelectors[1].Equals: length must be at least 1 (got 0)"),
        (selector_for("Management", field("readOnly", Equals=["yes"])),
         "FieldSelectors[1].Equals[0]: readOnly takes 'true' or 'false' (got 'yes')"),
        (selector_for("Management", field("eventSource", NotEquals=["s3.amazonaws.com"])),
         "FieldSelectors[1].NotEquals[0]: management selectors can only exclude kms.amazonaws.com and "
         "rdsdata.amazonaws.com"),
        (selector_for("NetworkActivity", field("errorCode", Equals=["AccessDenied"])),
         "errorCode takes only VpceAccessDenied (got 'AccessDenied')"),
        (selector_for("Data", field("eventName", Equals=[""])), "Equals[0]: length must be at least 1 (got 0)"),
        (selector_for("Data", field("eventName", Equals=["x" * 2049])), "Equals[0]: must be at most 2048"),
        (selector_for("Data", field("eventName", Equals=["Put\nObject"])), "Equals[0]: must match the pattern .+"),
        (selector_for("Data", field("eventName", Equals="PutObject")), "Equals: must be a list"),
        (selector_for("Data", field("resources.ARN", Equals=["audit-bucket/x"])),
         "Equals[0]: Equals on resources.ARN takes complete ARNs (got 'audit-bucket/x')"),
        (selector_for("Data", field("resources.ARN", NotEquals=["arn:aws:s3"])),
         "NotEquals on resources.ARN takes complete ARNs"),
        (advanced(field("eventCategory", Equals=["Data"])),
         "a Data selector needs exactly one resources.type field (got 0)"),
        (data_selector(field("resources.type", Equals=["AWS::Lambda::Function"])),
         "a Data selector needs exactly one resources.type field (got 2)"),
        (advanced(field("eventCategory", Equals=["Data"]),
                  field("resources.type", Equals=["AWS::S3::Object", "AWS::Lambda::Function"])),
         "resources.type takes exactly one value; use one selector per resource type"),
        (data_selector(resource_type="S3Object"), "resources.type takes a type like AWS::S3::Object (got 'S3Object')"),
        (advanced(field("eventCategory", Equals=["NetworkActivity"])),
         "a NetworkActivity selector needs exactly one eventSource with one Equals value"),
        (advanced(field("eventCategory", Equals=["NetworkActivity"]),
                  field("eventSource", Equals=["s3.amazonaws.com", "kms.amazonaws.com"])),
         "use one selector per event source"),
        ({"Name": "n" * 1001, **selector_for("Management")}, "AdvancedEventSelectors[0].Name: must be at most 1000"),
        ({"FieldSelectors": []}, "AdvancedEventSelectors[0].FieldSelectors: length must be at least 1 (got 0)"),
        ({"Name": "no fields"}, "AdvancedEventSelectors[0].FieldSelectors: is required"),
    ],
)
def test_invalid_advanced_selectors(chosen: dict[str, Any], fragment: str) -> None:
    rejected("InvalidEventSelectorsException", fragment, advanced_event_selectors=[chosen])


@pytest.mark.parametrize(
    "chosen",
    [
        {"Name": "n" * 1000, **selector_for("Management")},
        selector_for("Management", field("readOnly", Equals=["true", "false"])),
        selector_for("Management", field("eventSource", NotEquals=["kms.amazonaws.com", "rdsdata.amazonaws.com"])),
        data_selector(field("eventName", Equals=["x" * 2048])),
        data_selector(resource_type="AWS::ManagedBlockchain::Node"),
        data_selector(field("resources.ARN", StartsWith=["audit-bucket"], EndsWith=[".csv"])),
        data_selector(field("eventName", Equals=["*"])),
        selector_for("NetworkActivity", field("errorCode", Equals=["VpceAccessDenied"])),
    ],
)
def test_valid_advanced_selectors(chosen: dict[str, Any]) -> None:
    assert trail(advanced_event_selectors=[chosen]).advanced_event_selectors == (chosen,)


def test_advanced_selectors_need_at_least_one() -> None:
    rejected("InvalidEventSelectorsException", "AdvancedEventSelectors: needs at least one advanced event selector",
             advanced_event_selectors=[])


def test_advanced_value_limit() -> None:
    # eventCategory and resources.type hold one value each: 2 + 498 = 500.
    names = [f"Op{i}" for i in range(499)]
    at_limit = [data_selector(field("eventName", Equals=names[:-1]))]
    assert trail(advanced_event_selectors=at_limit)
    over = [data_selector(field("eventName", Equals=names[:-100])),
            data_selector(field("eventName", NotEquals=names[:98]))]
    rejected("InvalidEventSelectorsException", "AdvancedEventSelectors: at most 500 values per trail (got 501)",
             advanced_event_selectors=over)


def test_advanced_resource_arn_limit() -> None:
    arns = [f"arn:aws:s3:::bucket-{i}/" for i in range(251)]
    at_limit = [data_selector(field("resources.ARN", StartsWith=arns[:200], NotStartsWith=arns[200:250]))]
    assert trail(advanced_event_selectors=at_limit)
    over = [data_selector(field("resources.ARN", StartsWith=arns[:200])),
            data_selector(field("resources.ARN", StartsWith=arns[200:]))]
    rejected("InvalidEventSelectorsException", "at most 250 resources.ARN values per trail (got 251)",
             advanced_event_selectors=over)


def test_basic_and_advanced_together_are_refused() -> None:
    rejected("InvalidParameterCombinationException", "EventSelectors: a trail takes EventSelectors or "
             "AdvancedEventSelectors, not both", event_selectors=[selector()],
             advanced_event_selectors=[selector_for("Management")])


# --- Insights selectors -------------------------------------------------------------------------

CALLS = {"InsightType": "ApiCallRateInsight"}
ERRORS = {"InsightType": "ApiErrorRateInsight"}


def on(kind: dict[str, str], *categories: str) -> dict[str, Any]:
    return {**kind, "EventCategories": list(categories)}


S3_DATA = [selector(IncludeManagementEvents=False, DataResources=[s3("arn:aws:s3")])]
ADVANCED_READS = [selector_for("Management", field("readOnly", Equals=["true"]))]
ADVANCED_WRITES = [selector_for("Management", field("readOnly", Equals=["false"]))]
ADVANCED_NONE = [selector_for("Management", field("readOnly", Equals=["true"]), field("readOnly", Equals=["false"]))]


@pytest.mark.parametrize(
    ("selectors", "insights", "missing"),
    [
        ({}, [CALLS, ERRORS], None),
        ({}, [on(CALLS, "Management")], None),
        ({}, [on(CALLS, "Data")], "ApiCallRateInsight on Data events needs the trail to log data events"),
        ({}, [on(ERRORS, "Management", "Data")], "ApiErrorRateInsight on Data events needs"),
        ({"event_selectors": [selector(ReadWriteType="ReadOnly")]}, [CALLS],
         "ApiCallRateInsight on Management events needs the trail to log write management events"),
        ({"event_selectors": [selector(ReadWriteType="ReadOnly")]}, [ERRORS], None),
        ({"event_selectors": [selector(ReadWriteType="WriteOnly")]}, [CALLS, ERRORS], None),
        ({"event_selectors": S3_DATA}, [ERRORS],
         "ApiErrorRateInsight on Management events needs the trail to log read or write management events"),
        ({"event_selectors": S3_DATA}, [on(CALLS, "Data"), on(ERRORS, "Data")], None),
        ({"advanced_event_selectors": ADVANCED_READS}, [CALLS], "needs the trail to log write management events"),
        ({"advanced_event_selectors": ADVANCED_READS}, [ERRORS], None),
        ({"advanced_event_selectors": ADVANCED_WRITES}, [CALLS], None),
        ({"advanced_event_selectors": ADVANCED_NONE}, [ERRORS], "read or write management events"),
        ({"advanced_event_selectors": [data_selector()]}, [on(CALLS, "Data")], None),
        ({"advanced_event_selectors": [data_selector()]}, [CALLS], "write management events"),
        ({"advanced_event_selectors": [selector_for("NetworkActivity")]}, [on(ERRORS, "Data")], "data events"),
    ],
)
def test_insights_prerequisites(selectors: dict[str, Any], insights: list[dict[str, Any]], missing: str | None) -> None:
    if missing is None:
        assert trail(insight_selectors=insights, **selectors).insight_selectors == tuple(insights)
    else:
        rejected("InvalidInsightSelectorsException", missing, insight_selectors=insights, **selectors)


@pytest.mark.parametrize(
    ("insights", "fragment"),
    [
        ([{"InsightType": "ApiLatencyInsight"}],
         "InsightSelectors[0].InsightType: must be one of ApiCallRateInsight, ApiErrorRateInsight"),
        ([on(CALLS, "NetworkActivity")], "InsightSelectors[0].EventCategories[0]: must be one of Management, Data"),
        ([{"EventCategories": ["Management"]}], "InsightSelectors[0].InsightType: is required"),
        ([CALLS, ERRORS, CALLS], "InsightSelectors[2].InsightType: ApiCallRateInsight appears twice"),
        ([on(CALLS)], "InsightSelectors[0].EventCategories: needs at least one category"),
        ([{"InsightType": "ApiCallRateInsight", "Colour": "red"}], "InsightSelectors[0].Colour: unknown member"),
        ({"InsightType": "ApiCallRateInsight"}, "InsightSelectors: must be a list"),
    ],
)
def test_invalid_insight_selectors(insights: Any, fragment: str) -> None:
    rejected("InvalidInsightSelectorsException", fragment, insight_selectors=insights)


# --- a trail among others -----------------------------------------------------------------------


def named(name: str, **changes: Any) -> Trail:
    return trail(name=name, **changes)


def add_all(trails: list[Trail]) -> None:
    for index, candidate in enumerate(trails):
        check_can_add(trails[:index], candidate)


def refused(trails: list[Trail], code: str, fragment: str) -> None:
    with pytest.raises(TrailError) as caught:
        add_all(trails)
    assert caught.value.code == code
    assert fragment in caught.value.message, caught.value.message


def test_five_trails_per_region() -> None:
    five = [named(f"trail-{i}") for i in range(5)]
    add_all(five)
    refused([*five, named("trail-5")], "MaximumNumberOfTrailsExceededException",
            "trail 'trail-5': HomeRegion: account 111122223333 already has 5 trails in eu-west-1 (trail-0, trail-1")


def test_other_regions_accounts_and_partitions_do_not_count() -> None:
    five = [named(f"trail-{i}") for i in range(5)]
    add_all([*five, named("trail-5", home_region="eu-west-2"), named("trail-6", account_id="444455556666"),
             named("trail-7", home_region="cn-north-1", partition="aws-cn")])


def test_multi_region_trail_counts_in_every_region() -> None:
    four = [named(f"trail-{i}") for i in range(4)]
    multi = named("everywhere", home_region="us-east-1", is_multi_region_trail=True)
    refused([*four, multi, named("trail-4")], "MaximumNumberOfTrailsExceededException", "5 trails in eu-west-1")
    refused([*four, named("trail-4"), multi], "MaximumNumberOfTrailsExceededException", "trail 'everywhere'")
    add_all([*four, multi, named("trail-4", home_region="us-east-1")])


def test_six_multi_region_trails() -> None:
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-3"]
    multis = [named(f"multi-{i}", home_region=r, is_multi_region_trail=True) for i, r in enumerate(regions)]
    add_all(multis[:5])
    refused(multis, "MaximumNumberOfTrailsExceededException", "trail 'multi-5'")


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ({}, {}, True),
        ({}, {"home_region": "eu-west-2"}, False),
        ({}, {"account_id": "444455556666"}, False),
        ({"home_region": "us-east-1", "is_multi_region_trail": True}, {}, True),
        ({}, {"home_region": "us-east-1", "is_multi_region_trail": True}, True),
        ({"home_region": "us-east-1", "is_multi_region_trail": True},
         {"home_region": "eu-west-2", "account_id": "444455556666"}, False),
    ],
)
def test_trail_names_per_account_and_region(first: dict[str, Any], second: dict[str, Any], clash: bool) -> None:
    pair = [named("audit", **first), named("audit", **second)]
    if clash:
        refused(pair, "TrailAlreadyExistsException", "trail 'audit': Name: account")
    else:
        add_all(pair)
