"""Checks an incoming CloudTrail record passes before it is produced.

:func:`validate_event` takes the record as a ``dict`` or as its JSON text (``bytes``/``str``) and
returns the record as a ``dict``; anything wrong raises :class:`InvalidEventError`, whose message
names the field and the rule, e.g.
``eventTime: must be an ISO-8601 UTC timestamp like 2024-08-01T13:33:28Z (got '2024-13-01')``.

The rules are kafkatrail's choices, drawn from spec/records.md (§1-§4 and the suggested checks
of §9); they are strict where the pipeline depends on a field and lenient elsewhere:

* Input: bytes must be UTF-8 (rule ``utf8``), parse as strict JSON (``json``; orjson: no NaN, no
  comments, no trailing commas) and hold an object (``object``).
* Size (``size``): at most 256 KiB = 262,144 bytes, counted as the UTF-8 length of the record's
  compact JSON serialisation (no whitespace), which is what kafkatrail writes to log files and
  CloudWatch Logs. CloudTrail documents "256 KB" without saying how it counts; pretty-printed
  input is therefore not penalised for its whitespace.
* Required (``required``; missing or JSON null): ``eventVersion``, ``eventTime``, ``eventSource``,
  ``eventName``, ``awsRegion``, ``eventID``, ``eventType``, ``eventCategory`` (spec §9) and
  ``recipientAccountId``; ``eventCategory`` only from eventVersion 1.07, which introduced it, so
  older log files still replay. The spec lists ``recipientAccountId`` as optional (it appeared in 1.02),
  but kafkatrail requires it: log files are delivered per account and region, and that account
  is the recipient account. Insights records (``eventCategory`` ``Insight``) have no
  ``eventSource``/``eventName``; they need ``insightDetails`` instead. ``userIdentity``,
  ``sourceIPAddress``, ``requestParameters`` and ``responseElements`` are "always" present in
  AWS's table but are not required (AWS itself emits unusual shapes; §9 says be lenient).
* Types (``type``) of every known top-level field; ``resources`` must be an array of objects whose
  ``ARN``/``accountId``/``type`` are strings. An optional field may be JSON null (kept as is).
  Unknown fields are allowed (newer eventVersions add fields).
* Non-empty strings (``non_empty``): ``eventSource``, ``eventName``, ``eventType``.
* Formats (``format``): ``eventVersion`` is ``<major>.<minor>`` digits with major 1 (a different
  major: rule ``major_version``); ``eventTime`` is ``YYYY-MM-DDTHH:MM:SSZ`` and a real UTC date and
  time; ``eventID`` and ``sharedEventID`` are GUIDs (8-4-4-4-12 hex digits, either case);
  ``recipientAccountId`` is 12 ASCII digits; ``eventCategory`` is one of Management, Data,
  NetworkActivity, Insight (rule ``allowed_values``).
* Region (``format``): ``awsRegion`` must be a well-formed region name, not a member of a list:
  lowercase letters, then one to three lowercase words, then a number of one or two digits and an
  optional lowercase letter, joined by hyphens (``us-east-1``, ``us-gov-west-1``,
  ``us-isob-east-1``, ``sagov-westsouth-1r``). New regions appear every year and partitions (gov,
  iso, China) differ, so a fixed list would reject real input; the anonymised real test data uses
  fake but well-formed names such as ``sagov-westsouth-1r``.

Known limit: JSON text is parsed with orjson, which reads integers outside [-2**63, 2**64) as
floats; CloudTrail records do not carry such numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

__all__ = [
    "INSIGHT_REQUIRED_FIELDS",
    "MAX_RECORD_BYTES",
    "REQUIRED_FIELDS",
    "InvalidEventError",
    "parse_event",
    "validate_event",
]

MAX_RECORD_BYTES: Final = 256 * 1024

REQUIRED_FIELDS: Final = (
    "eventVersion",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "eventID",
    "eventType",
    "eventCategory",
    "recipientAccountId",
)
INSIGHT_REQUIRED_FIELDS: Final = (
    "eventVersion",
    "eventTime",
    "awsRegion",
    "eventID",
    "eventType",
    "eventCategory",
    "recipientAccountId",
    "insightDetails",
)
EVENT_CATEGORIES: Final = frozenset({"Management", "Data", "NetworkActivity", "Insight"})

_STRING_FIELDS = (
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "errorMessage", "requestID", "eventID", "eventType", "apiVersion",
    "recipientAccountId", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
    "eventCategory", "sessionCredentialFromConsole",
)  # fmt: skip
_OBJECT_FIELDS = (
    "userIdentity", "requestParameters", "responseElements", "additionalEventData",
    "serviceEventDetails", "addendum", "edgeDeviceDetails", "tlsDetails", "insightDetails",
    "eventContext",
)  # fmt: skip
_FIELD_TYPES: Final[dict[str, type]] = {
    **dict.fromkeys(_STRING_FIELDS, str),
    **dict.fromkeys(_OBJECT_FIELDS, dict),
    "readOnly": bool,
    "managementEvent": bool,
    "resources": list,
}
_NON_EMPTY: Final = ("eventSource", "eventName", "eventType")
_RESOURCE_STRINGS: Final = ("ARN", "accountId", "type")

_EVENT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z]+){1,3}-[0-9]{1,2}[a-z]?")
_EVENT_VERSION = re.compile(r"([0-9]+)\.[0-9]+")

# Re-serialising JSON text compactly can only grow it by rewriting numbers (1e9 -> 1000000000.0),
# by less than 8x; text up to MAX/8 bytes therefore cannot exceed MAX and is not measured.
_GROWTH_BOUND: Final = 8
_UTF8_MAX_BYTES_PER_CHAR: Final = 4


class InvalidEventError(ValueError):
    """A record broke a validation rule: ``field`` (``record`` for the whole input) and ``rule``."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.detail = message

    def as_dict(self) -> dict[str, str]:
        """``{"field", "rule", "message"}``, e.g. for a dead-letter record."""
        return {"field": self.field, "rule": self.rule, "message": str(self)}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else f"{_json_type(value)} {value!r}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_NAMES: Final = {str: "a string", dict: "an object", bool: "a boolean", list: "an array"}
_TEXT_TYPES: Final = (bytes, bytearray, memoryview, str)


def parse_event(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a record's JSON text; raise :class:`InvalidEventError` unless it is a JSON object."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _raise_encoding_error(data)
        raise InvalidEventError("record", "json", f"is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InvalidEventError("record", "object", f"must be a JSON object (got {_json_type(record)})")
    return record


def _raise_encoding_error(data: bytes | bytearray | memoryview | str) -> None:
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(
                "record", "utf8", f"is not valid UTF-8 (lone surrogate at character {exc.start})"
            ) from None
        return
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(data)[exc.start]
        raise InvalidEventError(
            "record", "utf8", f"is not valid UTF-8 (byte 0x{bad:02X} at offset {exc.start})"
        ) from None


def _serialized_size(record: Mapping[str, Any]) -> int:
    try:
        return len(orjson.dumps(record))
    except TypeError:
        pass  # integers beyond 64 bits, or a value JSON cannot hold
    try:
        return len(json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidEventError("record", "json", f"holds a value JSON cannot represent ({exc})") from None


def validate_event(
    event: Mapping[str, Any] | bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = MAX_RECORD_BYTES,
) -> dict[str, Any]:
    """Validate one CloudTrail record (dict or JSON text) and return it as a dict.

    Raises :class:`InvalidEventError` naming the first field and rule that failed.
    """
    if isinstance(event, _TEXT_TYPES):
        record = parse_event(event)
        bound = len(event) * (_UTF8_MAX_BYTES_PER_CHAR if isinstance(event, str) else 1)
        size = _serialized_size(record) if bound * _GROWTH_BOUND > max_bytes else 0
    elif isinstance(event, dict):
        record = event
        size = _serialized_size(record)
    elif isinstance(event, Mapping):
        record = dict(event)
        size = _serialized_size(record)
    else:
        raise InvalidEventError("record", "object", f"must be a JSON object (got {_json_type(event)})")
    if size > max_bytes:
        raise InvalidEventError(
            "record", "size", f"is {size:,} bytes as compact JSON; the limit is {max_bytes:,} bytes"
        )
    _check_record(record)
    return record


def _predates_event_category(version: Any) -> bool:
    """eventCategory arrived in eventVersion 1.07; replayed older log files do not carry it."""
    return isinstance(version, str) and version.startswith("1.") and version[2:].isdigit() and int(version[2:]) < 7


def _check_record(record: dict[str, Any]) -> None:
    expected_type = _FIELD_TYPES.get
    for name, value in record.items():
        expected = expected_type(name)
        if expected is None or type(value) is expected or value is None:
            continue
        if not isinstance(value, expected):
            raise InvalidEventError(name, "type", f"must be {_TYPE_NAMES[expected]} (got {_shown(value)})")

    category = record.get("eventCategory")
    required = INSIGHT_REQUIRED_FIELDS if category == "Insight" else REQUIRED_FIELDS
    for name in required:
        if name == "eventCategory" and _predates_event_category(record.get("eventVersion")):
            continue
        if record.get(name) is None:
            got = " (got null)" if name in record else ""
            raise InvalidEventError(name, "required", f"is required{got}")
    for name in _NON_EMPTY:
        if record.get(name) == "":
            raise InvalidEventError(name, "non_empty", "must be a non-empty string")

    version = record["eventVersion"]
    match = _EVENT_VERSION.fullmatch(version)
    if match is None:
        raise InvalidEventError(
            "eventVersion", "format", f"must be <major>.<minor> digits like 1.11 (got {_shown(version)})"
        )
    if match.group(1) != "1":
        raise InvalidEventError("eventVersion", "major_version", f"major version must be 1 (got {_shown(version)})")

    event_time = record["eventTime"]
    if _EVENT_TIME.fullmatch(event_time) is None or not _is_real_time(event_time):
        raise InvalidEventError(
            "eventTime",
            "format",
            f"must be an ISO-8601 UTC timestamp like 2024-08-01T13:33:28Z (got {_shown(event_time)})",
        )

    event_id = record["eventID"]
    if _GUID.fullmatch(event_id) is None:
        raise InvalidEventError(
            "eventID",
            "format",
            f"must be a GUID like 0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90 (got {_shown(event_id)})",
        )

    account = record["recipientAccountId"]
    if _ACCOUNT_ID.fullmatch(account) is None:
        raise InvalidEventError(
            "recipientAccountId", "format", f"must be a 12-digit AWS account id (got {_shown(account)})"
        )

    region = record["awsRegion"]
    if _REGION.fullmatch(region) is None:
        raise InvalidEventError(
            "awsRegion",
            "format",
            "must be a region name: lowercase words joined by hyphens ending in a number and an "
            f"optional letter, like eu-west-1 or us-gov-east-1 (got {_shown(region)})",
        )

    if category not in EVENT_CATEGORIES and not (category is None and _predates_event_category(version)):
        raise InvalidEventError(
            "eventCategory",
            "allowed_values",
            f"must be one of Management, Data, NetworkActivity, Insight (got {_shown(category)})",
        )

    shared = record.get("sharedEventID")
    if shared is not None and _GUID.fullmatch(shared) is None:
        raise InvalidEventError("sharedEventID", "format", f"must be a GUID (got {_shown(shared)})")

    resources = record.get("resources")
    if resources:
        _check_resources(resources)


def _is_real_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _check_resources(resources: list[Any]) -> None:
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            raise InvalidEventError(f"resources[{index}]", "type", f"must be an object (got {_shown(resource)})")
        for key in _RESOURCE_STRINGS:
            value = resource.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidEventError(f"resources[{index}].{key}", "type", f"must be a string (got {_shown(value)})")
