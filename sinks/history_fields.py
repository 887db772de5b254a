"""What event history keeps of a record, and the fields LookupEvents shows and finds it by: pure, a few µs a record.

Kept: management events and Insights records (`history_category`); data and network-activity events are not
part of event history. The category comes from `record_category` (`kafkatrail.schemas.contract`), the rule every
stage uses: `eventCategory`, or for records older than eventVersion 1.07 `managementEvent` not false.

The fields (`lookup_fields`) are those of LookupEvents' `Event` plus where the event belongs:

- `EventId`, `EventName`, `EventSource`, `EventTime`, `AccessKeyId` (`userIdentity.accessKeyId`; an empty
  string counts as absent) and `ReadOnly` (`"true"`/`"false"` from the boolean `readOnly`, absent when the
  record has none). Insights records carry their event name and source in `insightDetails`.
- the account (`recipientAccountId`, the account whose event history holds the record) and the region
  (`awsRegion`).
- `Username` (`username`): AWS calls it "a user name or role name of the requester" and documents few cases,
  so kafkatrail's rule goes per `userIdentity.type`:

  - `Root`: `userName` (the account alias, which AWS records when one is set), else `root`. AWS's guide
    "Viewing CloudTrail events with the AWS CLI" shows `Username: root` for a Root record and looks events up
    with `Username=root`.
  - `AssumedRole`: the session name, the part of `arn` after its last `/`; without an ARN, the role
    (`sessionContext.sessionIssuer.userName`). aws-cli's `lookup-events` example shows the session name
    (`my-session-name`) of an AssumedRole record; the console guide's "role name" is the other reading, and
    the session name is the one that tells two callers of one role apart.
  - `FederatedUser`: the name given to GetFederationToken, the part of `arn` after its last `/`, else of
    `principalId` (`<account>:<name>`) after its `:`; like a role session.
  - `AWSService`: `invokedBy`, the calling service (`elasticbeanstalk.amazonaws.com`); the record names no
    other requester.
  - `AWSAccount`: `accountId`, the other account; the record holds no name of the caller there.
  - `IdentityCenterUser`: `onBehalfOf.userId`, the only identifier of the person the record holds.
  - `IAMUser` and every other type (`Role`, `Directory`, `SAMLUser`, `WebIdentityUser`, `Unknown`), or no
    type: `userName`, the record's own friendly name.

  A missing or empty value gives no Username: the Event omits it and no Username lookup finds the event.
  The choices for the types AWS does not document are kafkatrail's.
- `Resources` (`resources`): `(ResourceType, ResourceName)` for each entry of the record's `resources` that
  has an `ARN`: the type as the record gives it (`None` when it has none) and the ARN as the name. AWS also
  derives resources of its own from request parameters (and then shows short names such as an instance id);
  kafkatrail does not guess those. Repeated pairs count once, and at most `MAX_RESOURCES` (20) are kept: the
  first in the record's order. The same list is what the Event shows and what ResourceType and ResourceName
  lookups match, so a lookup finds exactly the events whose Resources show the value.

Speed: the history worker derives these for every record it stores (tens of thousands a second), so the
derivation reads each field once, checks types with `type(...) is str` rather than a loop, and parses
`eventTime` with `event_time_ms` (`datetime.fromisoformat`, which measured faster than slicing the digits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kafkatrail.schemas.contract import event_time_ms, record_category

MAX_RESOURCES = 20
_CATEGORIES = {"Management": "management", "Insight": "insight"}
_READ_ONLY: dict[Any, str] = {True: "true", False: "false"}

Resources = list[tuple[str | None, str]]


class LookupFields(NamedTuple):
    """The fields event history stores for one kept record."""

    event_id: str
    event_name: str
    read_only: str | None
    access_key_id: str | None
    event_time_ms: int
    event_source: str
    username: str | None
    resources: Resources
    account: str
    region: str
    category: str


def history_category(record: Mapping[str, Any]) -> str | None:
    """`management` or `insight` for a record event history keeps; None for data and network-activity events."""
    return _CATEGORIES.get(record_category(record))


def username(record: Mapping[str, Any]) -> str | None:
    """The Username LookupEvents shows for `record` (the rule per identity type is in the module docstring)."""
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping):
        return None
    kind = identity.get("type")
    rule = _USERNAME_RULES.get(kind, _user_name) if isinstance(kind, str) else _user_name
    return rule(identity)


def resources(record: Mapping[str, Any]) -> Resources:
    """(ResourceType, ResourceName) of each resource of `record` with an ARN, at most MAX_RESOURCES, no repeats."""
    entries = record.get("resources")
    if not entries or not isinstance(entries, list):
        return []
    found: Resources = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        name = _text(entry.get("ARN"))
        if name is None:
            continue
        pair = (_text(entry.get("type")), name)
        if pair not in found:
            found.append(pair)
            if len(found) == MAX_RESOURCES:
                break
    return found


def lookup_fields(record: Mapping[str, Any]) -> LookupFields | None:
    """Everything event history stores and matches of `record`; None when the record is not kept: not management
    or Insights, or lacking a field LookupEvents needs (which validation would have refused)."""
    category = history_category(record)
    if category is None:
        return None
    try:
        named = record["insightDetails"] if category == "insight" else record
        event_id, event_name, event_source = record["eventID"], named["eventName"], named["eventSource"]
        account, region = record["recipientAccountId"], record["awsRegion"]
        if not (type(event_id) is str and type(event_name) is str and type(event_source) is str
                and type(account) is str and type(region) is str):
            return None
        identity = record.get("userIdentity")
        access_key_id = _text(identity.get("accessKeyId")) if isinstance(identity, Mapping) else None
        return LookupFields(event_id, event_name, _READ_ONLY.get(record.get("readOnly")), access_key_id,
                            event_time_ms(record["eventTime"]), event_source, username(record), resources(record),
                            account, region, category)
    except (KeyError, TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _user_name(identity: Mapping[str, Any]) -> str | None:
    return _text(identity.get("userName"))


def _root(identity: Mapping[str, Any]) -> str | None:
    return _user_name(identity) or "root"


def _after_last_slash(identity: Mapping[str, Any]) -> str | None:
    arn = _text(identity.get("arn"))
    return _text(arn.rpartition("/")[2]) if arn is not None and "/" in arn else None


def _session_name(identity: Mapping[str, Any]) -> str | None:
    name = _after_last_slash(identity)
    if name is not None:
        return name
    context = identity.get("sessionContext")
    issuer = context.get("sessionIssuer") if isinstance(context, Mapping) else None
    return _user_name(issuer) if isinstance(issuer, Mapping) else None


def _federated_name(identity: Mapping[str, Any]) -> str | None:
    name = _after_last_slash(identity)
    if name is not None:
        return name
    principal = _text(identity.get("principalId"))
    return _text(principal.partition(":")[2]) if principal is not None else None


def _invoked_by(identity: Mapping[str, Any]) -> str | None:
    return _text(identity.get("invokedBy"))


def _account(identity: Mapping[str, Any]) -> str | None:
    return _text(identity.get("accountId"))


def _identity_center_user(identity: Mapping[str, Any]) -> str | None:
    on_behalf_of = identity.get("onBehalfOf")
    return _text(on_behalf_of.get("userId")) if isinstance(on_behalf_of, Mapping) else None


_USERNAME_RULES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "Root": _root,
    "AssumedRole": _session_name,
    "FederatedUser": _federated_name,
    "AWSService": _invoked_by,
    "AWSAccount": _account,
    "IdentityCenterUser": _identity_center_user,
}
