"""The CloudTrail operations, as pure logic over three views (docs/cloudtrail.md §10).

`CloudTrailApi.call(operation, Call)` checks the request against botocore's input shape of the operation, then
runs its handler. A handler reads trails from a `TrailStore`, writes one trail (or deletes one) through it,
asks a `ResourceChecker` whether the S3 bucket, SNS topic, KMS key and log group a trail names exist, reads
what the sinks delivered from a `StatusView`, and looks events up in a `HistoryView` (LookupEvents, whose request
rules and token are `kafkatrail.api.lookup_events`). Every refusal is raised before anything is written, so a refused
call changes nothing.

Visibility: a principal sees its account's trails, and an organization's management account also its
organization's organization trails; any other trail is answered exactly as a missing one
(`TrailNotFoundException`). In a region, the visible trails are those homed there plus the multi-region trails
homed elsewhere (shadow trails, shown with their home ARN). Calls that change a trail must be made in its home
region (`InvalidHomeRegionException`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import botocore.session

from kafkatrail.api.auth import ANONYMOUS, Principal
from kafkatrail.api.errors import ApiError
from kafkatrail.api.lookup_events import event_of, lookup_of, next_token
from kafkatrail.schemas.contract import TrailStatusUpdate
from kafkatrail.sinks.history_store import Lookup, StoredEvent
from kafkatrail.sinks.signing_keys import keys_between, read_public_keys
from kafkatrail.trails import members
from kafkatrail.trails.errors import TrailError
from kafkatrail.trails.model import Trail, trail_from_members
from kafkatrail.trails.validation import check_can_add, request_error, trail_name_problem

TRAIL_ARN = re.compile(r"arn:([a-z-]+):cloudtrail:([a-z0-9-]+):([0-9]{12}):trail/(.+)")
LIST_TRAILS_PAGE = 50
LIST_TAGS_PAGE = 20
DEFAULT_EVENT_SELECTORS = [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [],
                            "ExcludeManagementEventSources": []}]
# UpdateTrail members whose empty string clears the setting (as AWS does for `--sns-topic-name ""`).
CLEARABLE = ("S3KeyPrefix", "SnsTopicName", "CloudWatchLogsLogGroupArn", "CloudWatchLogsRoleArn", "KmsKeyId")
MUTATING = frozenset({"CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging", "PutEventSelectors",
                      "PutInsightSelectors", "AddTags", "RemoveTags"})


@dataclass(frozen=True)
class Call:
    """One request: who made it, the region it was sent to, its JSON input."""

    principal: Principal
    region: str
    body: dict[str, Any]


class TrailStore(Protocol):
    """The trails, and the one way to change them (each write waits until readers see it)."""

    def trails(self) -> Mapping[str, Trail]: ...

    def put(self, trail: Trail) -> None: ...

    def delete(self, arn: str) -> None: ...


class ResourceChecker(Protocol):
    """The checks AWS makes against the destinations a trail names; raises ApiError; returns the trail to store
    (e.g. with the KMS key as its full ARN)."""

    def check(self, trail: Trail, changed: frozenset[str]) -> Trail: ...


class StatusView(Protocol):
    """The latest sink reports for a trail in a region, by `TrailStatusUpdate.key` suffix `<kind>|<ok|error>`."""

    def status(self, trail_arn: str, region: str) -> Mapping[str, TrailStatusUpdate]: ...


class HistoryView(Protocol):
    """The event-history store, as LookupEvents reads it."""

    def lookup(self, query: Lookup) -> tuple[list[StoredEvent], tuple[int, int] | None]: ...


class NoHistory:
    """No store yet (no history worker has run): every lookup finds nothing."""

    def lookup(self, query: Lookup) -> tuple[list[StoredEvent], tuple[int, int] | None]:
        return [], None


class NoChecks:
    """A ResourceChecker that accepts every destination (unit tests of the logic around it)."""

    def check(self, trail: Trail, changed: frozenset[str]) -> Trail:
        return trail


class NoStatus:
    def status(self, trail_arn: str, region: str) -> Mapping[str, TrailStatusUpdate]:
        return {}


class MemoryStore:
    """A TrailStore in memory."""

    def __init__(self, trails: Iterable[Trail] = ()) -> None:
        self._trails = {trail.arn: trail for trail in trails}

    def trails(self) -> Mapping[str, Trail]:
        return dict(self._trails)

    def put(self, trail: Trail) -> None:
        self._trails[trail.arn] = trail

    def delete(self, arn: str) -> None:
        self._trails.pop(arn, None)


def _model() -> Any:
    return botocore.session.get_session().get_service_model("cloudtrail")


_OUTPUT_MEMBERS: dict[str, tuple[str, ...]] = {}


def output_members(shape_name: str) -> tuple[str, ...]:
    """The members botocore's model gives a shape (the trail object, CreateTrail's response, ...)."""
    if shape_name not in _OUTPUT_MEMBERS:
        _OUTPUT_MEMBERS[shape_name] = tuple(_model().shape_for(shape_name).members)
    return _OUTPUT_MEMBERS[shape_name]


def sns_topic_arn(trail: Trail) -> str | None:
    if not trail.sns_topic_name:
        return None
    if trail.sns_topic_name.startswith("arn:"):
        return trail.sns_topic_name
    return f"arn:{trail.partition}:sns:{trail.home_region}:{trail.account_id}:{trail.sns_topic_name}"


def trail_object(trail: Trail, shape: str = "Trail") -> dict[str, Any]:
    """The trail as the model's `shape` shows it (Trail, CreateTrailResponse, ...); unset members omitted."""
    topic_arn = sns_topic_arn(trail)
    values = {
        "Name": trail.name,
        "S3BucketName": trail.s3_bucket_name,
        "S3KeyPrefix": trail.s3_key_prefix,
        "SnsTopicName": topic_arn.rsplit(":", 1)[-1] if topic_arn else None,
        "SnsTopicARN": topic_arn,
        "IncludeGlobalServiceEvents": trail.include_global_service_events,
        "IsMultiRegionTrail": trail.is_multi_region_trail,
        "HomeRegion": trail.home_region,
        "TrailARN": trail.arn,
        "LogFileValidationEnabled": trail.log_file_validation_enabled,
        "CloudWatchLogsLogGroupArn": trail.cloud_watch_logs_log_group_arn,
        "CloudWatchLogsRoleArn": trail.cloud_watch_logs_role_arn,
        "KmsKeyId": trail.kms_key_id,
        "HasCustomEventSelectors": trail.event_selectors is not None or trail.advanced_event_selectors is not None,
        "HasInsightSelectors": bool(trail.insight_selectors),
        "IsOrganizationTrail": trail.is_organization_trail,
        "RecursiveLogging": trail.recursive_logging,
    }
    return {name: values[name] for name in output_members(shape) if values.get(name) is not None}


def epoch_seconds(value: Any, member: str) -> float:
    """A timestamp member as botocore sends it (epoch seconds, or ISO 8601 text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ApiError("InvalidParameterException", f"{member}: must be a timestamp in epoch seconds (got {value!r})")


def can_see(principal: Principal, trail: Trail) -> bool:
    """Whether `principal` may see (and, in the trail's home region, change) `trail`."""
    if principal.account_id is None:
        return True
    if trail.account_id == principal.account_id:
        return True
    return (principal.organization_management and trail.is_organization_trail
            and trail.organization_id is not None and trail.organization_id == principal.organization_id)


def encode_token(arn: str) -> str:
    return base64.urlsafe_b64encode(arn.encode()).decode()


def decode_token(token: Any, code: str) -> str:
    try:
        if not isinstance(token, str):
            raise ValueError
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(code, "NextToken: not a token this endpoint issued") from None


def _trail_error(exc: TrailError) -> ApiError:
    return ApiError(exc.code, exc.message)


class CloudTrailApi:
    """The operations over a trail store, a resource checker and a status view."""

    def __init__(self, store: TrailStore, keys_folder: Path, *, resources: ResourceChecker | None = None,
                 status: StatusView | None = None, history: HistoryView | None = None,
                 history_retention_days: int = 90, clock: Callable[[], float] = time.time,
                 list_page: int = LIST_TRAILS_PAGE) -> None:
        self.store = store
        self.keys_folder = keys_folder
        self.resources: ResourceChecker = resources or NoChecks()
        self.status_view: StatusView = status or NoStatus()
        self.history: HistoryView = history or NoHistory()
        self.history_retention_days = history_retention_days
        self.clock = clock
        self.list_page = list_page
        self.operations: dict[str, Callable[[Call], dict[str, Any]]] = {
            "CreateTrail": self.create_trail,
            "UpdateTrail": self.update_trail,
            "DeleteTrail": self.delete_trail,
            "DescribeTrails": self.describe_trails,
            "GetTrail": self.get_trail,
            "ListTrails": self.list_trails,
            "GetTrailStatus": self.get_trail_status,
            "StartLogging": self.start_logging,
            "StopLogging": self.stop_logging,
            "PutEventSelectors": self.put_event_selectors,
            "GetEventSelectors": self.get_event_selectors,
            "PutInsightSelectors": self.put_insight_selectors,
            "GetInsightSelectors": self.get_insight_selectors,
            "AddTags": self.add_tags,
            "RemoveTags": self.remove_tags,
            "ListTags": self.list_tags,
            "ListPublicKeys": self.list_public_keys,
            "LookupEvents": self.lookup_events,
        }

    # --- dispatch -------------------------------------------------------------------------------------------

    def known(self, operation: str) -> bool:
        return operation in self.operations

    def call(self, operation: str, request: Call) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise ApiError("UnknownOperationException", f"{operation[:100]}: not an operation this endpoint serves")
        problem = request_error(operation, request.body)
        if problem is not None:
            raise _trail_error(problem)
        return handler(request)

    # --- lookup ---------------------------------------------------------------------------------------------

    def _visible(self, call: Call, shadows: bool = True) -> list[Trail]:
        """The trails `call`'s principal sees in its region: homed there, plus shadows when `shadows`."""
        return sorted((t for t in self.store.trails().values() if can_see(call.principal, t)
                       and (t.home_region == call.region or (shadows and t.is_multi_region_trail))),
                      key=lambda t: t.arn)

    def _not_found(self, call: Call, name: str) -> ApiError:
        account = call.principal.account_id or "anonymous"
        return ApiError("TrailNotFoundException", f"Unknown trail: {name} for the user: {account}")

    def find(self, call: Call, name: Any, *, home: bool = False, arn_only: bool = False) -> Trail:
        """The trail `name` (a name or an ARN) names for this call; `home`: the call must be in its home region."""
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidTrailNameException", "a trail name or ARN is required")
        if name.startswith("arn:"):
            match = TRAIL_ARN.fullmatch(name)
            if match is None:
                raise ApiError("CloudTrailARNInvalidException", f"{name[:200]}: not a trail ARN "
                               "(arn:<partition>:cloudtrail:<region>:<account>:trail/<name>)")
            trail = self.store.trails().get(name)
            if trail is None or not can_see(call.principal, trail):
                raise self._not_found(call, name)
            if trail.home_region != call.region and not trail.is_multi_region_trail:
                raise self._not_found(call, name)
        else:
            if arn_only:
                raise ApiError("CloudTrailARNInvalidException", f"{name[:200]}: must be a trail ARN")
            problem = trail_name_problem(name)
            if problem is not None:
                raise ApiError("InvalidTrailNameException", f"Name: {problem}")
            found = [t for t in self._visible(call) if t.name == name]
            homed = [t for t in found if t.home_region == call.region]
            if not homed:
                if home and found:
                    raise ApiError("InvalidHomeRegionException", f"trail {name} is a shadow trail here: change it "
                                   f"in its home region {found[0].home_region}")
                raise self._not_found(call, name)
            trail = homed[0]
        if home and trail.home_region != call.region:
            raise ApiError("InvalidHomeRegionException", f"trail {trail.name} can only be changed in its home region "
                           f"{trail.home_region} (this is {call.region})")
        return trail

    def _replace(self, trail: Trail, **changes: Any) -> Trail:
        try:
            return dataclasses.replace(trail, **changes)
        except TrailError as exc:
            raise _trail_error(exc) from None

    def _others(self, trail: Trail) -> list[Trail]:
        return [t for arn, t in self.store.trails().items() if arn != trail.arn]

    # --- trails ---------------------------------------------------------------------------------------------

    def create_trail(self, call: Call) -> dict[str, Any]:
        body = call.body
        problem = trail_name_problem(body["Name"])
        if problem is not None:
            raise ApiError("InvalidTrailNameException", f"Name: {problem}")
        principal = call.principal
        if principal.account_id is None:
            raise ApiError("OperationNotPermittedException", "an anonymous caller has no account to create a trail in")
        organization = None
        if body.get("IsOrganizationTrail"):
            if principal.organization_id is None:
                raise ApiError("OrganizationsNotInUseException",
                               f"account {principal.account_id} is in no organization")
            if not principal.organization_management:
                raise ApiError("NotOrganizationMasterAccountException", f"account {principal.account_id} is not the "
                               "management account of its organization")
            organization = principal.organization_id
        source = {**body, "HomeRegion": call.region, "AccountId": principal.account_id, "OrganizationId": organization,
                  "IsLogging": False}
        try:
            trail = trail_from_members(source, {**members.PLACEMENT, **members.CREATE_TRAIL})
            check_can_add(self.store.trails().values(), trail)
        except TrailError as exc:
            raise _trail_error(exc) from None
        trail = self.resources.check(trail, frozenset(body))
        self.store.put(trail)
        return trail_object(trail, "CreateTrailResponse")

    def update_trail(self, call: Call) -> dict[str, Any]:
        trail = self.find(call, call.body["Name"], home=True)
        changes: dict[str, Any] = {}
        for member, value in call.body.items():
            if member == "Name":
                continue
            attribute = members.CREATE_TRAIL[member]
            changes[attribute] = None if (member in CLEARABLE and value == "") else value
        if call.body.get("IsOrganizationTrail"):
            if not call.principal.organization_management and call.principal.account_id is not None:
                raise ApiError("NotOrganizationMasterAccountException", "only the organization's management account "
                               "makes organization trails")
            changes["organization_id"] = call.principal.organization_id or trail.organization_id
        elif call.body.get("IsOrganizationTrail") is False:
            changes["organization_id"] = None
        updated = self._replace(trail, **changes)
        if updated.is_multi_region_trail and not trail.is_multi_region_trail:
            try:
                check_can_add(self._others(trail), updated)
            except TrailError as exc:
                raise _trail_error(exc) from None
        updated = self.resources.check(updated, frozenset(call.body) - {"Name"})
        self.store.put(updated)
        return trail_object(updated, "UpdateTrailResponse")

    def delete_trail(self, call: Call) -> dict[str, Any]:
        trail = self.find(call, call.body["Name"], home=True)
        self.store.delete(trail.arn)
        return {}

    def describe_trails(self, call: Call) -> dict[str, Any]:
        names = call.body.get("trailNameList") or []
        shadows = call.body.get("includeShadowTrails", True)
        for name in names:
            if name.startswith("arn:"):
                if not TRAIL_ARN.fullmatch(name):
                    raise ApiError("CloudTrailARNInvalidException", f"{name[:200]}: not a trail ARN")
            elif (problem := trail_name_problem(name)) is not None:
                raise ApiError("InvalidTrailNameException", f"trailNameList: {name[:200]}: {problem}")
        trails = self._visible(call, shadows is not False)
        if names:
            trails = [t for t in trails if t.arn in names or (t.name in names and t.home_region == call.region)]
        return {"trailList": [trail_object(t) for t in trails]}

    def get_trail(self, call: Call) -> dict[str, Any]:
        return {"Trail": trail_object(self.find(call, call.body["Name"]))}

    def list_trails(self, call: Call) -> dict[str, Any]:
        trails = sorted((t for t in self.store.trails().values() if can_see(call.principal, t)), key=lambda t: t.arn)
        token = call.body.get("NextToken")
        if token is not None:
            after = decode_token(token, "InvalidNextTokenException")
            trails = [t for t in trails if t.arn > after]
        page = trails[:self.list_page]
        response: dict[str, Any] = {"Trails": [{"TrailARN": t.arn, "Name": t.name, "HomeRegion": t.home_region}
                                               for t in page]}
        if len(trails) > len(page):
            response["NextToken"] = encode_token(page[-1].arn)
        return response

    def get_trail_status(self, call: Call) -> dict[str, Any]:
        name = call.body["Name"]
        trail = self.find(call, name)
        response: dict[str, Any] = {"IsLogging": trail.logging}
        if trail.start_logging_time is not None:
            response["StartLoggingTime"] = trail.start_logging_time
        if trail.stop_logging_time is not None:
            response["StopLoggingTime"] = trail.stop_logging_time
        reports = self.status_view.status(trail.arn, call.region)
        for kind, time_member, error_member in (
                ("delivery", "LatestDeliveryTime", "LatestDeliveryError"),
                ("notification", "LatestNotificationTime", "LatestNotificationError"),
                ("digest", "LatestDigestDeliveryTime", "LatestDigestDeliveryError"),
                ("cloudwatch", "LatestCloudWatchLogsDeliveryTime", "LatestCloudWatchLogsDeliveryError")):
            success, failure = reports.get(f"{kind}|ok"), reports.get(f"{kind}|error")
            if success is not None:
                response[time_member] = success.time
            if failure is not None and failure.error:
                response[error_member] = failure.error
        return response

    def start_logging(self, call: Call) -> dict[str, Any]:
        trail = self.find(call, call.body["Name"], home=True)
        self.store.put(self._replace(trail, logging=True, start_logging_time=round(self.clock(), 3)))
        return {}

    def stop_logging(self, call: Call) -> dict[str, Any]:
        trail = self.find(call, call.body["Name"], home=True)
        self.store.put(self._replace(trail, logging=False, stop_logging_time=round(self.clock(), 3)))
        return {}

    # --- selectors ------------------------------------------------------------------------------------------

    def put_event_selectors(self, call: Call) -> dict[str, Any]:
        body = call.body
        basic, advanced = body.get("EventSelectors"), body.get("AdvancedEventSelectors")
        if (basic is None) == (advanced is None):
            raise ApiError("InvalidEventSelectorsException", "give EventSelectors or AdvancedEventSelectors "
                           f"({'not both' if basic is not None else 'one of them'})")
        trail = self.find(call, body["TrailName"], home=True)
        updated = self._replace(trail, event_selectors=basic, advanced_event_selectors=advanced)
        self.store.put(updated)
        return self._selectors(updated)

    def _selectors(self, trail: Trail) -> dict[str, Any]:
        response: dict[str, Any] = {"TrailARN": trail.arn}
        if trail.advanced_event_selectors is not None:
            response["AdvancedEventSelectors"] = list(trail.advanced_event_selectors)
        else:
            response["EventSelectors"] = (list(trail.event_selectors) if trail.event_selectors is not None
                                          else DEFAULT_EVENT_SELECTORS)
        return response

    def get_event_selectors(self, call: Call) -> dict[str, Any]:
        return self._selectors(self.find(call, call.body["TrailName"]))

    def put_insight_selectors(self, call: Call) -> dict[str, Any]:
        body = call.body
        if "EventDataStore" in body or "InsightsDestination" in body:
            raise ApiError("InvalidParameterCombinationException", "event data stores are not served here: give "
                           "TrailName only")
        if "TrailName" not in body:
            raise ApiError("InvalidParameterCombinationException", "TrailName: required")
        trail = self.find(call, body["TrailName"], home=True)
        updated = self._replace(trail, insight_selectors=body["InsightSelectors"])
        self.store.put(updated)
        return {"TrailARN": updated.arn, "InsightSelectors": list(updated.insight_selectors)}

    def get_insight_selectors(self, call: Call) -> dict[str, Any]:
        if "EventDataStore" in call.body:
            raise ApiError("InvalidParameterCombinationException", "event data stores are not served here")
        if "TrailName" not in call.body:
            raise ApiError("InvalidParameterCombinationException", "TrailName: required")
        trail = self.find(call, call.body["TrailName"])
        if not trail.insight_selectors:
            raise ApiError("InsightNotEnabledException", f"trail {trail.name} has no Insights selectors")
        return {"TrailARN": trail.arn, "InsightSelectors": list(trail.insight_selectors)}

    # --- tags -----------------------------------------------------------------------------------------------

    def _tagged(self, call: Call, resource: Any) -> Trail:
        if isinstance(resource, str) and resource.startswith("arn:") and TRAIL_ARN.fullmatch(resource) is None:
            raise ApiError("CloudTrailARNInvalidException", f"{resource[:200]}: not a trail ARN")
        try:
            return self.find(call, resource, arn_only=True)
        except ApiError as exc:
            if exc.code == "TrailNotFoundException":
                raise ApiError("ResourceNotFoundException", f"no trail {resource} for this account in this region"
                               ) from None
            raise

    def add_tags(self, call: Call) -> dict[str, Any]:
        trail = self._tagged(call, call.body["ResourceId"])
        tags = {tag["Key"]: tag for tag in trail.tags}
        for index, tag in enumerate(call.body["TagsList"]):
            if tag["Key"].lower().startswith("aws:"):
                raise ApiError("InvalidTagParameterException", f"TagsList[{index}].Key: the aws: prefix is reserved")
            tags[tag["Key"]] = {"Key": tag["Key"], **({"Value": tag["Value"]} if "Value" in tag else {})}
        self.store.put(self._replace(trail, tags=tuple(tags.values())))
        return {}

    def remove_tags(self, call: Call) -> dict[str, Any]:
        trail = self._tagged(call, call.body["ResourceId"])
        keys = {tag["Key"] for tag in call.body["TagsList"]}
        self.store.put(self._replace(trail, tags=tuple(t for t in trail.tags if t["Key"] not in keys)))
        return {}

    def list_tags(self, call: Call) -> dict[str, Any]:
        resources = call.body["ResourceIdList"]
        if len(resources) > LIST_TAGS_PAGE:
            raise ApiError("InvalidParameterException", f"ResourceIdList: at most {LIST_TAGS_PAGE} trails")
        if call.body.get("NextToken"):
            raise ApiError("InvalidTokenException", "NextToken: this endpoint returns every trail's tags in one page")
        found = [self._tagged(call, resource) for resource in resources]
        return {"ResourceTagList": [{"ResourceId": trail.arn, "TagsList": list(trail.tags)} for trail in found]}

    # --- keys -----------------------------------------------------------------------------------------------

    def list_public_keys(self, call: Call) -> dict[str, Any]:
        if call.body.get("NextToken"):
            raise ApiError("InvalidTokenException", "NextToken: this endpoint returns every key in one page")
        now = self.clock()
        start = epoch_seconds(call.body["StartTime"], "StartTime") if "StartTime" in call.body else now
        end = epoch_seconds(call.body["EndTime"], "EndTime") if "EndTime" in call.body else now
        if start > end:
            raise ApiError("InvalidTimeRangeException", "StartTime: must not be after EndTime")
        keys = keys_between(read_public_keys(self.keys_folder), int(start), int(end) + 1)
        return {"PublicKeyList": [key.to_api() for key in keys]}


    # --- event history --------------------------------------------------------------------------------------

    def lookup_events(self, call: Call) -> dict[str, Any]:
        principal = call.principal
        if principal.account_id is None:
            raise ApiError("OperationNotPermittedException", "LookupEvents: event history is kept per account; "
                           "sign the request with a key of api.credentials_file")
        key = principal.secret_access_key.encode()
        query = lookup_of(call.body, principal.account_id, call.region, int(self.clock() * 1000),
                          self.history_retention_days, key)
        events, after = self.history.lookup(query)
        response: dict[str, Any] = {"Events": [event_of(event) for event in events]}
        if after is not None:
            response["NextToken"] = next_token(call.body, principal.account_id, call.region, after, key)
        return response


__all__ = ["ANONYMOUS", "Call", "CloudTrailApi", "MemoryStore", "TrailStore"]
