"""Validation of incoming CloudTrail records: each rule names its field and rule."""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafkatrail.schemas.validation import (
    INSIGHT_REQUIRED_FIELDS,
    MAX_RECORD_BYTES,
    REQUIRED_FIELDS,
    InvalidEventError,
    validate_event,
    validated_json,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "real"
STRATUS_FILES = sorted((DATA / "stratus-detonation-logs").glob("*.json"))


FULLWIDTH = {ord(d): 0xFF10 + int(d) for d in "0123456789"}  # "1" -> "\uff11": a Unicode digit, not ASCII
FULLWIDTH_ACCOUNT = "111122223333".translate(FULLWIDTH)


def valid_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.11",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER2", "accountId": "111122223333"},
        "eventTime": "2024-05-01T09:31:50Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.44",
        "userAgent": "aws-cli/2.15.0",
        "errorCode": "AccessDenied",
        "errorMessage": "not authorized",
        "requestParameters": {"userName": "temp-admin"},
        "responseElements": None,
        "requestID": "a1b2c3d4-0000-4000-8000-00000000beef",
        "eventID": "4c3b2a19-8f7e-4d6c-b5a4-39281706f5e4",
        "readOnly": False,
        "resources": [{"ARN": "arn:aws:iam::111122223333:user/temp-admin", "type": "AWS::IAM::User"}],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    record.update(changes)
    return record


def insight_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.11",
        "eventTime": "2024-05-01T14:02:00Z",
        "awsRegion": "eu-west-1",
        "eventID": "5b2a6c1e-8d47-4e0f-9a31-c2d4e6f8a0b1",
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": "111122223333",
        "sharedEventID": "e3f1a2b4-6c8d-4e0f-a1b3-c5d7e9f1a3b5",
        "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"},
        "eventCategory": "Insight",
    }
    record.update(changes)
    return record


def without(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != name}


def rejected(event: Any) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as caught:
        validate_event(event)
    return caught.value


# --------------------------------------------------------------------------------------------
# Accepted input


@pytest.mark.parametrize("path", STRATUS_FILES, ids=[p.name.removesuffix(".json") for p in STRATUS_FILES])
def test_every_real_record_is_valid_as_dict_and_as_bytes(path: Path) -> None:
    for record in json.loads(path.read_bytes()):
        assert validate_event(record) is record
        assert validate_event(orjson.dumps(record)) == record
        assert validate_event(json.dumps(record, indent=2)) == record


@pytest.mark.parametrize(
    "record",
    [
        valid_record(),
        valid_record(eventVersion="1.0"),
        valid_record(eventVersion="1.05"),
        valid_record(eventTime="2024-02-29T00:00:00Z"),
        valid_record(eventID="4C3B2A19-8F7E-4D6C-B5A4-39281706F5E4"),
        valid_record(newFieldFromVersion112={"any": ["shape"]}),
        valid_record(errorCode=None, resources=None, userIdentity=None),
        without(valid_record(), "userIdentity"),
        without(valid_record(), "requestParameters"),
        insight_record(),
        valid_record(eventType="AwsVpceEvents", eventCategory="NetworkActivity"),
    ],
    ids=[
        "spec-error-event",
        "version-1.0",
        "version-1.05",
        "leap-day",
        "upper-case-guid",
        "unknown-field",
        "null-optional-fields",
        "no-user-identity",
        "no-request-parameters",
        "insight-without-event-source-and-name",
        "network-activity",
    ],
)
def test_valid_records_pass(record: dict[str, Any]) -> None:
    assert validate_event(record) is record


@pytest.mark.parametrize(
    "region",
    [
        "us-east-1",
        "eu-west-1",
        "ap-southeast-5",
        "us-gov-west-1",
        "cn-northwest-1",
        "us-isob-east-1",
        "eu-isoe-west-1",
        "sagov-westsouth-1r",
        "ap-isob-central-3r",
        "ca-isob-northsouth-1r",
        "us-north-2r",
    ],
)
def test_well_formed_region_names_are_accepted_even_if_not_real(region: str) -> None:
    validate_event(valid_record(awsRegion=region))


# --------------------------------------------------------------------------------------------
# Rejected input: (event, field, rule, message fragment)

REJECTED: dict[str, tuple[Any, str, str, str]] = {
    # not JSON
    "empty-bytes": (b"", "record", "json", "is not valid JSON"),
    "truncated-json": (b'{"eventVersion": "1.11"', "record", "json", "is not valid JSON"),
    "single-quotes": ("{'eventVersion': '1.11'}", "record", "json", "is not valid JSON"),
    "trailing-comma": (b'{"a": 1,}', "record", "json", "is not valid JSON"),
    "nan-literal": (b'{"a": NaN}', "record", "json", "is not valid JSON"),
    # invalid UTF-8
    "invalid-utf8-byte": (b'{"eventName": "\xff"}', "record", "utf8", "byte 0xFF at offset 15"),
    "truncated-utf8-sequence": (b'{"eventName": "\xc3"}', "record", "utf8", "is not valid UTF-8"),
    "overlong-utf8": (b'{"eventName": "\xc0\xaf"}', "record", "utf8", "is not valid UTF-8"),
    "lone-surrogate-in-str": ('{"eventName": "\ud800"}', "record", "utf8", "lone surrogate"),
    # not an object
    "json-array": (b"[]", "record", "object", "must be a JSON object (got array)"),
    "json-number": (b"42", "record", "object", "(got number)"),
    "json-string": (b'"record"', "record", "object", "(got string)"),
    "json-null": (b"null", "record", "object", "(got null)"),
    "python-list": ([valid_record()], "record", "object", "(got array)"),
    # wrong types
    "eventTime-number": (valid_record(eventTime=1722376281), "eventTime", "type", "must be a string (got number"),
    "readOnly-string": (valid_record(readOnly="true"), "readOnly", "type", "must be a boolean (got 'true')"),
    "managementEvent-number": (valid_record(managementEvent=1), "managementEvent", "type", "must be a boolean"),
    "userIdentity-string": (valid_record(userIdentity="root"), "userIdentity", "type", "must be an object"),
    "requestParameters-array": (valid_record(requestParameters=[1]), "requestParameters", "type", "must be an object"),
    "resources-object": (valid_record(resources={"ARN": "a"}), "resources", "type", "must be an array"),
    "resources-item-string": (valid_record(resources=["arn:aws:s3:::b"]), "resources[0]", "type", "must be an object"),
    "resources-arn-number": (valid_record(resources=[{"ARN": 5}]), "resources[0].ARN", "type", "must be a string"),
    "eventID-number": (valid_record(eventID=123), "eventID", "type", "must be a string"),
    "account-as-number": (valid_record(recipientAccountId=111122223333), "recipientAccountId", "type", "string"),
    "tlsDetails-string": (valid_record(tlsDetails="TLSv1.3"), "tlsDetails", "type", "must be an object"),
    "userAgent-array": (valid_record(userAgent=["cli"]), "userAgent", "type", "must be a string (got array"),
    # empty strings
    "empty-eventSource": (valid_record(eventSource=""), "eventSource", "non_empty", "must be a non-empty string"),
    "empty-eventName": (valid_record(eventName=""), "eventName", "non_empty", "must be a non-empty string"),
    # required but null
    "eventID-null": (valid_record(eventID=None), "eventID", "required", "is required (got null)"),
    "insight-without-details": (without(insight_record(), "insightDetails"), "insightDetails", "required", "required"),
    # eventVersion
    "version-major-2": (valid_record(eventVersion="2.0"), "eventVersion", "major_version", "major version must be 1"),
    "version-no-minor": (valid_record(eventVersion="1"), "eventVersion", "format", "<major>.<minor>"),
    "version-prefixed": (valid_record(eventVersion="v1.08"), "eventVersion", "format", "<major>.<minor>"),
    # eventID, account, category, sharedEventID
    "eventID-not-guid": (valid_record(eventID="not-a-guid"), "eventID", "format", "must be a GUID"),
    "eventID-no-hyphens": (valid_record(eventID="4c3b2a198f7e4d6cb5a439281706f5e4"), "eventID", "format", "GUID"),
    "eventID-braces": (valid_record(eventID="{4c3b2a19-8f7e-4d6c-b5a4-39281706f5e4}"), "eventID", "format", "GUID"),
    "account-11-digits": (valid_record(recipientAccountId="11112222333"), "recipientAccountId", "format", "12-digit"),
    "account-13-digits": (valid_record(recipientAccountId="1111222233334"), "recipientAccountId", "format", "12-digit"),
    "account-letter": (valid_record(recipientAccountId="11112222333a"), "recipientAccountId", "format", "12-digit"),
    "account-fullwidth-digits": (
        valid_record(recipientAccountId=FULLWIDTH_ACCOUNT),
        "recipientAccountId",
        "format",
        "12-digit",
    ),
    "category-lowercase": (valid_record(eventCategory="management"), "eventCategory", "allowed_values", "one of"),
    "sharedEventID-not-guid": (valid_record(sharedEventID="x"), "sharedEventID", "format", "must be a GUID"),
}


@pytest.mark.parametrize(("event", "field", "rule", "fragment"), list(REJECTED.values()), ids=list(REJECTED))
def test_invalid_input_names_field_and_rule(event: Any, field: str, rule: str, fragment: str) -> None:
    error = rejected(event)
    assert (error.field, error.rule) == (field, rule), str(error)
    assert str(error).startswith(f"{field}: ")
    assert fragment in str(error)


class Ratio(float):
    """A float subclass: orjson does not write it, so validation takes its slower, json-module path."""


def circular_with_nan() -> dict[str, Any]:
    parameters: dict[str, Any] = {"ratio": float("nan")}
    parameters["self"] = parameters
    return valid_record(requestParameters=parameters)


# Values a dict can hold but JSON text cannot: (record, field, rule, path, message after the path). orjson would
# write NaN and +-Infinity as null, silently changing the record.
UNREPRESENTABLE: dict[str, tuple[dict[str, Any], str, str, str, str]] = {
    "nan-nested": (valid_record(requestParameters={"ratio": float("nan")}), "requestParameters", "json",
                   "requestParameters.ratio", "NaN/Infinity is not valid JSON (got nan)"),
    "infinity-in-array": (valid_record(responseElements={"a": [1, {"b": float("inf")}]}), "responseElements", "json",
                          "responseElements.a[1].b", "NaN/Infinity is not valid JSON (got inf)"),
    "minus-infinity-unknown-member": (valid_record(score=float("-inf")), "record", "json", "score",
                                      "NaN/Infinity is not valid JSON (got -inf)"),
    "nan-in-a-tuple": (valid_record(requestParameters={"t": (1, float("nan"))}), "requestParameters", "json",
                       "requestParameters.t[1]", "NaN/Infinity is not valid JSON (got nan)"),
    "nan-beside-a-big-integer": (valid_record(requestParameters={"big": 2**70, "x": float("nan")}),
                                 "requestParameters", "json", "requestParameters.x",
                                 "NaN/Infinity is not valid JSON (got nan)"),
    "nan-float-subclass": (valid_record(additionalEventData={"r": Ratio("nan")}), "additionalEventData", "json",
                           "additionalEventData.r", "NaN/Infinity is not valid JSON (got nan)"),
    "nan-in-a-circular-record": (circular_with_nan(), "requestParameters", "json", "requestParameters.ratio",
                                 "NaN/Infinity is not valid JSON (got nan)"),
    "long-member-name": (valid_record(requestParameters={"k" * 100_000: float("nan")}), "requestParameters", "json",
                         "requestParameters['" + "k" * 36 + "...]", "NaN/Infinity is not valid JSON (got nan)"),
    "lone-surrogate-in-a-nested-string": (valid_record(requestParameters={"name": "a\udcffb"}), "requestParameters",
                                          "utf8", "requestParameters.name",
                                          "string is not valid UTF-8 (it holds a lone surrogate)"),
    "lone-surrogate-in-a-member-name": (valid_record(requestParameters={"a\ud800": 1}), "requestParameters", "utf8",
                                        "requestParameters['a\\ud800']",
                                        "member name is not valid UTF-8 (it holds a lone surrogate)"),
    "a-member-name-that-is-a-number": (valid_record(requestParameters={1: 2}), "requestParameters", "json",
                                       "requestParameters", "member names must be strings (got number 1)"),
    "a-top-level-member-name-that-is-none": (valid_record(**{"x": 1}) | {None: 1}, "record", "json", "record",
                                             "member names must be strings (got null None)"),
    "lone-surrogate-in-a-top-level-string": (valid_record(eventName="x\ud800"), "eventName", "utf8", "eventName",
                                             "string is not valid UTF-8 (it holds a lone surrogate)"),
}


@pytest.mark.parametrize(("check"), [validate_event, validated_json], ids=["validate_event", "validated_json"])
@pytest.mark.parametrize(("record", "field", "rule", "path", "message"), list(UNREPRESENTABLE.values()),
                         ids=list(UNREPRESENTABLE))
def test_values_json_text_cannot_hold_are_refused_by_path(check: Any, record: dict[str, Any], field: str, rule: str,
                                                          path: str, message: str) -> None:
    """The SDK (validate_event) and the processor (validated_json) refuse them alike; the path is in the message,
    while `field` stays a top-level member (a metric label and dead-letter reason the input cannot grow)."""
    with pytest.raises(InvalidEventError) as caught:
        check(record)
    assert (caught.value.field, caught.value.rule, caught.value.path) == (field, rule, path)
    assert str(caught.value) == f"{path}: {message}"
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
def test_each_required_field_missing_is_named(name: str) -> None:
    error = rejected(without(valid_record(), name))
    assert (error.field, error.rule) == (name, "required")
    assert str(error) == f"{name}: is required"


@pytest.mark.parametrize("name", INSIGHT_REQUIRED_FIELDS)
def test_each_required_insight_field_missing_is_named(name: str) -> None:
    record = without(insight_record(), name)
    if name == "eventCategory":  # without its category an Insights record is held to the general rules
        assert rejected(record).field == "eventSource"
        return
    error = rejected(record)
    assert (error.field, error.rule) == (name, "required")


@pytest.mark.parametrize(
    "event_time",
    [
        "2024-13-01",
        "2024-08-01 13:33:28Z",
        "2024-08-01T13:33:28+00:00",
        "2024-08-01T13:33:28.123Z",
        "2024-08-01T13:33:28",
        "2024-08-01t13:33:28z",
        "20240801T133328Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-08-01T24:00:00Z",
        "2024-08-01T23:60:00Z",
        "2024-08-01T23:59:60Z",
        " 2024-08-01T13:33:28Z",
        "2024-08-01T13:33:28Z\n",
        "2024-08-01T13:33:28Z".translate(FULLWIDTH),
        "",
    ],
    ids=[
        "date-only-bad-month",
        "space-separator",
        "offset-instead-of-Z",
        "fractional-seconds",
        "no-zone",
        "lowercase-t-and-z",
        "basic-format",
        "february-30",
        "february-29-non-leap",
        "hour-24",
        "minute-60",
        "leap-second",
        "leading-space",
        "trailing-newline",
        "fullwidth-digits",
        "empty",
    ],
)
def test_bad_event_times_are_rejected(event_time: str) -> None:
    error = rejected(valid_record(eventTime=event_time))
    assert (error.field, error.rule) == ("eventTime", "format")


def test_event_time_message_reads_well() -> None:
    error = rejected(valid_record(eventTime="2024-13-01"))
    assert str(error) == ("eventTime: must be an ISO-8601 UTC timestamp like 2024-08-01T13:33:28Z (got '2024-13-01')")
    assert error.as_dict() == {"field": "eventTime", "rule": "format", "message": str(error)}


@pytest.mark.parametrize(
    "region",
    [
        "US-EAST-1",
        "us_east_1",
        "useast1",
        "us-east",
        "us-east-1-",
        "us-east-123",
        "u-east-1",
        "us-east-1 ",
        "eu-west-1\n",
        "global",
        "",
        "us-east-1rr",
        "a-b-c-d-e-f-1",
    ],
    ids=repr,
)
def test_malformed_region_names_are_rejected(region: str) -> None:
    error = rejected(valid_record(awsRegion=region))
    assert (error.field, error.rule) == ("awsRegion", "format")
    assert "must be a region name" in str(error)


# --------------------------------------------------------------------------------------------
# Size limit: 262,144 bytes of compact JSON


def record_of_size(size: int) -> dict[str, Any]:
    record = valid_record(requestParameters={"pad": ""})
    record["requestParameters"]["pad"] = "x" * (size - len(orjson.dumps(record)))
    assert len(orjson.dumps(record)) == size
    return record


def test_a_record_at_the_limit_is_accepted() -> None:
    record = record_of_size(MAX_RECORD_BYTES)
    validate_event(record)
    validate_event(orjson.dumps(record))


@pytest.mark.parametrize("as_bytes", [False, True], ids=["dict", "bytes"])
def test_one_byte_over_the_limit_is_rejected(as_bytes: bool) -> None:
    record = record_of_size(MAX_RECORD_BYTES + 1)
    error = rejected(orjson.dumps(record) if as_bytes else record)
    assert (error.field, error.rule) == ("record", "size")
    assert str(error) == "record: is 262,145 bytes as compact JSON; the limit is 262,144 bytes"


def test_size_counts_utf8_bytes_not_characters() -> None:
    record = record_of_size(MAX_RECORD_BYTES)
    record["requestParameters"]["pad"] = record["requestParameters"]["pad"][:-2] + "é"  # 2 bytes, 1 char
    validate_event(record)
    record["requestParameters"]["pad"] = record["requestParameters"]["pad"][:-1] + "€"  # 3 bytes
    assert rejected(json.dumps(record, ensure_ascii=False)).rule == "size"


def test_pretty_printed_input_is_measured_compactly() -> None:
    text = json.dumps(record_of_size(MAX_RECORD_BYTES - 10), indent=8).encode()
    assert len(text) > MAX_RECORD_BYTES
    validate_event(text)


def test_the_limit_can_be_lowered() -> None:
    with pytest.raises(InvalidEventError, match="the limit is 1,000 bytes"):
        validate_event(record_of_size(1001), max_bytes=1000)
    validate_event(record_of_size(1000), max_bytes=1000)


def test_numbers_that_grow_when_reserialised_are_counted() -> None:
    raw = orjson.dumps(valid_record(requestParameters={"n": []}))
    numbers = b",".join([b"1e15"] * 15000)  # 4 bytes each in, 18 bytes each as compact JSON
    raw = raw.replace(b'"n":[]', b'"n":[' + numbers + b"]")
    assert len(raw) < MAX_RECORD_BYTES
    assert rejected(raw).rule == "size"


# --------------------------------------------------------------------------------------------
# Real data that is not a record


def test_the_sqs_notification_body_is_not_a_record() -> None:
    body = (DATA / "cloudtrail-processing-library" / "SQSMessageBody.json").read_bytes()
    error = rejected(body)
    assert (error.field, error.rule) == ("eventVersion", "required")


@pytest.mark.parametrize(("version", "accepted"), [("1.05", True), ("1.06", True), ("1.07", False), ("1.11", False)])
def test_event_category_is_required_from_the_version_that_introduced_it(version: str, accepted: bool) -> None:
    record = valid_record(eventVersion=version)
    del record["eventCategory"]
    if accepted:
        assert validate_event(record) is record
    else:
        with pytest.raises(InvalidEventError, match="eventCategory: is required"):
            validate_event(record)


# --------------------------------------------------------------------------------------------
# The compiled format checks accept exactly what these regular expressions (and, for eventTime,
# datetime.fromisoformat) accept: each is compared with its reference on thousands of strings.

EVENT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2,}(?:-[a-z]+){1,3}-[0-9]{1,2}[a-z]?")
EVENT_VERSION = re.compile(r"([0-9]+)\.[0-9]+")

# Characters that sit next to the classes the formats use: ASCII and Unicode digits and letters,
# separators, whitespace, a non-BMP character.
NEAR_MISSES = "09afAFgGzZtT-:._ \n\x00\u0663\uff11\uff41\u00e9\U0001f600"


def mutations(valid: str) -> set[str]:
    """Every one-character substitution, deletion and insertion of ``valid``, and some truncations."""
    found = {valid, "", valid * 2, valid[:-1], valid[1:], valid + valid[-1]}
    for index in range(len(valid) + 1):
        found.add(valid[:index])
        for char in NEAR_MISSES:
            found.add(valid[:index] + char + valid[index:])
            if index < len(valid):
                found.add(valid[:index] + char + valid[index + 1 :])
                found.add(valid[:index] + valid[index + 1 :])
    return found


def outcome(field: str, value: str) -> tuple[str, str] | None:
    """(field, rule) of the error validate_event raises for the record with ``value``, or None."""
    try:
        validate_event(valid_record(**{field: value}))
    except InvalidEventError as exc:
        return exc.field, exc.rule
    return None


def is_real_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def test_event_time_check_matches_the_pattern_and_the_calendar() -> None:
    components = itertools.product(
        ["0000", "0001", "1900", "2000", "2023", "2024", "9999"],
        ["00", "01", "02", "04", "06", "09", "11", "12", "13", "99"],
        ["00", "01", "28", "29", "30", "31", "32", "99"],
        ["00", "23", "24", "99"],
        ["00", "59", "60"],
        ["00", "59", "60"],
    )
    candidates = {f"{y}-{mo}-{d}T{h}:{mi}:{s}Z" for y, mo, d, h, mi, s in components}
    candidates |= mutations("2024-02-29T23:59:59Z")
    for text in candidates:
        accepted = EVENT_TIME.fullmatch(text) is not None and is_real_time(text)
        assert outcome("eventTime", text) == (None if accepted else ("eventTime", "format")), repr(text)


@pytest.mark.parametrize(
    ("field", "pattern", "valid"),
    [
        ("eventID", GUID, "0d9b7a2e-5c41-4f0e-9A3B-2f6c8d1e7a90"),
        ("sharedEventID", GUID, "1F2E3D4C-5b6a-4798-8a9b-0c1d2e3f4a5b"),
        ("recipientAccountId", ACCOUNT_ID, "111122223333"),
        ("awsRegion", REGION, "us-gov-west-1r"),
        ("awsRegion", REGION, "sagov-westsouth-12"),
    ],
)
def test_format_checks_match_their_patterns(field: str, pattern: re.Pattern[str], valid: str) -> None:
    rng = random.Random(field)
    candidates = mutations(valid) | {
        "".join(rng.choice("az-09A\u0663 ") for _ in range(rng.randrange(16))) for _ in range(5000)
    }
    if field == "awsRegion":  # the shapes the pattern distinguishes: word counts and lengths
        words = ["a", "ab", "1", "12", "1a", "123", ""]  # up to 6 words: one more than the pattern allows
        candidates |= {"-".join(chosen) for n in range(1, 7) for chosen in itertools.product(words, repeat=n)}
    for text in candidates:
        accepted = pattern.fullmatch(text) is not None
        assert outcome(field, text) == (None if accepted else (field, "format")), repr(text)


def test_event_version_check_matches_its_pattern() -> None:
    candidates = {"".join(chars) for n in range(6) for chars in itertools.product("01.a\u0663", repeat=n)}
    candidates |= mutations("1.11") | {"10.1", "01.1", "1.0", "1.", ".1", "11.1", "2.11"}
    for text in candidates:
        match = EVENT_VERSION.fullmatch(text)
        expected = None if match is None or match.group(1) == "1" else ("eventVersion", "major_version")
        if match is None:
            expected = ("eventVersion", "format")
        assert outcome("eventVersion", text) == expected, repr(text)


class Name(str):
    """A str subclass as a member name (the compiled checks only cache exact str names)."""


@pytest.mark.parametrize("make", [lambda name: "".join(list(name)), Name], ids=["fresh-objects", "str-subclass"])
def test_member_names_need_not_be_the_same_objects(make: Any) -> None:
    """The checks remember member names by identity; other name objects are checked the same way."""
    for _ in range(50):
        validate_event({make(name): value for name, value in valid_record().items()})
        bad = {make(name): value for name, value in valid_record(eventTime="nope", readOnly=None).items()}
        assert (rejected(bad).field, rejected(bad).rule) == ("eventTime", "format")
        missing = {make(name): value for name, value in without(valid_record(), "awsRegion").items()}
        assert (rejected(missing).field, rejected(missing).rule) == ("awsRegion", "required")
