"""Wire formats: Avro single-object encoding (header, fingerprint, decode errors) and Confluent framing."""

from __future__ import annotations

import importlib.util
import io
import json
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from kafkatrail.schemas import codec
from kafkatrail.schemas.codec import CodecError, ConfluentCodec, DecodeError, SingleObjectCodec

RECORD: dict[str, Any] = {
    "eventVersion": "1.11",
    "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER", "userName": "report-reader"},
    "eventTime": "2024-05-01T09:20:11Z",
    "eventSource": "s3.amazonaws.com",
    "eventName": "GetObject",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "requestParameters": {"bucketName": "audit-bucket", "key": "reports/q1.csv"},
    "responseElements": None,
    "additionalEventData": {"bytesTransferredIn": 0, "bytesTransferredOut": 5321},
    "eventID": "b5e0a8d4-1f2c-4e3d-9b8a-7c6d5e4f3a21",
    "readOnly": True,
    "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::audit-bucket/reports/q1.csv"}],
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
    "eventCategory": "Data",
}


# --------------------------------------------------------------------------------------------
# The Avro spec's algorithms, written out independently of fastavro

RABIN_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (RABIN_EMPTY & -(fp & 1))
        table.append(fp)
    return table


RABIN_TABLE = _rabin_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) fingerprint as the Avro specification describes it."""
    fp = RABIN_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ RABIN_TABLE[(fp ^ byte) & 0xFF]
    return fp


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def canonical_form(schema: Any, namespace: str = "") -> str:
    """Parsing Canonical Form per the spec's rules (PRIMITIVES, FULLNAMES, STRIP, ORDER, ...)."""

    def full(name: str, space: str) -> str:
        return name if "." in name or not space else f"{space}.{name}"

    if isinstance(schema, str):
        return json.dumps(schema if schema in PRIMITIVES else full(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(branch, namespace) for branch in schema) + "]"
    kind = schema["type"]
    if kind in PRIMITIVES:
        return json.dumps(kind)
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], namespace) + "}"
    assert kind == "record", kind
    name = full(schema["name"], schema.get("namespace", namespace))
    space = name.rpartition(".")[0]
    fields = ",".join(
        '{"name":' + json.dumps(f["name"]) + ',"type":' + canonical_form(f["type"], space) + "}"
        for f in schema["fields"]
    )
    return '{"name":' + json.dumps(name) + ',"type":"record","fields":[' + fields + "]}"


@pytest.mark.parametrize(
    ("schema_text", "published"),
    [
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
        ('"string"', -8142146995180207161),
    ],
    ids=["null", "boolean", "int", "string"],
)
def test_rabin_fingerprint_matches_the_avro_published_vectors(schema_text: str, published: int) -> None:
    expected = published & 0xFFFFFFFFFFFFFFFF  # published as Java signed longs
    assert crc64_avro(schema_text.encode()) == expected
    assert bytes.fromhex(fastavro_fingerprint(schema_text, "CRC-64-AVRO")) == expected.to_bytes(8, "little")


def test_canonical_form_of_the_event_schema_follows_the_spec() -> None:
    schema = codec.current_schema()
    assert to_parsing_canonical_form(schema.schema) == canonical_form(schema.schema)
    assert schema.canonical_form == canonical_form(schema.schema)
    for stripped in ('"doc"', '"default"', '"jsonText"', '"namespace"', " "):
        assert stripped not in schema.canonical_form


def test_header_is_marker_then_little_endian_fingerprint_of_the_canonical_form() -> None:
    schema = codec.current_schema()
    encoded = codec.encode_event(RECORD)
    expected = crc64_avro(canonical_form(schema.schema).encode())
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == expected.to_bytes(8, "little")
    assert schema.fingerprint == expected
    assert schema.header == encoded[:10]
    body = fastavro.schemaless_reader(io.BytesIO(encoded[10:]), schema.parsed, None)
    assert body["eventID"] == RECORD["eventID"]


# --------------------------------------------------------------------------------------------
# Decode errors

ENCODED = codec.encode_event(RECORD)
CURRENT_FP = f"0x{codec.current_schema().fingerprint:016x}"


def _with_body(body: bytes) -> bytes:
    return codec.current_schema().header + body


def _fastavro_body(datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, codec.current_schema().parsed, datum)
    return out.getvalue()


DECODE_ERRORS = {
    "empty-message": (b"", "short_header", "0 bytes, need at least 10"),
    "nine-bytes": (ENCODED[:9], "short_header", "9 bytes, need at least 10"),
    "wrong-marker": (b"\xc3\x02" + ENCODED[2:], "bad_marker", "marker is C3 02, expected C3 01"),
    "plain-json": (json.dumps(RECORD).encode(), "bad_marker", "marker is 7B 22"),
    "confluent-framing": (b"\x00\x00\x00\x00\x07" + ENCODED[10:], "bad_marker", "Confluent Schema Registry framing"),
    "unknown-fingerprint": (
        b"\xc3\x01" + bytes.fromhex("1234567890abcdef") + ENCODED[10:],
        "unknown_fingerprint",
        f"unknown schema fingerprint 0xefcdab9078563412; this consumer knows: {CURRENT_FP}",
    ),
    "header-only": (ENCODED[:10], "truncated_body", "truncated Avro body"),
    "last-byte-missing": (ENCODED[:-1], "truncated_body", "truncated"),
    "string-cut-short": (_with_body(b"\x02\x08ab"), "truncated_body", "eventVersion: string runs past the end"),
    "trailing-bytes": (ENCODED + b"\x00\x00", "trailing_bytes", "2 unexpected bytes after the Avro body"),
    "bad-union-tag": (_with_body(b"\x06"), "corrupt_body", "eventVersion: bad union tag byte 6"),
    "negative-length": (_with_body(b"\x02\x03"), "corrupt_body", "negative length"),
    "varint-beyond-64-bits": (_with_body(b"\x02" + b"\xff" * 9 + b"\x7f"), "corrupt_body", "exceeds 64 bits"),
    "varint-beyond-10-bytes": (
        _with_body(b"\x02" + b"\xff" * 9 + b"\x81\x01"),
        "corrupt_body",
        "varint longer than 10 bytes",
    ),
    "scalar-union-tag-beyond-its-branches": (
        _with_body(b"\x00" * 15 + b"\x04"),  # 15 absent members, then readOnly: ["null", "boolean"]
        "corrupt_body",
        "CloudTrailEvent.readOnly: no union branch for tag byte 4",
    ),
    "invalid-utf8-string": (_with_body(b"\x02\x02\xff"), "corrupt_body", "utf-8"),
    "bad-json-member": (
        _with_body(_fastavro_body({"requestParameters": "{not json"})),
        "bad_json_member",
        "CloudTrailEvent.requestParameters: member is not valid JSON text",
    ),
    "extra-fields-not-an-object": (
        _with_body(_fastavro_body({"extraFields": "[1]"})),
        "bad_json_member",
        "CloudTrailEvent.extraFields: must hold a JSON object",
    ),
}


@pytest.mark.parametrize(("data", "reason", "message"), list(DECODE_ERRORS.values()), ids=list(DECODE_ERRORS))
def test_bad_messages_raise_a_specific_decode_error(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode_event(data)
    assert caught.value.reason == reason
    assert message.lower() in str(caught.value).lower()


def test_every_truncation_point_is_reported_as_truncated() -> None:
    for cut in range(10, len(ENCODED)):
        with pytest.raises(DecodeError) as caught:
            codec.decode_event(ENCODED[:cut])
        assert caught.value.reason == "truncated_body", (cut, str(caught.value))


def test_decode_rejects_text_and_accepts_bytes_like() -> None:
    with pytest.raises(DecodeError, match="expected bytes to decode, got str") as caught:
        codec.decode_event(ENCODED.decode("latin-1"))  # type: ignore[arg-type]
    assert caught.value.reason == "not_bytes"
    assert codec.decode_event(bytearray(ENCODED)) == codec.decode_event(memoryview(ENCODED))


def test_a_codec_without_the_writer_schema_names_what_it_knows() -> None:
    schema = json.loads(json.dumps(codec.current_schema().schema))
    schema["fields"] = schema["fields"][1:]
    other = codec.KnownSchema.from_json(schema, source="other.avsc")
    data = SingleObjectCodec(writer=other).encode(RECORD)
    with pytest.raises(DecodeError, match=f"this consumer knows: {CURRENT_FP}") as caught:
        SingleObjectCodec().decode(data)
    assert f"0x{other.fingerprint:016x}" in str(caught.value)
    assert "cloudtrail_event.avsc" in str(caught.value)


# --------------------------------------------------------------------------------------------
# Confluent Schema Registry framing (no registry here: an in-memory stand-in with fastavro)


class FakeRegistry:
    """Plays the registry and the serializer pair, framing bodies as confluent-kafka does."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}

    def register(self, schema: dict[str, Any]) -> int:
        schema_id = 100 + len(self.schemas)
        self.schemas[schema_id] = json.dumps(schema)
        return schema_id

    def codec(self) -> ConfluentCodec:
        schema_id = self.register(codec.current_schema().schema)
        parsed = fastavro.parse_schema(json.loads(self.schemas[schema_id]))

        def serialize(datum: dict[str, Any], ctx: Any) -> bytes:
            out = io.BytesIO()
            out.write(b"\x00" + schema_id.to_bytes(4, "big"))
            fastavro.schemaless_writer(out, parsed, datum)
            return out.getvalue()

        def deserialize(data: bytes, ctx: Any) -> Any:
            writer = fastavro.parse_schema(json.loads(self.schemas[int.from_bytes(data[1:5], "big")]))
            return fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, None)

        def schema_for_id(schema_id: int) -> str:
            return self.schemas[schema_id]

        return ConfluentCodec(
            serializer=serialize, deserializer=deserialize, schema_for_id=schema_for_id, registry_url="fake://"
        )


def test_confluent_framing_roundtrip() -> None:
    registry = FakeRegistry()
    confluent = registry.codec()
    data = confluent.encode(RECORD)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 100
    assert confluent.decode(data) == RECORD


def test_confluent_codec_reads_an_older_writer_schema_from_the_registry() -> None:
    registry = FakeRegistry()
    confluent = registry.codec()
    old = json.loads(json.dumps(codec.current_schema().schema))
    old["fields"] = [f for f in old["fields"] if f["name"] != "tlsDetails"]
    old_id = registry.register(old)
    old_schema = codec.KnownSchema.from_json(old)
    record = {**RECORD, "tlsDetails": {"tlsVersion": "TLSv1.3"}}
    out = io.BytesIO()
    out.write(b"\x00" + old_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, old_schema.parsed, old_schema.converter.to_avro(record))
    assert confluent.decode(out.getvalue()) == record


def test_confluent_codec_also_reads_single_object_messages() -> None:
    assert FakeRegistry().codec().decode(ENCODED) == RECORD


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"\x00\x00\x01", "short_header", "3 bytes, need at least 5"),
        (b"\x05\x00\x00\x00\x64" + b"\x00" * 10, "bad_magic_byte", "magic byte is 0x05, expected 0x00"),
        (b"\x00\x00\x00\x03\xe7" + b"\x00" * 10, "unknown_schema_id", "unknown schema id 999 at fake://"),
        (b"\x00\x00\x00\x00\x64\x02", "truncated_body", "schema id 100"),
    ],
    ids=["too-short", "bad-magic-byte", "unknown-schema-id", "truncated-body"],
)
def test_confluent_decode_errors(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        FakeRegistry().codec().decode(data)
    assert caught.value.reason == reason
    assert message in str(caught.value)


def test_make_codec_defaults_to_single_object_and_needs_a_topic_for_a_registry() -> None:
    assert isinstance(codec.make_codec(), SingleObjectCodec)
    assert isinstance(codec.make_codec(""), SingleObjectCodec)
    with pytest.raises(CodecError, match="topic: required"):
        codec.make_codec("http://registry:8081")


def _registry_extras_available() -> bool:
    try:
        return importlib.util.find_spec("authlib") is not None and bool(
            importlib.util.find_spec("confluent_kafka.schema_registry")
        )
    except ImportError:
        return False


@pytest.mark.skipif(_registry_extras_available(), reason="confluent-kafka registry extras are installed")
def test_registry_codec_without_the_extras_says_what_to_install() -> None:
    with pytest.raises(CodecError, match=r"pip install 'confluent-kafka\[avro,schemaregistry\]'"):
        codec.make_codec("http://registry:8081", topic="cloudtrail.events")


@pytest.mark.skipif(not _registry_extras_available(), reason="needs confluent-kafka registry extras")
def test_registry_codec_roundtrip_with_the_mock_registry() -> None:
    confluent = codec.make_codec("mock://kafkatrail-unit", topic="cloudtrail.events")
    data = confluent.encode(RECORD)
    assert data[0] == 0
    assert confluent.decode(data) == RECORD
