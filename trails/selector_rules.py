"""CloudTrail's rules for event selectors on a trail (docs/cloudtrail.md §6.5) beyond the model.

Each check returns the first problem as ``(member path, rule)`` or None; the caller raises it as
``InvalidEventSelectorsException``. botocore's model has already checked the selectors' shapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from kafkatrail.trails.errors import shown

MAX_BASIC_SELECTORS: Final = 5
MAX_DATA_RESOURCES: Final = 250
MAX_ADVANCED_VALUES: Final = 500
EXCLUDABLE_SOURCES: Final = ("kms.amazonaws.com", "rdsdata.amazonaws.com")

# Basic selectors' data resource types and the ARN service each names.
DATA_RESOURCE_SERVICES: Final = {
    "AWS::S3::Object": "s3",
    "AWS::Lambda::Function": "lambda",
    "AWS::DynamoDB::Table": "dynamodb",
}
# How a value names resources, after "arn:<partition>:<service>": S3 values are key prefixes of one
# bucket (the "/" after the bucket is required, so "bucket" cannot also match "bucket2"); Lambda and
# DynamoDB values are one function or table.
_RESOURCE_FORMS: Final = {
    "s3": (r":::[^/]+/.*", "arn:{p}:s3:::<bucket>/<key prefix>"),
    "lambda": (r":[^:]+:[0-9]{12}:function:.+", "arn:{p}:lambda:<region>:<account>:function:<name>"),
    "dynamodb": (r":[^:]+:[0-9]{12}:table/.+", "arn:{p}:dynamodb:<region>:<account>:table/<name>"),
}

SELECT_OPERATORS: Final = ("Equals", "StartsWith", "EndsWith")
DESELECT_OPERATORS: Final = ("NotEquals", "NotStartsWith", "NotEndsWith")
_ANY: Final = SELECT_OPERATORS + DESELECT_OPERATORS
_EQUALS: Final = ("Equals",)
TRAIL_CATEGORIES: Final = ("Management", "Data", "NetworkActivity")
_STORE_ONLY_CATEGORIES: Final = ("Insight", "ConfigurationItem", "Evidence", "ActivityAuditLog")
# Fields a trail's advanced selector may use, per eventCategory, with the operators each allows.
FIELD_OPERATORS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "Management": {"eventCategory": _EQUALS, "readOnly": _EQUALS, "eventSource": ("NotEquals",)},
    "Data": {
        "eventCategory": _EQUALS,
        "readOnly": _EQUALS,
        "eventSource": _ANY,
        "eventName": _ANY,
        "resources.type": _EQUALS,
        "resources.ARN": _ANY,
        "eventType": _ANY,
        "sessionCredentialFromConsole": ("Equals", "NotEquals"),
        "userIdentity.arn": _ANY,
    },
    "NetworkActivity": {
        "eventCategory": _EQUALS,
        "eventSource": _EQUALS,
        "eventName": _ANY,
        "userIdentity.arn": _ANY,
        "errorCode": _EQUALS,
        "vpcEndpointId": _ANY,
    },
}
_KNOWN_FIELDS: Final = tuple(dict.fromkeys(f for fields in FIELD_OPERATORS.values() for f in fields))
_RESOURCE_TYPE = re.compile(r"AWS::[A-Za-z0-9]+::[A-Za-z0-9]+", re.ASCII)
_COMPLETE_ARN = re.compile(r"arn:[^:]+:[^:]+:[^:]*:[^:]*:.+", re.DOTALL)

Problem = tuple[str, str]


def all_resources_value(value: str, resource_type: str, partition: str) -> bool:
    """Whether a basic selector's ``value`` names every resource of its type (``arn:aws:s3``, ...)."""
    service = DATA_RESOURCE_SERVICES[resource_type]
    return value == f"arn:{partition}:{service}" or (service == "s3" and value == f"arn:{partition}:s3:::")


def basic_selectors_problem(selectors: Sequence[dict[str, Any]], partition: str) -> Problem | None:
    """The first way basic ``EventSelectors`` break CloudTrail's rules (docs/cloudtrail.md §6.2), or None."""
    if not 1 <= len(selectors) <= MAX_BASIC_SELECTORS:
        return "EventSelectors", f"a trail takes 1 to {MAX_BASIC_SELECTORS} event selectors (got {len(selectors)})"
    resources = 0
    for index, selector in enumerate(selectors):
        path = f"EventSelectors[{index}]"
        excluded = selector.get("ExcludeManagementEventSources", [])
        for position, source in enumerate(excluded):
            if source not in EXCLUDABLE_SOURCES:
                return (f"{path}.ExcludeManagementEventSources[{position}]",
                        f"only {' and '.join(EXCLUDABLE_SOURCES)} can be excluded (got {shown(source)})")
        if excluded and not selector.get("IncludeManagementEvents", True):
            return (f"{path}.ExcludeManagementEventSources",
                    "excluding event sources needs IncludeManagementEvents true")
        for position, data_resource in enumerate(selector.get("DataResources", [])):
            problem, count = _data_resource_problem(data_resource, partition, f"{path}.DataResources[{position}]")
            if problem:
                return problem
            resources += count
    if resources > MAX_DATA_RESOURCES:
        return "EventSelectors", f"at most {MAX_DATA_RESOURCES} data resources per trail (got {resources})"
    return None


def _data_resource_problem(data_resource: dict[str, Any], partition: str, path: str) -> tuple[Problem | None, int]:
    """The data resource's first problem, and how many resources it counts toward the trail's limit."""
    resource_type = data_resource.get("Type")
    if resource_type is None:
        return (f"{path}.Type", "is required"), 0
    if resource_type not in DATA_RESOURCE_SERVICES:
        return (f"{path}.Type", f"must be one of {', '.join(DATA_RESOURCE_SERVICES)} with basic selectors; "
                f"other types need advanced event selectors (got {shown(resource_type)})"), 0
    values = data_resource.get("Values", [])
    if not values:
        return (f"{path}.Values", "needs at least one value"), 0
    service = DATA_RESOURCE_SERVICES[resource_type]
    form, example = _RESOURCE_FORMS[service]
    count = 0
    for position, value in enumerate(values):
        if all_resources_value(value, resource_type, partition):
            continue
        if not re.fullmatch(re.escape(f"arn:{partition}:{service}") + form, value, re.DOTALL):
            every = f"arn:{partition}:{service}"
            return (f"{path}.Values[{position}]", f"{shown(value)} is not a {resource_type} value "
                    f"(use {every} for all, or {example.format(p=partition)})"), 0
        count += 1
    return None, count


def advanced_selectors_problem(selectors: Sequence[dict[str, Any]]) -> Problem | None:
    """The first way ``AdvancedEventSelectors`` break CloudTrail's trail rules (docs/cloudtrail.md §6.3), or None."""
    if not selectors:
        return "AdvancedEventSelectors", "needs at least one advanced event selector"
    values = resources = 0
    for index, selector in enumerate(selectors):
        path = f"AdvancedEventSelectors[{index}]"
        field_selectors = selector["FieldSelectors"]
        category, problem = _category(field_selectors, path)
        if problem:
            return problem
        for position, field_selector in enumerate(field_selectors):
            problem = _field_selector_problem(field_selector, category, f"{path}.FieldSelectors[{position}]")
            if problem:
                return problem
            counts = [len(field_selector.get(operator, ())) for operator in _ANY]
            values += sum(counts)
            if field_selector["Field"] == "resources.ARN":
                resources += sum(counts)
        problem = _required_fields_problem(field_selectors, category, path)
        if problem:
            return problem
    if values > MAX_ADVANCED_VALUES:
        return "AdvancedEventSelectors", f"at most {MAX_ADVANCED_VALUES} values per trail (got {values})"
    if resources > MAX_DATA_RESOURCES:
        return ("AdvancedEventSelectors",
                f"at most {MAX_DATA_RESOURCES} resources.ARN values per trail (got {resources})")
    return None


def selector_category(field_selectors: Sequence[dict[str, Any]]) -> str:
    """The eventCategory a valid advanced selector selects."""
    return next(fs["Equals"][0] for fs in field_selectors if fs["Field"] == "eventCategory")


def _category(field_selectors: Sequence[dict[str, Any]], path: str) -> tuple[str, Problem | None]:
    positions = [i for i, fs in enumerate(field_selectors) if fs["Field"] == "eventCategory"]
    if not positions:
        return "", (f"{path}.FieldSelectors", "needs an eventCategory field selector")
    if len(positions) > 1:
        return "", (f"{path}.FieldSelectors[{positions[1]}]", "eventCategory may appear only once per selector")
    where = f"{path}.FieldSelectors[{positions[0]}]"
    field_selector = field_selectors[positions[0]]
    for operator in _ANY[1:]:
        if operator in field_selector:
            return "", (where, f"operator {operator} is not allowed for field eventCategory (Equals only)")
    equals = field_selector.get("Equals", [])
    if len(equals) != 1:
        return "", (f"{where}.Equals", f"eventCategory takes exactly one value (got {len(equals)})")
    category = equals[0]
    if category in _STORE_ONLY_CATEGORIES:
        return "", (f"{where}.Equals[0]", f"eventCategory {category} is for event data stores, not trails")
    if category not in TRAIL_CATEGORIES:
        return "", (f"{where}.Equals[0]",
                    f"eventCategory must be one of {', '.join(TRAIL_CATEGORIES)} (got {shown(category)})")
    return category, None


def _field_selector_problem(field_selector: dict[str, Any], category: str, path: str) -> Problem | None:
    field = field_selector["Field"]
    allowed = FIELD_OPERATORS[category].get(field)
    if allowed is None:
        if field in _KNOWN_FIELDS:
            return path, f"field {field} is not allowed in {category} selectors of a trail"
        return path, f"unknown field {shown(field)} (trails allow: {', '.join(_KNOWN_FIELDS)})"
    operators = [operator for operator in _ANY if operator in field_selector]
    if not operators:
        return path, f"field {field} needs at least one operator ({', '.join(allowed)})"
    for operator in operators:
        if operator not in allowed:
            return path, f"operator {operator} is not allowed for field {field} ({' or '.join(allowed)} only)"
    for operator in operators:
        for position, value in enumerate(field_selector[operator]):
            rule = _value_rule(category, field, operator, value)
            if rule:
                return f"{path}.{operator}[{position}]", rule
    return None


def _value_rule(category: str, field: str, operator: str, value: str) -> str | None:
    if field == "readOnly" and value not in ("true", "false"):
        return f"readOnly takes 'true' or 'false' (got {shown(value)})"
    if field == "eventSource" and category == "Management" and value not in EXCLUDABLE_SOURCES:
        return f"management selectors can only exclude {' and '.join(EXCLUDABLE_SOURCES)} (got {shown(value)})"
    if field == "errorCode" and value != "VpceAccessDenied":
        return f"errorCode takes only VpceAccessDenied (got {shown(value)})"
    if field == "resources.type" and not _RESOURCE_TYPE.fullmatch(value):
        return f"resources.type takes a type like AWS::S3::Object (got {shown(value)})"
    if field == "resources.ARN" and operator in ("Equals", "NotEquals") and not _COMPLETE_ARN.fullmatch(value):
        return f"{operator} on resources.ARN takes complete ARNs (got {shown(value)})"
    return None


def _required_fields_problem(field_selectors: Sequence[dict[str, Any]], category: str, path: str) -> Problem | None:
    if category == "Data":
        types = [fs for fs in field_selectors if fs["Field"] == "resources.type"]
        if len(types) != 1:
            return (f"{path}.FieldSelectors",
                    f"a Data selector needs exactly one resources.type field (got {len(types)})")
        if len(types[0]["Equals"]) != 1:
            return (f"{path}.FieldSelectors", "resources.type takes exactly one value; "
                    "use one selector per resource type")
    if category == "NetworkActivity":
        sources = [fs for fs in field_selectors if fs["Field"] == "eventSource"]
        if len(sources) != 1 or len(sources[0]["Equals"]) != 1:
            return (f"{path}.FieldSelectors", "a NetworkActivity selector needs exactly one eventSource "
                    "with one Equals value; use one selector per event source")
    return None


class LoggedEvents(NamedTuple):
    """Which events a trail's selectors log, as Insights prerequisites need to know (docs/cloudtrail.md §9)."""

    management_read: bool
    management_write: bool
    data: bool


def logged_events(event_selectors: Sequence[dict[str, Any]] | None,
                  advanced_event_selectors: Sequence[dict[str, Any]] | None) -> LoggedEvents:
    """What valid selectors log; no selectors at all log every management event and no data event."""
    if advanced_event_selectors is not None:
        read = write = data = False
        for selector in advanced_event_selectors:
            category = selector_category(selector["FieldSelectors"])
            if category == "Management":
                read_only = {"true", "false"}
                for field_selector in selector["FieldSelectors"]:
                    if field_selector["Field"] == "readOnly":
                        read_only &= set(field_selector["Equals"])
                read = read or "true" in read_only
                write = write or "false" in read_only
            data = data or category == "Data"
        return LoggedEvents(read, write, data)
    if event_selectors is not None:
        read = write = data = False
        for selector in event_selectors:
            read_write = selector.get("ReadWriteType", "All")
            if selector.get("IncludeManagementEvents", True):
                read = read or read_write in ("All", "ReadOnly")
                write = write or read_write in ("All", "WriteOnly")
            data = data or bool(selector.get("DataResources"))
        return LoggedEvents(read, write, data)
    return LoggedEvents(True, True, False)
