"""CloudTrail JSON -> Avro -> JSON: lossless for every real record and every optional structure."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas import codec
from kafkatrail.schemas.codec import EncodeError, KnownSchema, KnownSchemas, SingleObjectCodec

DATA = Path(__file__).resolve().parents[1] / "data" / "real"
STRATUS = DATA / "stratus-detonation-logs"


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where two parsed JSON values differ, strictly (1 != 1.0 != True), or None."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return f"{path}: keys differ: {sorted(a.keys() ^ b.keys())}"
        for key in a:
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    if a != b or (isinstance(a, float) and str(a) != str(b)):
        return f"{path}: {a!r} != {b!r}"
    return None


def assert_same_json(actual: Any, expected: Any) -> None:
    difference = first_difference(actual, expected)
    assert difference is None, difference


def load_real_records() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(STRATUS.glob("*.json")):
        technique = path.name.removeprefix("aws.").removesuffix(".json")
        records = json.loads(path.read_bytes())
        for index, record in enumerate(records):
            cases.append((f"{technique}[{index}]-{record['eventName']}", record))
    return cases


REAL = load_real_records()


def test_the_real_data_set_is_complete() -> None:
    assert len(REAL) == 310
    assert len(list(STRATUS.glob("*.json"))) == 35
    sqs = json.loads((DATA / "cloudtrail-processing-library" / "SQSMessageBody.json").read_bytes())
    assert "eventVersion" not in sqs and sqs["Type"] == "Notification"  # an SNS envelope, not a record


def roundtrip_everywhere(record: dict[str, Any]) -> None:
    """Default codec round trip, plus agreement with fastavro in both directions."""
    original = copy.deepcopy(record)
    schema = codec.current_schema()
    encoded = codec.encode_event(record)
    assert_same_json(codec.decode_event(encoded), original)
    assert_same_json(record, original)  # encoding did not touch the input

    datum = codec.to_avro(record)
    written = io.BytesIO()
    fastavro.schemaless_writer(written, schema.parsed, datum)
    assert written.getvalue() == encoded[10:], "compiled writer and fastavro disagree"
    read = fastavro.schemaless_reader(io.BytesIO(encoded[10:]), schema.parsed, None)
    assert_same_json(codec.from_avro(read), original)


@pytest.mark.parametrize("record", [r for _, r in REAL], ids=[name for name, _ in REAL])
def test_real_record_roundtrips_losslessly(record: dict[str, Any]) -> None:
    roundtrip_everywhere(record)


def test_simulated_traffic_roundtrips_losslessly() -> None:
    """Every identity type, error and data event the simulator makes, including repeated eventIDs."""
    model = TrafficModel(rate=200, seed=11, start=datetime(2026, 1, 5, 12, tzinfo=UTC), duplicate_rate=0.05)
    records = list(TrafficSimulator(model).records(Limit(count=3000)))
    assert len({r["userIdentity"]["type"] for r in records}) >= 8
    for record in records:
        roundtrip_everywhere(record)


def test_real_records_use_typed_fields_only() -> None:
    """Nothing in the real data needs extraFields: the schema covers what AWS sends."""
    for name, record in REAL:
        assert codec.EXTRA_FIELDS not in json.dumps(codec.to_avro(record)), name


# --------------------------------------------------------------------------------------------
# Constructed records, one per optional structure

IDENTITY_ASSUMED_ROLE = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLEID:ci-run-481",
    "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/ci-run-481",
    "accountId": "111122223333",
    "accessKeyId": "ASIAEXAMPLEKEY",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLEID",
            "arn": "arn:aws:iam::111122223333:role/Deployer",
            "accountId": "111122223333",
            "userName": "Deployer",
        },
        "webIdFederationData": {
            "federatedProvider": "arn:aws:iam::111122223333:oidc-provider/token.actions.example.com",
            "attributes": {"token.actions.example.com:sub": "repo:org/app", "aud": ["sts"]},
        },
        "attributes": {"creationDate": "2024-05-01T09:12:44Z", "mfaAuthenticated": "false"},
        "sourceIdentity": "alice",
        "ec2RoleDelivery": "2.0",
        "assumedRoot": True,
        "signInSessionArn": "arn:aws:signin:eu-west-1:111122223333:session/8c6b3a2e-0000-4000-8000-000000000001",
    },
    "invokedBy": "autoscaling.amazonaws.com",
    "invokedByDelegate": {"accountId": "444455556666"},
    "onBehalfOf": {
        "userId": "9067-EXAMPLE",
        "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1",
    },
    "inScopeOf": {
        "sourceArn": "arn:aws:lambda:eu-west-1:111122223333:function:f",
        "sourceAccount": "111122223333",
        "issuerType": "AWS::Lambda::Function",
        "credentialsIssuedTo": "arn:aws:iam::111122223333:role/f-role",
    },
    "credentialId": "EXAMPLE-credential-id",
    "identityProvider": "accounts.google.com",
    "userName": "HIDDEN_DUE_TO_SECURITY_REASONS",
}


def base_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.11",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": "111122223333"},
        "eventTime": "2024-05-01T09:13:02Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "StopInstances",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.25",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0abc"}]}, "force": False},
        "responseElements": None,
        "requestID": "6f1e2d3c-4b5a-4c6d-8e7f-0a1b2c3d4e5f",
        "eventID": "0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    record.update(changes)
    return record


def without(record: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in names}


INSIGHT_START = {
    "eventVersion": "1.11",
    "eventTime": "2024-05-01T14:02:00Z",
    "awsRegion": "eu-west-1",
    "eventID": "5b2a6c1e-8d47-4e0f-9a31-c2d4e6f8a0b1",
    "eventType": "AwsCloudTrailInsight",
    "recipientAccountId": "111122223333",
    "sharedEventID": "e3f1a2b4-6c8d-4e0f-a1b3-c5d7e9f1a3b5",
    "insightDetails": {
        "state": "Start",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "insightType": "ApiErrorRateInsight",
        "errorCode": "AccessDenied",
        "insightContext": {
            "statistics": {
                "baseline": {"average": 0.0125},
                "insight": {"average": 4},
                "insightDuration": 9,
                "baselineDuration": 10080.0,
            },
            "attributions": [
                {
                    "attribute": "userIdentityArn",
                    "insight": [{"value": "arn:aws:sts::111122223333:assumed-role/A/run-17", "average": 4.0}],
                    "baseline": [{"value": "arn:aws:sts::111122223333:assumed-role/A/run-17", "average": 0.0125}],
                },
                {
                    "attribute": "errorCode",
                    "insight": [{"value": "null", "average": 4.0}],
                    "baseline": [],
                },
            ],
        },
    },
    "eventCategory": "Insight",
}

CONSTRUCTED: dict[str, dict[str, Any]] = {
    "assumed-role-with-every-identity-member": base_record(
        userIdentity=IDENTITY_ASSUMED_ROLE,
        tlsDetails={
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": "ec2.eu-west-1.amazonaws.com",
            "keyExchange": "X25519MLKEM768",
        },
        sessionCredentialFromConsole="true",
    ),
    "data-event-with-resources": base_record(
        eventSource="s3.amazonaws.com",
        eventName="GetObject",
        readOnly=True,
        managementEvent=False,
        eventCategory="Data",
        additionalEventData={"bytesTransferredIn": 0, "bytesTransferredOut": 5321},
        resources=[
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::audit-bucket/reports/q1.csv"},
            {"accountId": "111122223333", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::audit-bucket"},
        ],
    ),
    "network-activity-event": base_record(
        eventType="AwsVpceEvents",
        eventCategory="NetworkActivity",
        errorCode="VpceAccessDenied",
        errorMessage="The request was denied due to a VPC endpoint policy",
        requestParameters=None,
        sharedEventID="1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
        vpcEndpointId="vpce-0a1b2c3d4e5f67890",
        vpcEndpointAccountId="111122223333",
    ),
    "service-event-with-details": base_record(
        userIdentity={"type": "AWSService", "invokedBy": "kms.amazonaws.com"},
        eventType="AwsServiceEvent",
        serviceEventDetails={"keyId": "k-1", "rotated": True, "nested": {"list": [1, 2.5, None, "x"]}},
        apiVersion="2014-11-01",
    ),
    "insight-start-record": INSIGHT_START,
    "insight-end-record-minimal-context": {
        **INSIGHT_START,
        "insightDetails": {"state": "End", "insightContext": {"statistics": {"insightDuration": 9}}},
    },
    "insight-attribution-with-json-null-value": {
        **INSIGHT_START,
        "insightDetails": {
            "insightContext": {"attributions": [{"attribute": "errorCode", "insight": [{"value": None, "average": 1}]}]}
        },
    },
    "addendum-updated-data": base_record(
        addendum={
            "reason": "UPDATED_DATA",
            "updatedFields": "userIdentity,requestParameters",
            "originalRequestID": "orig-req-1",
            "originalEventID": "3c2b1a09-8f7e-4d6c-b5a4-39281706f5e4",
        }
    ),
    "addendum-delivery-delay": base_record(addendum={"reason": "DELIVERY_DELAY"}),
    "edge-device-details": base_record(
        edgeDeviceDetails={"type": "outposts", "deviceID": "op-01ac5d28a6a232904", "extras": {"a": [1, {}]}}
    ),
    "event-context-from-lake": base_record(
        eventContext={"requestContext": {"x": 1}, "tagContext": {"resourceTags": [{"k": "v"}]}}
    ),
    "unknown-top-level-fields-from-a-newer-version": base_record(
        eventVersion="1.12",
        newAnalysisField={"score": 0.97, "labels": ["a", "b"]},
        anotherNewFlag=False,
        extraFields="a member literally named extraFields",
    ),
    "unknown-members-inside-nested-objects": base_record(
        userIdentity={
            **IDENTITY_ASSUMED_ROLE,
            "futureMember": {"x": 1},
            "sessionContext": {
                **IDENTITY_ASSUMED_ROLE["sessionContext"],  # type: ignore[dict-item]
                "newContextKey": "v",
                "attributes": {"creationDate": "2024-05-01T09:12:44Z", "mfaAuthenticated": "true", "new": 1},
                "sessionIssuer": {"type": "Role", "unknownIssuerKey": [None]},
            },
        },
        tlsDetails={"tlsVersion": "TLSv1.2", "newTlsKey": "x"},
        resources=[{"ARN": "arn:aws:s3:::b", "newResourceKey": {"deep": True}}],
        addendum={"reason": "SERVICE_OUTAGE", "more": 1},
        insightDetails={"state": "Start", "insightContext": {"statistics": {"baseline": {"average": 1, "p99": 3}}}},
    ),
    "json-null-free-form-members": base_record(
        requestParameters=None,
        responseElements=None,
        additionalEventData=None,
        serviceEventDetails=None,
        edgeDeviceDetails=None,
        eventContext=None,
    ),
    "json-null-in-typed-fields": base_record(
        userAgent=None,
        errorCode=None,
        readOnly=None,
        resources=None,
        tlsDetails=None,
        userIdentity={"type": "Root", "userName": None, "sessionContext": None, "invokedBy": None},
    ),
    "known-fields-with-unexpected-types": base_record(
        readOnly="true",
        managementEvent="false",
        userAgent=42,
        resources={"not": "a list"},
        sharedEventID=["a"],
        tlsDetails="TLSv1.3",
        userIdentity={"type": "Unknown", "accountId": 111122223333, "sessionContext": ["x"]},
        addendum={"reason": "UPDATED_DATA", "updatedFields": ["userIdentity", "requestParameters"]},
    ),
    "resources-with-a-non-object-item": base_record(resources=[{"ARN": "a"}, "b", None]),
    "empty-objects-and-arrays": base_record(
        requestParameters={},
        responseElements=[],
        additionalEventData={},
        resources=[],
        tlsDetails={},
        addendum={},
        userIdentity={"type": "AssumedRole", "sessionContext": {"webIdFederationData": {}, "attributes": {}}},
    ),
    "empty-strings": base_record(userAgent="", errorCode="", userIdentity={"type": "IAMUser", "accessKeyId": ""}),
    "non-ascii-text": base_record(
        userIdentity={"type": "IAMUser", "userName": "Zoë-Ångström-李雷", "arn": "arn:aws:iam::1:user/Zoë"},
        errorMessage="监控失败 🚀 — «quoted» עברית",
        requestParameters={
            "ключ": "значение",
            "emoji🔑": "🗝️",
            "control": "tab\tnewline\nnul\u0000bell\u0007",
            "separators": "\u2028\u2029",
            "escaped-slash": 'a/b\\c"d',
        },
    ),
    "large-integers": base_record(
        requestParameters={
            "int64max": 2**63 - 1,
            "int64min": -(2**63),
            "uint64max": 2**64 - 1,
            "beyond64": 2**64 + 1,
            "hugeNegative": -(2**70),
            "list": [2**100, 0, -1],
        },
        insightDetails={
            "insightContext": {
                "statistics": {
                    "insightDuration": 2**63 - 1,
                    "baselineDuration": 2**63,
                    "baseline": {"average": -(2**64)},
                }
            }
        },
        brandNewCounter=10**30,
    ),
    "floats-stay-floats-and-ints-stay-ints": base_record(
        requestParameters={
            "a": 0.1,
            "b": 1e-300,
            "c": 1.7976931348623157e308,
            "d": -0.0,
            "e": 4.0,
            "f": 4,
            "g": 5e-324,
        },
        insightDetails={
            "insightContext": {
                "statistics": {
                    "baseline": {"average": 0.0},
                    "insight": {"average": 3},
                    "insightDuration": 1.5,
                    "baselineDuration": 10080,
                }
            }
        },
    ),
    "booleans-are-not-numbers": base_record(
        insightDetails={"insightContext": {"statistics": {"insightDuration": True, "baseline": {"average": False}}}},
        userIdentity={"type": "AssumedRole", "sessionContext": {"assumedRoot": "true"}},
    ),
    "empty-record": {},
}


@pytest.mark.parametrize("record", list(CONSTRUCTED.values()), ids=list(CONSTRUCTED))
def test_constructed_record_roundtrips_losslessly(record: dict[str, Any]) -> None:
    roundtrip_everywhere(record)


def find_extra(datum: Any, path: str = "$") -> list[str]:
    if isinstance(datum, dict):
        found = [f"{path}.{codec.EXTRA_FIELDS}"] if datum.get(codec.EXTRA_FIELDS) else []
        for key, value in datum.items():
            found += find_extra(value, f"{path}.{key}")
        return found
    if isinstance(datum, list):
        return [p for index, item in enumerate(datum) for p in find_extra(item, f"{path}[{index}]")]
    return []


@pytest.mark.parametrize(
    "name",
    [
        "assumed-role-with-every-identity-member",
        "data-event-with-resources",
        "network-activity-event",
        "service-event-with-details",
        "insight-start-record",
        "addendum-updated-data",
        "edge-device-details",
        "event-context-from-lake",
        "json-null-free-form-members",
        "empty-objects-and-arrays",
        "floats-stay-floats-and-ints-stay-ints",
    ],
)
def test_documented_fields_have_typed_homes(name: str) -> None:
    """Every field AWS documents for records and Insights records (docs/cloudtrail.md §1, §9) has a typed field."""
    assert find_extra(codec.to_avro(CONSTRUCTED[name])) == []


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("unknown-top-level-fields-from-a-newer-version", "$.extraFields"),
        ("unknown-members-inside-nested-objects", "$.userIdentity.extraFields"),
        ("unknown-members-inside-nested-objects", "$.userIdentity.sessionContext.extraFields"),
        ("unknown-members-inside-nested-objects", "$.userIdentity.sessionContext.attributes.extraFields"),
        ("unknown-members-inside-nested-objects", "$.userIdentity.sessionContext.sessionIssuer.extraFields"),
        ("unknown-members-inside-nested-objects", "$.tlsDetails.extraFields"),
        ("unknown-members-inside-nested-objects", "$.resources[0].extraFields"),
        ("unknown-members-inside-nested-objects", "$.insightDetails.insightContext.statistics.baseline.extraFields"),
        ("json-null-in-typed-fields", "$.extraFields"),
        ("json-null-in-typed-fields", "$.userIdentity.extraFields"),
        ("known-fields-with-unexpected-types", "$.extraFields"),
        ("large-integers", "$.insightDetails.insightContext.statistics.extraFields"),
        (
            "insight-attribution-with-json-null-value",
            "$.insightDetails.insightContext.attributions[0].insight[0].extraFields",
        ),
    ],
)
def test_unknown_and_misfit_members_ride_in_the_nearest_extra_fields(name: str, where: str) -> None:
    assert where in find_extra(codec.to_avro(CONSTRUCTED[name]))


def test_absent_and_null_free_form_members_encode_differently() -> None:
    absent = without(base_record(), "requestParameters", "responseElements")
    null = base_record(requestParameters=None, responseElements=None)
    assert codec.to_avro(absent).get("requestParameters") is None
    assert codec.to_avro(null)["requestParameters"] == "null"
    assert codec.encode_event(absent) != codec.encode_event(null)
    assert "requestParameters" not in codec.decode_event(codec.encode_event(absent))
    decoded = codec.decode_event(codec.encode_event(null))
    assert "requestParameters" in decoded and decoded["requestParameters"] is None


def test_absent_and_null_typed_members_encode_differently() -> None:
    absent = without(base_record(), "userAgent")
    null = base_record(userAgent=None)
    assert codec.encode_event(absent) != codec.encode_event(null)
    assert "userAgent" not in codec.decode_event(codec.encode_event(absent))
    assert codec.decode_event(codec.encode_event(null))["userAgent"] is None


def test_big_integers_in_json_text_are_marked_for_exact_parsing() -> None:
    datum = codec.to_avro(base_record(requestParameters={"n": 2**64 + 1}))
    assert datum["requestParameters"] == ' {"n":18446744073709551617}'
    assert codec.to_avro(base_record(requestParameters={"n": 2**64 - 1}))["requestParameters"] == (
        '{"n":18446744073709551615}'
    )


# --------------------------------------------------------------------------------------------
# Schema versions and encode errors


def older_schema() -> KnownSchema:
    """The current schema minus tlsDetails and insightDetails: stands in for a previous version."""
    schema = copy.deepcopy(codec.current_schema().schema)
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("tlsDetails", "insightDetails")]
    return KnownSchema.from_json(schema, source="cloudtrail_event.v0.avsc (test)")


def test_records_written_with_an_older_known_schema_decode() -> None:
    old = older_schema()
    assert old.fingerprint != codec.current_schema().fingerprint
    record = CONSTRUCTED["assumed-role-with-every-identity-member"]
    written = SingleObjectCodec(writer=old).encode(record)
    assert written[2:10] == old.fingerprint_bytes
    assert "tlsDetails" in json.loads(old.converter.to_avro(record)["extraFields"])  # unknown to v0

    reader = SingleObjectCodec(known=codec.packaged_schemas().with_schema(old))
    assert_same_json(reader.decode(written), record)
    assert reader.known.by_fingerprint(old.fingerprint) is old


def test_packaged_schemas_include_the_current_schema() -> None:
    known = codec.packaged_schemas()
    assert codec.current_schema() in known
    assert codec.current_schema().fullname == "dev.kafkatrail.CloudTrailEvent"
    assert isinstance(known, KnownSchemas) and len(known) >= 1


def test_records_larger_than_the_stack_buffer_roundtrip() -> None:
    """The compiled writer starts on a 4 KiB stack buffer and moves to the heap beyond it."""
    record = base_record(
        requestParameters={"policy": "é€🚀x" * 60_000, "items": list(range(5000))},
        resources=[{"ARN": f"arn:aws:s3:::bucket/key-{i}", "type": "AWS::S3::Object"} for i in range(2000)],
        userAgent="u" * 100_000,
    )
    roundtrip_everywhere(record)
    assert len(codec.encode_event(record)) > 400_000


def test_a_record_type_with_more_fields_than_the_stack_slots() -> None:
    """Records with more than 64 fields keep their member slots on the heap."""
    fields = [{"name": f"f{i}", "type": ["null", "string"], "default": None} for i in range(100)]
    fields.append({"name": "extraFields", "type": ["null", "string"], "default": None, "jsonText": True})
    wide = KnownSchema.from_json({"type": "record", "name": "Wide", "fields": fields}, source="wide (test)")
    wide_codec = SingleObjectCodec(writer=wide)
    record = {**{f"f{i}": f"value {i}" for i in range(0, 100, 3)}, "unknown": [1, None], "f1": 7}
    encoded = wide_codec.encode(record)
    written = io.BytesIO()
    fastavro.schemaless_writer(written, wide.parsed, wide.converter.to_avro(record))
    assert encoded[10:] == written.getvalue()
    assert_same_json(wide_codec.decode(encoded), record)


def test_any_mapping_encodes_like_the_dict_it_holds() -> None:
    record = CONSTRUCTED["unknown-members-inside-nested-objects"]
    assert codec.encode_event(types.MappingProxyType(record)) == codec.encode_event(record)


class Name(str):
    """A str subclass as a member name (the compiled code only caches exact str names)."""


def renamed(value: Any, make: Any) -> Any:
    """``value`` with every member name replaced by ``make(name)``."""
    if isinstance(value, dict):
        return {make(key): renamed(item, make) for key, item in value.items()}
    if isinstance(value, list):
        return [renamed(item, make) for item in value]
    return value


@pytest.mark.parametrize("make", [lambda name: "".join(list(name)), Name], ids=["fresh-objects", "str-subclass"])
def test_member_names_need_not_be_the_same_objects(make: Any) -> None:
    """The compiled writer remembers member names by identity; other name objects are written as fastavro does."""
    for record in (CONSTRUCTED["unknown-members-inside-nested-objects"], *(r for _, r in REAL[:40])):
        for _ in range(3):
            roundtrip_everywhere(renamed(record, make))


def test_decoded_member_names_are_interned() -> None:
    """So a consumer's lookups with string literals match decoded keys by identity."""
    decoded = codec.decode_event(codec.encode_event(CONSTRUCTED["assumed-role-with-every-identity-member"]))
    for name in (*decoded, *decoded["userIdentity"], *decoded["userIdentity"]["sessionContext"]):
        assert sys.intern(name) is name


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([base_record()], "record: must be a JSON object (dict), got list"),
        ("{}", "record: must be a JSON object (dict), got str"),
        (base_record(requestParameters={"s": {1, 2}}), "requestParameters: value is not representable as JSON"),
        (base_record(newField=object()), "extraFields: value is not representable as JSON"),
        (base_record(userAgent="lone \ud800 surrogate"), "not encodable as UTF-8"),
        (base_record(requestParameters={"r": [float("nan")]}), "requestParameters: NaN/Infinity is not valid JSON"),
        (base_record(newField=float("inf")), "extraFields: NaN/Infinity is not valid JSON"),
    ],
    ids=["list", "json-text-not-dict", "set-in-free-form", "object-in-unknown-field", "lone-surrogate",
         "nan-in-free-form", "infinity-in-unknown-field"],
)
def test_unencodable_records_raise_encode_error(record: Any, message: str) -> None:
    with pytest.raises(EncodeError, match=re.escape(message)):
        codec.encode_event(record)
