"""CloudTrail's rules for a trail (docs/cloudtrail.md §6.5, §9), each failure named as AWS names it.

:func:`validate_trail` checks one trail: first the CreateTrail, PutEventSelectors and
PutInsightSelectors requests it amounts to against botocore's CloudTrail model, then the rules the
model cannot express. :func:`check_can_add` checks one trail against the trails already there
(names, 5 trails per region).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from kafkatrail.trails import members
from kafkatrail.trails.errors import TrailError, shown, trail_label
from kafkatrail.trails.fields import TrailFields
from kafkatrail.trails.regions import partition_of
from kafkatrail.trails.selector_rules import advanced_selectors_problem, basic_selectors_problem, logged_events
from kafkatrail.trails.service_model import model_error

MAX_TRAILS_PER_REGION: Final = 5
MAX_S3_PREFIX: Final = 200
MAX_SNS_TOPIC_NAME: Final = 256
MAX_TAGS: Final = 50

# Which error a model violation in each top-level request member raises; other members (the
# booleans) raise InvalidParameterException.
_MEMBER_ERRORS: Final = {
    "Name": "InvalidTrailNameException",
    "TrailName": "InvalidTrailNameException",
    "S3BucketName": "InvalidS3BucketNameException",
    "S3KeyPrefix": "InvalidS3PrefixException",
    "SnsTopicName": "InvalidSnsTopicNameException",
    "KmsKeyId": "InvalidKmsKeyIdException",
    "CloudWatchLogsLogGroupArn": "InvalidCloudWatchLogsLogGroupArnException",
    "CloudWatchLogsRoleArn": "InvalidCloudWatchLogsRoleArnException",
    "TagsList": "InvalidTagParameterException",
    "EventSelectors": "InvalidEventSelectorsException",
    "AdvancedEventSelectors": "InvalidEventSelectorsException",
    "InsightSelectors": "InvalidInsightSelectorsException",
}

_TRAIL_NAME = re.compile(r"[A-Za-z0-9](?:[._-]?[A-Za-z0-9])*", re.ASCII)
_IP_ADDRESS = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)
_BUCKET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{1,61})[a-z0-9]", re.ASCII)
_ORGANIZATION_ID = re.compile(r"o-[a-z0-9]{10,32}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)


def validate_trail(trail: TrailFields) -> None:
    """Raise :class:`TrailError` for the first CloudTrail rule ``trail`` breaks."""
    label = trail_label(trail.name)
    _check_model(label, trail)
    _check_placement(label, trail)
    _check_destinations(label, trail)
    _check_selectors(label, trail)
    _check_insights(label, trail)


def check_can_add(existing: Iterable[TrailFields], trail: TrailFields) -> None:
    """Raise :class:`TrailError` unless ``trail`` can join ``existing`` (trails of any accounts and regions).

    Per account and partition, a region holds at most 5 trails, a multi-region trail counting in
    every region, and no two trails of one name (kafkatrail's choice: a multi-region trail's name is
    taken in every region, as its shadow trails carry it there). The regions checked are the home
    regions of the account's trails: a region where no trail is homed holds only multi-region
    trails, never more than the home region of any one of them.
    """
    label = trail_label(trail.name)
    same_account = [t for t in existing if (t.partition, t.account_id) == (trail.partition, trail.account_id)]
    if trail.is_multi_region_trail:
        regions = dict.fromkeys([trail.home_region, *(t.home_region for t in same_account)])
    else:
        regions = {trail.home_region: None}
    for region in regions:
        present = [t for t in same_account if t.is_multi_region_trail or t.home_region == region]
        if any(t.name == trail.name for t in present):
            raise TrailError("TrailAlreadyExistsException", f"{label}: Name: account {trail.account_id} already "
                             f"has a trail named '{trail.name}' in {region}")
        if len(present) >= MAX_TRAILS_PER_REGION:
            names = ", ".join(t.name for t in present)
            raise TrailError("MaximumNumberOfTrailsExceededException",
                             f"{label}: HomeRegion: account {trail.account_id} already has "
                             f"{MAX_TRAILS_PER_REGION} trails in {region} ({names}; a multi-region trail counts "
                             f"in every region)")


def request_error(operation: str, request: dict[str, Any]) -> TrailError | None:
    """How a CloudTrail API request breaks botocore's input shape of ``operation`` (as AWS names it), or None."""
    found = model_error(operation, request)
    if not found:
        return None
    path, rule = found
    member = re.split(r"[.\[]", path, maxsplit=1)[0]
    code = {**_MEMBER_ERRORS, "trailNameList": "InvalidTrailNameException",
            "ResourceId": "CloudTrailARNInvalidException",
            "ResourceIdList": "CloudTrailARNInvalidException",
            "LookupAttributes": "InvalidLookupAttributesException", "EventCategory": "InvalidEventCategoryException",
            "MaxResults": "InvalidMaxResultsException"}.get(member, "InvalidParameterException")
    return TrailError(code, f"{path}: {rule}")


def trail_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid trail name (CloudTrail's rules), or None."""
    if not 3 <= len(name) <= 128:
        return f"must be 3 to 128 characters long (got {len(name)})"
    if not _TRAIL_NAME.fullmatch(name):
        return ("must hold only ASCII letters, digits, '.', '_' and '-', start and end with a letter or digit, "
                "and have no two of '._-' in a row")
    if _IP_ADDRESS.fullmatch(name):
        return "must not be formatted as an IP address"
    return None


def _fail(code: str, label: str, path: str, rule: str) -> TrailError:
    return TrailError(code, f"{label}: {path}: {rule}")


def _check_model(label: str, trail: TrailFields) -> None:
    create = {member: getattr(trail, attribute) for member, attribute in members.CREATE_TRAIL.items()}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("CreateTrail", {member: value for member, value in create.items() if value is not None}),
        ("PutInsightSelectors", {"TrailName": trail.name, "InsightSelectors": trail.insight_selectors}),
    ]
    selectors = {member: getattr(trail, attribute) for member, attribute in members.SELECTORS.items()
                 if member != "InsightSelectors" and getattr(trail, attribute) is not None}
    if selectors:
        requests.append(("PutEventSelectors", {"TrailName": trail.name, **selectors}))
    for operation, request in requests:
        found = model_error(operation, request)
        if found:
            path, rule = found
            code = _MEMBER_ERRORS.get(re.split(r"[.\[]", path, maxsplit=1)[0], "InvalidParameterException")
            raise _fail(code, label, path, rule)


def _check_placement(label: str, trail: TrailFields) -> None:
    region = trail.home_region
    if region is None:
        raise _fail("InvalidHomeRegionException", label, "HomeRegion", "is required")
    if not isinstance(region, str) or partition_of(region) is None:
        raise _fail("InvalidHomeRegionException", label, "HomeRegion",
                    f"must be a region of an AWS partition (got {shown(region)})")
    if trail.partition != partition_of(region):
        raise _fail("InvalidParameterException", label, "Partition",
                    f"{region} is in partition {partition_of(region)} (got {shown(trail.partition)})")
    if not isinstance(trail.account_id, str) or not _ACCOUNT_ID.fullmatch(trail.account_id):
        raise _fail("InvalidParameterException", label, "AccountId",
                    f"must be a 12-digit account id (got {shown(trail.account_id)})")
    if not isinstance(trail.logging, bool):
        raise _fail("InvalidParameterException", label, "IsLogging", f"must be a boolean (got {shown(trail.logging)})")
    for member, moment in (("StartLoggingTime", trail.start_logging_time),
                           ("StopLoggingTime", trail.stop_logging_time)):
        if moment is not None and (isinstance(moment, bool) or not isinstance(moment, int | float)):
            raise _fail("InvalidParameterException", label, member, f"must be epoch seconds (got {shown(moment)})")
    organization = trail.organization_id
    if organization is not None:
        if not trail.is_organization_trail:
            raise _fail("InvalidParameterCombinationException", label, "OrganizationId",
                        "is only for an organization trail (IsOrganizationTrail true)")
        if not isinstance(organization, str) or not _ORGANIZATION_ID.fullmatch(organization):
            raise _fail("InvalidParameterException", label, "OrganizationId",
                        f"must be an organization id like o-a1b2c3d4e5 (got {shown(organization)})")


def _check_destinations(label: str, trail: TrailFields) -> None:
    name = trail.name
    if not 3 <= len(name) <= 128:
        raise _fail("InvalidTrailNameException", label, "Name", f"must be 3 to 128 characters long (got {len(name)})")
    if not _TRAIL_NAME.fullmatch(name):
        raise _fail("InvalidTrailNameException", label, "Name", "must hold only ASCII letters, digits, '.', '_' and "
                    "'-', start and end with a letter or digit, and have no two of '._-' in a row")
    if _IP_ADDRESS.fullmatch(name):
        raise _fail("InvalidTrailNameException", label, "Name", "must not be formatted as an IP address")
    bucket = trail.s3_bucket_name
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        raise _fail("InvalidS3BucketNameException", label, "S3BucketName", "must be 3 to 63 lowercase letters, "
                    "digits, '.' and '-', start and end with a letter or digit, not an IP address "
                    f"(got {shown(bucket)})")
    if trail.s3_key_prefix is not None:
        _check_s3_prefix(label, trail.s3_key_prefix)
    if trail.sns_topic_name is not None and len(trail.sns_topic_name) > MAX_SNS_TOPIC_NAME:
        raise _fail("InvalidSnsTopicNameException", label, "SnsTopicName",
                    f"must be at most {MAX_SNS_TOPIC_NAME} characters long (got {len(trail.sns_topic_name)})")
    _check_cloudwatch_logs(label, trail)
    _check_tags(label, trail)
    if trail.is_multi_region_trail and not trail.include_global_service_events:
        raise _fail("InvalidParameterCombinationException", label, "IncludeGlobalServiceEvents",
                    "Multi-Region trail must include global service events.")


def _check_s3_prefix(label: str, prefix: str) -> None:
    """A prefix becomes the first segments of every object key: it must make a plain S3 path on its own.

    AWS documents only the 200-character limit; kafkatrail refuses too what would put a file somewhere other
    than the prefix says (a control character, a `.` or `..` segment, a leading `/`, an empty segment).
    """
    if len(prefix) > MAX_S3_PREFIX:
        raise _fail("InvalidS3PrefixException", label, "S3KeyPrefix",
                    f"must be at most {MAX_S3_PREFIX} characters long (got {len(prefix)})")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in prefix):
        raise _fail("InvalidS3PrefixException", label, "S3KeyPrefix", "must not hold control characters")
    if prefix.startswith("/"):
        raise _fail("InvalidS3PrefixException", label, "S3KeyPrefix", "must not start with '/'")
    segments = prefix.removesuffix("/").split("/")
    if any(segment in (".", "..") for segment in segments):
        raise _fail("InvalidS3PrefixException", label, "S3KeyPrefix", "must not hold a '.' or '..' segment")
    if any(not segment for segment in segments):
        raise _fail("InvalidS3PrefixException", label, "S3KeyPrefix", "must not hold an empty segment ('//')")


def _check_cloudwatch_logs(label: str, trail: TrailFields) -> None:
    group, role = trail.cloud_watch_logs_log_group_arn, trail.cloud_watch_logs_role_arn
    if group is None and role is not None:
        raise _fail("InvalidParameterCombinationException", label, "CloudWatchLogsRoleArn",
                    "needs CloudWatchLogsLogGroupArn as well")
    if role is None and group is not None:
        raise _fail("InvalidParameterCombinationException", label, "CloudWatchLogsLogGroupArn",
                    "needs CloudWatchLogsRoleArn as well")
    if group is None or role is None:
        return
    partition = re.escape(trail.partition)
    if not re.fullmatch(rf"arn:{partition}:logs:[a-z0-9-]+:[0-9]{{12}}:log-group:[^:]+(?::\*)?", group, re.ASCII):
        raise _fail("InvalidCloudWatchLogsLogGroupArnException", label, "CloudWatchLogsLogGroupArn",
                    f"must be arn:{trail.partition}:logs:<region>:<account>:log-group:<name>:* (got {shown(group)})")
    if not re.fullmatch(rf"arn:{partition}:iam::[0-9]{{12}}:role/.+", role, re.ASCII | re.DOTALL):
        raise _fail("InvalidCloudWatchLogsRoleArnException", label, "CloudWatchLogsRoleArn",
                    f"must be arn:{trail.partition}:iam::<account>:role/<name> (got {shown(role)})")


def _check_tags(label: str, trail: TrailFields) -> None:
    if len(trail.tags) > MAX_TAGS:
        raise _fail("TagsLimitExceededException", label, "TagsList",
                    f"a trail takes at most {MAX_TAGS} tags (got {len(trail.tags)})")
    seen: set[str] = set()
    for index, tag in enumerate(trail.tags):
        if tag["Key"] in seen:
            raise _fail("InvalidTagParameterException", label, f"TagsList[{index}].Key",
                        f"tag key {shown(tag['Key'])} appears twice")
        seen.add(tag["Key"])


def _check_selectors(label: str, trail: TrailFields) -> None:
    if trail.event_selectors is not None and trail.advanced_event_selectors is not None:
        raise _fail("InvalidParameterCombinationException", label, "EventSelectors",
                    "a trail takes EventSelectors or AdvancedEventSelectors, not both")
    found = None
    if trail.event_selectors is not None:
        found = basic_selectors_problem(trail.event_selectors, trail.partition)
    elif trail.advanced_event_selectors is not None:
        found = advanced_selectors_problem(trail.advanced_event_selectors)
    if found:
        raise _fail("InvalidEventSelectorsException", label, *found)


def _check_insights(label: str, trail: TrailFields) -> None:
    logged = logged_events(trail.event_selectors, trail.advanced_event_selectors)
    needs = {  # (insight type, event category) -> (what the trail must log, whether it does)
        ("ApiCallRateInsight", "Management"): ("write management events", logged.management_write),
        ("ApiErrorRateInsight", "Management"): ("read or write management events",
                                                logged.management_read or logged.management_write),
        ("ApiCallRateInsight", "Data"): ("data events", logged.data),
        ("ApiErrorRateInsight", "Data"): ("data events", logged.data),
    }
    seen: set[str] = set()
    for index, selector in enumerate(trail.insight_selectors):
        path = f"InsightSelectors[{index}]"
        insight_type = selector.get("InsightType")
        if insight_type is None:
            raise _fail("InvalidInsightSelectorsException", label, f"{path}.InsightType", "is required")
        if insight_type in seen:
            raise _fail("InvalidInsightSelectorsException", label, f"{path}.InsightType",
                        f"{insight_type} appears twice")
        seen.add(insight_type)
        categories = selector.get("EventCategories", ["Management"])
        if not categories:
            raise _fail("InvalidInsightSelectorsException", label, f"{path}.EventCategories",
                        "needs at least one category (omit it for Management)")
        for category in categories:
            what, logs = needs[insight_type, category]
            if not logs:
                raise _fail("InvalidInsightSelectorsException", label, f"{path}.EventCategories",
                            f"{insight_type} on {category} events needs the trail to log {what}")
