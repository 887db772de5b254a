"""LookupEvents' request rules, Event shape and NextToken (kafkatrail/api/lookup_events.py), table-driven."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kafkatrail.api.errors import ApiError
from kafkatrail.api.lookup_events import event_of, lookup_of, next_token
from kafkatrail.sinks.history_store import StoredEvent

NOW_MS = 1_765_000_000_000
DAY_MS = 86_400_000
KEY = b"secret-of-the-caller"


def lookup(body: dict[str, Any], account: str = "111122223333", region: str = "eu-west-1", key: bytes = KEY) -> Any:
    return lookup_of(body, account, region, NOW_MS, 90, key)


@pytest.mark.parametrize(("body", "expected"), [
    ({}, {"category": "management", "start_ms": NOW_MS - 90 * DAY_MS, "end_ms": NOW_MS, "attribute": None,
          "limit": 50, "after": None}),
    ({"MaxResults": 1}, {"limit": 1}),
    ({"MaxResults": 50}, {"limit": 50}),
    ({"EventCategory": "insight"}, {"category": "insight"}),
    ({"LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "alice"}]},
     {"attribute": ("Username", "alice")}),
    ({"EventCategory": "insight", "LookupAttributes": [{"AttributeKey": "EventSource",
                                                        "AttributeValue": "ec2.amazonaws.com"}]},
     {"category": "insight", "attribute": ("EventSource", "ec2.amazonaws.com")}),
    ({"StartTime": (NOW_MS - DAY_MS) / 1000, "EndTime": (NOW_MS - 1000) / 1000},
     {"start_ms": NOW_MS - DAY_MS, "end_ms": NOW_MS - 1000}),
    ({"StartTime": (NOW_MS - 400 * DAY_MS) / 1000}, {"start_ms": NOW_MS - 90 * DAY_MS}),  # clamped to what is kept
    ({"StartTime": NOW_MS / 1000, "EndTime": NOW_MS / 1000}, {"start_ms": NOW_MS, "end_ms": NOW_MS}),
])
def test_a_request_becomes_the_store_lookup(body: dict[str, Any], expected: dict[str, Any]) -> None:
    query = lookup(body)
    assert (query.account, query.region) == ("111122223333", "eu-west-1")
    for name, value in expected.items():
        assert getattr(query, name) == value, name


@pytest.mark.parametrize(("body", "code", "names"), [
    ({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A"},
                           {"AttributeKey": "EventSource", "AttributeValue": "B"}]},
     "InvalidLookupAttributesException", "at most one"),
    ({"LookupAttributes": [{"AttributeKey": "Colour", "AttributeValue": "red"}]},
     "InvalidLookupAttributesException", "AttributeKey"),
    ({"EventCategory": "insight", "LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "a"}]},
     "InvalidLookupAttributesException", "Insights"),
    ({"EventCategory": "data"}, "InvalidEventCategoryException", "insight"),
    ({"MaxResults": 0}, "InvalidMaxResultsException", "MaxResults"),
    ({"MaxResults": 51}, "InvalidMaxResultsException", "MaxResults"),
    ({"StartTime": NOW_MS / 1000, "EndTime": NOW_MS / 1000 - 1}, "InvalidTimeRangeException", "StartTime"),
    ({"StartTime": "yesterday"}, "InvalidTimeRangeException", "StartTime"),
    ({"EndTime": float("nan")}, "InvalidTimeRangeException", "EndTime"),
    ({"NextToken": "forged"}, "InvalidNextTokenException", "NextToken"),
    ({"NextToken": "e30.AAAA"}, "InvalidNextTokenException", "NextToken"),
    ({"NextToken": 7}, "InvalidNextTokenException", "NextToken"),
])
def test_a_bad_request_is_refused_with_the_aws_code_naming_the_member(body: dict[str, Any], code: str,
                                                                       names: str) -> None:
    with pytest.raises(ApiError) as refused:
        lookup(body)
    assert refused.value.code == code and names in refused.value.message


BODY = {"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}], "MaxResults": 5}


def test_a_token_continues_the_lookup_it_was_issued_for() -> None:
    token = next_token(BODY, "111122223333", "eu-west-1", (NOW_MS - 5, 42), KEY)
    assert lookup({**BODY, "NextToken": token}).after == (NOW_MS - 5, 42)
    assert "111122223333" not in token and "42" not in token.split(".")[1]


@pytest.mark.parametrize(("body", "account", "region", "key"), [
    ({**BODY, "MaxResults": 6}, "111122223333", "eu-west-1", KEY),
    ({**BODY, "LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "true"}]}, "111122223333",
     "eu-west-1", KEY),
    ({**BODY, "StartTime": 1}, "111122223333", "eu-west-1", KEY),
    ({**BODY, "EventCategory": "insight", "LookupAttributes": []}, "111122223333", "eu-west-1", KEY),
    (BODY, "444455556666", "eu-west-1", KEY),     # another account
    (BODY, "111122223333", "us-east-1", KEY),     # another region
    (BODY, "111122223333", "eu-west-1", b"another caller's secret"),
])
def test_a_token_is_refused_with_other_parameters_or_for_another_caller(body: dict[str, Any], account: str,
                                                                         region: str, key: bytes) -> None:
    token = next_token(BODY, "111122223333", "eu-west-1", (NOW_MS - 5, 42), KEY)
    with pytest.raises(ApiError) as refused:
        lookup({**body, "NextToken": token}, account, region, key)
    assert refused.value.code == "InvalidNextTokenException"


def test_a_token_altered_anywhere_is_refused() -> None:
    token = next_token(BODY, "111122223333", "eu-west-1", (NOW_MS - 5, 42), KEY)
    for index in range(len(token)):
        if token[index] == ".":
            continue
        altered = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]
        with pytest.raises(ApiError):
            lookup({**BODY, "NextToken": altered})


def test_an_event_has_botocores_shape_with_the_whole_record_as_text() -> None:
    record = {"eventID": "e1", "eventName": "RunInstances", "awsRegion": "eu-west-1"}
    stored = StoredEvent(event_id="e1", event_name="RunInstances", read_only="false", access_key_id="ASIAX",
                         event_time_ms=1_714_554_782_500, event_source="ec2.amazonaws.com", username="ci-run",
                         resources=[("AWS::EC2::Instance", "i-0abc"), (None, "arn:aws:foo")],
                         record=orjson.dumps(record), cursor=(1_714_554_782_500, 7))
    event = event_of(stored)
    assert event == {"EventId": "e1", "EventName": "RunInstances", "ReadOnly": "false", "AccessKeyId": "ASIAX",
                     "EventTime": 1_714_554_782.5, "EventSource": "ec2.amazonaws.com", "Username": "ci-run",
                     "Resources": [{"ResourceType": "AWS::EC2::Instance", "ResourceName": "i-0abc"},
                                   {"ResourceName": "arn:aws:foo"}],
                     "CloudTrailEvent": orjson.dumps(record).decode()}
    bare = event_of(StoredEvent(event_id="e2", event_name="X", read_only=None, access_key_id=None,
                                event_time_ms=0, event_source="s", username=None, resources=[], record=b"{}",
                                cursor=(0, 1)))
    assert set(bare) == {"EventId", "EventName", "EventTime", "EventSource", "Resources", "CloudTrailEvent"}
