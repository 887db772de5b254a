"""LookupEvents (event history) as pure logic: the request checked into a store `Lookup`, the `Event` shape, and
the NextToken.

Request rules (AWS's, docs/cloudtrail.md §10): at most one lookup attribute; with `EventCategory=insight` only
EventId, EventName and EventSource; MaxResults 1 to 50 (default 50); StartTime defaults to the oldest event kept
(`history.retention_days` back), EndTime to now, and StartTime after EndTime is refused. Every refusal is an
AWS error code naming the member and the rule.

NextToken
    A token is the position after the last event of its page (event time and a tiebreak, `Lookup.after`),
    the digest of the request it continues (every member but NextToken, and the caller's account and region)
    and an HMAC-SHA256 over both, keyed with the caller's secret access key. So a token is opaque to its reader,
    cannot be altered or forged without the secret, is refused when replayed with other parameters or by
    another caller (`InvalidNextTokenException`), and is accepted by any API server with the same credentials
    file. Positions make pages stable: events stored after the first page are newer than its cursor or outside
    it, so the pages of one lookup never repeat an event, and together they hold what the store held.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from kafkatrail.api.errors import ApiError
from kafkatrail.sinks.history_store import ATTRIBUTE_KEYS, INSIGHT_ATTRIBUTE_KEYS, Lookup, StoredEvent

DEFAULT_MAX_RESULTS = 50
MAX_RESULTS = 50
DAY_MS = 86_400_000
_TOKEN_MAC_BYTES = 16


def _timestamp_ms(value: Any, member: str) -> int:
    """A timestamp member as botocore sends it on the JSON protocol (epoch seconds) to epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return int(value * 1000)
    raise ApiError("InvalidTimeRangeException", f"{member}: must be a timestamp in epoch seconds")


def lookup_of(body: Mapping[str, Any], account: str, region: str, now_ms: int, retention_days: int,
              token_key: bytes) -> Lookup:
    """The store lookup `body` (a LookupEvents request) asks for, in `account` and `region`; raises ApiError."""
    category = body.get("EventCategory")
    if category is not None and category != "insight":
        raise ApiError("InvalidEventCategoryException", "EventCategory: the only value is 'insight'")
    attributes = body.get("LookupAttributes") or []
    if len(attributes) > 1:
        raise ApiError("InvalidLookupAttributesException",
                       f"LookupAttributes: at most one attribute per lookup (got {len(attributes)})")
    attribute: tuple[str, str] | None = None
    if attributes:
        key, value = attributes[0]["AttributeKey"], attributes[0]["AttributeValue"]
        allowed = INSIGHT_ATTRIBUTE_KEYS if category == "insight" else ATTRIBUTE_KEYS
        if key not in allowed:
            raise ApiError("InvalidLookupAttributesException",
                           f"LookupAttributes[0].AttributeKey: must be one of {', '.join(allowed)}"
                           f"{' for Insights events' if category else ''}")
        attribute = (key, value)
    limit = body.get("MaxResults", DEFAULT_MAX_RESULTS)
    if not 1 <= limit <= MAX_RESULTS:
        raise ApiError("InvalidMaxResultsException", f"MaxResults: must be 1 to {MAX_RESULTS} (got {limit})")
    oldest_ms = now_ms - retention_days * DAY_MS
    start_ms = _timestamp_ms(body["StartTime"], "StartTime") if "StartTime" in body else oldest_ms
    end_ms = _timestamp_ms(body["EndTime"], "EndTime") if "EndTime" in body else now_ms
    if start_ms > end_ms:
        raise ApiError("InvalidTimeRangeException", "StartTime: must not be after EndTime")
    lookup = Lookup(account=account, region=region, category="insight" if category else "management",
                    start_ms=max(start_ms, oldest_ms), end_ms=end_ms, attribute=attribute, limit=limit, after=None)
    token = body.get("NextToken")
    if token is None:
        return lookup
    return Lookup(**{**vars(lookup), "after": _position(token, _request_digest(body, account, region), token_key)})


def event_of(stored: StoredEvent) -> dict[str, Any]:
    """The `Event` of a LookupEvents response (botocore's shape), `CloudTrailEvent` the record's JSON text."""
    event: dict[str, Any] = {"EventId": stored.event_id, "EventName": stored.event_name,
                             "EventTime": stored.event_time_ms / 1000, "EventSource": stored.event_source,
                             "Resources": [{"ResourceName": name} if kind is None else
                                           {"ResourceType": kind, "ResourceName": name}
                                           for kind, name in stored.resources],
                             "CloudTrailEvent": stored.record.decode()}
    if stored.read_only is not None:
        event["ReadOnly"] = stored.read_only
    if stored.access_key_id is not None:
        event["AccessKeyId"] = stored.access_key_id
    if stored.username is not None:
        event["Username"] = stored.username
    return event


def next_token(body: Mapping[str, Any], account: str, region: str, after: tuple[int, int], token_key: bytes) -> str:
    """The NextToken that continues `body`'s lookup after the position `after`."""
    payload = orjson.dumps({"after": list(after), "request": _request_digest(body, account, region)})
    mac = hmac.new(token_key, payload, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


def _request_digest(body: Mapping[str, Any], account: str, region: str) -> str:
    request = {name: value for name, value in body.items() if name != "NextToken"}
    canonical = orjson.dumps({"account": account, "region": region, "request": request}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _position(token: Any, digest: str, token_key: bytes) -> tuple[int, int]:
    refused = ApiError("InvalidNextTokenException", "NextToken: not a token this endpoint issued for this request "
                       "(a token is valid only with the same parameters, for the same caller)")
    if not isinstance(token, str) or token.count(".") != 1:
        raise refused
    try:
        parts = token.split(".")
        payload, mac = (base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in parts)
        if [_b64(payload), _b64(mac)] != parts:  # base64 ignores a last character's spare bits; a token does not
            raise refused
        expected = hmac.new(token_key, payload, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise refused
        content = orjson.loads(payload)
        time_ms, tiebreak = content["after"]
        if content["request"] != digest or not isinstance(time_ms, int) or not isinstance(tiebreak, int):
            raise refused
    except (ValueError, binascii.Error, KeyError, TypeError, orjson.JSONDecodeError):
        raise refused from None
    return time_ms, tiebreak


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
