"""Which trails log a record: CloudTrail's scope rules and event selector semantics, compiled per trail.

Runs per event per trail, so each trail is compiled once into closures over frozensets and tuples;
matching allocates nothing. Records are validated CloudTrail records (``kafkatrail.schemas.validation``):
plain dicts, ``readOnly`` a bool, ``resources`` a list of ``{"ARN", "type", "accountId"}``.

Scope (docs/cloudtrail.md §6.1), checked before selectors:

* a trail that is not logging matches nothing;
* a single-region trail sees only records whose ``awsRegion`` is its home region;
* a global service event is a record from ``iam``, ``sts`` or ``cloudfront.amazonaws.com`` with
  ``awsRegion`` us-east-1 (where AWS records them, docs/cloudtrail.md §6.1); a trail with
  IncludeGlobalServiceEvents false never sees one (the others see them by region scope: multi-region
  trails, and single-region trails homed in us-east-1). STS calls to regional endpoints are recorded
  in their region and are ordinary regional events. Only partition ``aws`` has a documented global
  region; in other partitions no record counts as a global service event;
* an organization trail sees every account; any other trail only records whose
  ``recipientAccountId`` is its account;
* Insights records (eventCategory ``Insight``) are never selected.

A record without ``eventCategory`` (before eventVersion 1.07) is classified by ``managementEvent``
(1.06): false means Data, true or absent Management (kafkatrail's choice; AWS's record reference is silent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from kafkatrail.schemas.contract import record_category
from kafkatrail.trails.model import Trail
from kafkatrail.trails.selector_rules import (
    DATA_RESOURCE_SERVICES,
    DESELECT_OPERATORS,
    SELECT_OPERATORS,
    all_resources_value,
    selector_category,
)

Record = Mapping[str, Any]
Check = Callable[[Record], bool]

GLOBAL_SERVICE_SOURCES: Final = frozenset({"iam.amazonaws.com", "sts.amazonaws.com", "cloudfront.amazonaws.com"})
GLOBAL_SERVICE_REGIONS: Final = {"aws": "us-east-1"}
_READ_ONLY_STATES: Final = (True, False, None)  # readOnly true, false, absent


class TrailMatcher:
    """A trail compiled for matching; ``matches(record)`` says whether the trail logs the record."""

    __slots__ = ("matches", "trail")

    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self.matches: Check = _compile(trail)


def select_trails(matchers: Iterable[TrailMatcher], record: Record) -> list[Trail]:
    """The trails among ``matchers`` that log ``record``, in the order given."""
    return [matcher.trail for matcher in matchers if matcher.matches(record)]


class Selection:
    """The trails currently running, keyed by trail ARN, as the compacted trails topic updates them."""

    def __init__(self, trails: Iterable[Trail] = ()) -> None:
        self._matchers: dict[str, TrailMatcher] = {}
        self._checks: tuple[tuple[Trail, Check], ...] = ()
        for trail in trails:
            self.update(trail)

    def update(self, trail: Trail) -> None:
        """Add ``trail``, or replace the trail with its ARN."""
        self._matchers[trail.arn] = TrailMatcher(trail)
        self._refresh()

    def remove(self, arn: str) -> None:
        """Forget the trail with ``arn`` (a tombstone on the topic); unknown ARNs are ignored."""
        if self._matchers.pop(arn, None) is not None:
            self._refresh()

    def trails(self) -> list[Trail]:
        """The trails held, in the order they were first added."""
        return [matcher.trail for matcher in self._matchers.values()]

    def select(self, record: Record) -> list[Trail]:
        """The trails that log ``record``."""
        return [trail for trail, matches in self._checks if matches(record)]

    def _refresh(self) -> None:
        self._checks = tuple((matcher.trail, matcher.matches) for matcher in self._matchers.values())


def _never(record: Record) -> bool:
    return False


def _always(record: Record) -> bool:
    return True


def _compile(trail: Trail) -> Check:
    if not trail.logging:
        return _never
    if trail.advanced_event_selectors is not None:
        by_category = _compile_advanced(trail.advanced_event_selectors)
    elif trail.event_selectors is not None:
        by_category = _compile_basic(trail.event_selectors, trail.partition)
    else:
        by_category = {"Management": _always}
    home = None if trail.is_multi_region_trail else trail.home_region
    account = None if trail.is_organization_trail else trail.account_id
    hidden_global_region = None if trail.include_global_service_events else GLOBAL_SERVICE_REGIONS.get(trail.partition)
    global_sources = GLOBAL_SERVICE_SOURCES

    def matches(record: Record) -> bool:
        region = record.get("awsRegion")
        if home is not None and region != home:
            return False
        if account is not None and record.get("recipientAccountId") != account:
            return False
        if (hidden_global_region is not None and region == hidden_global_region
                and record.get("eventSource") in global_sources):
            return False
        check = by_category.get(record_category(record))
        return check is not None and check(record)

    return matches


# Basic selectors (docs/cloudtrail.md §6.2): merged across the trail's selectors per readOnly state, so one record
# needs one dict lookup per part.

def _admits(read_write_type: str, read_only: bool | None) -> bool:
    if read_write_type == "All":
        return True
    return read_only is (read_write_type == "ReadOnly")


def _compile_basic(selectors: Iterable[Mapping[str, Any]], partition: str) -> dict[str, Check]:
    selectors = tuple(selectors)
    # readOnly state -> event sources every admitting selector excludes (a record's source must avoid them).
    management: dict[bool | None, frozenset[str]] = {}
    # readOnly state -> resource type -> (exact ARNs, ARN prefixes).
    data: dict[bool | None, dict[str, tuple[frozenset[str], tuple[str, ...]]]] = {}
    for state in _READ_ONLY_STATES:
        admitting = [s for s in selectors if _admits(s.get("ReadWriteType", "All"), state)]
        exclusions = [frozenset(s.get("ExcludeManagementEventSources", ())) for s in admitting
                      if s.get("IncludeManagementEvents", True)]
        if exclusions:
            management[state] = frozenset.intersection(*exclusions)
        table = _resource_table(admitting, partition)
        if table:
            data[state] = table
    checks: dict[str, Check] = {}
    if management:
        checks["Management"] = _basic_management(management)
    if data:
        checks["Data"] = _basic_data(data)
    return checks


def _resource_table(selectors: Iterable[Mapping[str, Any]],
                    partition: str) -> dict[str, tuple[frozenset[str], tuple[str, ...]]]:
    exact: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}
    for selector in selectors:
        for data_resource in selector.get("DataResources", ()):
            kind = data_resource["Type"]
            for value in data_resource["Values"]:
                # S3 values are key prefixes; the "all" forms (arn:aws:lambda, ...) prefix every ARN of
                # their type; other Lambda and DynamoDB values name one resource exactly.
                if DATA_RESOURCE_SERVICES[kind] == "s3" or all_resources_value(value, kind, partition):
                    prefixes.setdefault(kind, set()).add(value)
                else:
                    exact.setdefault(kind, set()).add(value)
    return {kind: (frozenset(exact.get(kind, ())), tuple(sorted(prefixes.get(kind, ()))))
            for kind in exact.keys() | prefixes.keys()}


def _basic_management(excluded_by_state: dict[bool | None, frozenset[str]]) -> Check:
    if len(excluded_by_state) == len(_READ_ONLY_STATES) and not any(excluded_by_state.values()):
        return _always

    def management(record: Record) -> bool:
        excluded = excluded_by_state.get(record.get("readOnly"))
        return excluded is not None and record.get("eventSource") not in excluded

    return management


def _basic_data(tables: dict[bool | None, dict[str, tuple[frozenset[str], tuple[str, ...]]]]) -> Check:
    def data(record: Record) -> bool:
        table = tables.get(record.get("readOnly"))
        if table is None:
            return False
        for resource in record.get("resources") or ():
            entry = table.get(resource.get("type"))
            if entry is not None:
                arn = resource.get("ARN")
                if arn is not None and (arn in entry[0] or arn.startswith(entry[1])):
                    return True
        return False

    return data


# Advanced selectors (docs/cloudtrail.md §6.3): one check per selector, grouped by the eventCategory it selects;
# SELECT operators OR'd, DESELECT operators excluding, field selectors AND'd, selectors OR'd.

def _compile_advanced(selectors: Iterable[Mapping[str, Any]]) -> dict[str, Check]:
    by_category: dict[str, list[Check]] = {}
    for selector in selectors:
        field_selectors = selector["FieldSelectors"]
        by_category.setdefault(selector_category(field_selectors), []).append(_compile_selector(field_selectors))
    return {category: _any_of(checks) for category, checks in by_category.items()}


def _any_of(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    alternatives = tuple(checks)

    def any_selector(record: Record) -> bool:
        for check in alternatives:  # noqa: SIM110 - any() over a generator allocates per event
            if check(record):
                return True
        return False

    return any_selector


def _compile_selector(field_selectors: Iterable[Mapping[str, Any]]) -> Check:
    checks: list[Check] = []
    resource_tests: list[tuple[str, Callable[[str | None], bool]]] = []
    for field_selector in field_selectors:
        field = field_selector["Field"]
        if field == "eventCategory":
            continue  # the category dispatch has settled it
        if field.startswith("resources."):
            resource_tests.append((field.removeprefix("resources."), _value_test(field_selector)))
        else:
            checks.append(_record_check(field, field_selector))
    if resource_tests:
        checks.append(_resources_check(tuple(resource_tests)))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    conditions = tuple(checks)

    def every_field(record: Record) -> bool:
        for check in conditions:  # noqa: SIM110 - all() over a generator allocates per event
            if not check(record):
                return False
        return True

    return every_field


def _identity_arn(record: Record) -> str | None:
    identity = record.get("userIdentity")
    arn = identity.get("arn") if isinstance(identity, dict) else None
    return arn if isinstance(arn, str) else None


def _record_check(field: str, field_selector: Mapping[str, Any]) -> Check:
    if field == "readOnly":  # "true"/"false" against the record's boolean; Equals is its only operator
        states = frozenset(value == "true" for value in field_selector["Equals"])
        return lambda record: record.get("readOnly") in states
    test = _value_test(field_selector)
    if field == "userIdentity.arn":
        return lambda record: test(_identity_arn(record))
    if field_selector.keys() & set(SELECT_OPERATORS + DESELECT_OPERATORS) == {"Equals"}:
        equals = frozenset(field_selector["Equals"])
        return lambda record: record.get(field) in equals
    return lambda record: test(record.get(field))


def _resources_check(tests: tuple[tuple[str, Callable[[str | None], bool]], ...]) -> Check:
    """Some one entry of ``resources`` must pass every resources.* field selector (docs/cloudtrail.md §6.3)."""

    def resources(record: Record) -> bool:
        for resource in record.get("resources") or ():
            for key, test in tests:
                if not test(resource.get(key)):
                    break
            else:
                return True
        return False

    return resources


def _value_test(field_selector: Mapping[str, Any]) -> Callable[[str | None], bool]:
    """One field selector on one value; an absent value fails every SELECT and passes every DESELECT."""
    equals, not_equals = (frozenset(field_selector.get(op, ())) for op in ("Equals", "NotEquals"))
    starts, ends, not_starts, not_ends = (
        tuple(field_selector.get(op, ())) for op in ("StartsWith", "EndsWith", "NotStartsWith", "NotEndsWith")
    )
    selecting = bool(equals or starts or ends)

    def test(value: str | None) -> bool:
        if value is None:
            return not selecting
        if selecting and not (value in equals or value.startswith(starts) or value.endswith(ends)):
            return False
        return not (value in not_equals or value.startswith(not_starts) or value.endswith(not_ends))

    return test
