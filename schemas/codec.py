"""The event contract's codec: CloudTrail JSON record <-> Avro datum <-> bytes on Kafka.

* Record model. :func:`to_avro` / :func:`from_avro` turn a CloudTrail record (the JSON object, as a
  ``dict``) into a datum of ``cloudtrail_event.avsc`` and back. The trip is lossless as parsed JSON:
  absent and JSON ``null`` stay distinct, unknown members survive at every level, ints stay ints
  and floats stay floats:

  - a typed Avro field that is ``null`` means the JSON member was absent;
  - free-form members (``requestParameters``, ``responseElements``, ``additionalEventData``,
    ``serviceEventDetails``, ``edgeDeviceDetails``, ``eventContext``,
    ``webIdFederationData.attributes``) are JSON text: Avro ``null`` = absent, the text ``null`` =
    present with JSON ``null``;
  - every record type ends with ``extraFields``: JSON text of an object holding the members the
    schema does not name (a newer eventVersion's additions, unknown keys inside ``userIdentity``,
    ``tlsDetails`` …) and any named member whose value does not fit its typed field (JSON ``null``,
    another JSON type, an integer beyond 64 bits). Decoding merges it back.

  Converters are compiled from the schema (:mod:`kafkatrail.schemas.compiled`), so code and ``.avsc`` agree.

* :class:`SingleObjectCodec`, the default: Avro single-object encoding, i.e. the marker ``C3 01``,
  the CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form as 8 little-endian
  bytes, then the binary body. A reader decodes every schema it knows by fingerprint
  (:class:`KnownSchemas`: the current ``cloudtrail_event.avsc`` plus older versions kept beside it
  as ``cloudtrail_event.v<N>.avsc``), each with its own compiled reader, so nothing an older writer
  wrote is dropped. Bodies are written and read by :class:`kafkatrail.schemas.binary.BinaryRecord` (compiled
  to C), which produces the same bytes as fastavro at a small fraction of its cost on this wide schema.

* :class:`ConfluentCodec`: Confluent Schema Registry framing (magic byte ``0``, 4-byte big-endian
  schema id, body) through confluent-kafka's ``AvroSerializer`` / ``AvroDeserializer``, used when a
  registry URL is configured. It also reads single-object messages, to ease a migration.

:func:`make_codec` picks one from configuration. Errors: :class:`EncodeError` and
:class:`DecodeError` (both :class:`CodecError`, a ``ValueError``); ``DecodeError.reason`` is a short
code, the message says what was wrong.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Protocol

from fastavro import parse_schema
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from .binary import BinaryRecord
from .compiled import EXTRA_FIELDS, RecordConverter, compile_binary
from .errors import CodecError, DecodeError, EncodeError

__all__ = [
    "CURRENT_SCHEMA_FILE",
    "EXTRA_FIELDS",
    "SINGLE_OBJECT_MARKER",
    "CodecError",
    "ConfluentCodec",
    "DecodeError",
    "EncodeError",
    "EventCodec",
    "KnownSchema",
    "KnownSchemas",
    "SingleObjectCodec",
    "current_schema",
    "decode_event",
    "default_codec",
    "encode_event",
    "from_avro",
    "load_schema",
    "make_codec",
    "packaged_schemas",
    "to_avro",
]

SINGLE_OBJECT_MARKER: Final = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN: Final = len(SINGLE_OBJECT_MARKER) + 8
CONFLUENT_MAGIC_BYTE: Final = 0
CONFLUENT_HEADER_LEN: Final = 5
CURRENT_SCHEMA_FILE: Final = "cloudtrail_event.avsc"


# --------------------------------------------------------------------------------------------
# Known schemas


@dataclass(frozen=True, eq=False)
class KnownSchema:
    """One event schema, parsed and compiled once, with its fingerprint."""

    source: str
    fullname: str
    fingerprint: int
    schema: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)  # fastavro's parsed form
    canonical_form: str = field(repr=False)
    fingerprint_bytes: bytes = field(repr=False)  # little-endian, as in the single-object header
    converter: RecordConverter = field(repr=False)
    binary: BinaryRecord = field(repr=False)

    @classmethod
    def from_json(cls, schema: Mapping[str, Any] | str, source: str = "<inline>") -> KnownSchema:
        """Parse an event schema (JSON text or dict) and precompute everything coding needs."""
        raw: dict[str, Any] = json.loads(schema) if isinstance(schema, str) else dict(schema)
        if raw.get("type") != "record":
            raise CodecError(f"{source}: an event schema must be an Avro record")
        parsed = parse_schema(raw)  # also checks the schema is valid Avro
        canonical = to_parsing_canonical_form(raw)
        # fastavro gives the 8 fingerprint bytes little-endian, the single-object header's order
        # (the tests pin this against the Avro spec's algorithm and published vectors).
        fp_bytes = bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))
        converter = RecordConverter.compile(raw)
        return cls(
            source=source,
            fullname=converter.fullname,
            fingerprint=int.from_bytes(fp_bytes, "little"),
            schema=raw,
            parsed=parsed,
            canonical_form=canonical,
            fingerprint_bytes=fp_bytes,
            converter=converter,
            binary=compile_binary(raw),
        )

    @property
    def header(self) -> bytes:
        """The 10-byte single-object header for this schema."""
        return SINGLE_OBJECT_MARKER + self.fingerprint_bytes

    def describe(self) -> str:
        """``0x<fingerprint> (<full name>, <where it came from>)``."""
        return f"0x{self.fingerprint:016x} ({self.fullname}, {self.source})"


class KnownSchemas:
    """The writer schemas a reader accepts, by fingerprint (immutable)."""

    __slots__ = ("_by_bytes",)

    def __init__(self, schemas: Iterable[KnownSchema]) -> None:
        self._by_bytes: dict[bytes, KnownSchema] = {s.fingerprint_bytes: s for s in schemas}

    def with_schema(self, schema: KnownSchema) -> KnownSchemas:
        """A copy that also knows ``schema``."""
        return KnownSchemas([*self, schema])

    def by_fingerprint_bytes(self, fp_bytes: bytes) -> KnownSchema | None:
        """The schema whose header fingerprint is these 8 bytes, if known."""
        return self._by_bytes.get(fp_bytes)

    def by_fingerprint(self, fingerprint: int) -> KnownSchema | None:
        """The schema with this 64-bit fingerprint, if known."""
        return self._by_bytes.get(fingerprint.to_bytes(8, "little"))

    def describe(self) -> str:
        """One line naming every known schema."""
        return ", ".join(s.describe() for s in self) or "no schema"

    def __iter__(self) -> Iterator[KnownSchema]:
        return iter(self._by_bytes.values())

    def __len__(self) -> int:
        return len(self._by_bytes)

    def __contains__(self, schema: object) -> bool:
        return isinstance(schema, KnownSchema) and schema.fingerprint_bytes in self._by_bytes


def _package_files() -> Any:
    return resources.files(__package__ or "schemas")


def load_schema(file_name: str = CURRENT_SCHEMA_FILE) -> KnownSchema:
    """Load one ``.avsc`` shipped in this package."""
    text = _package_files().joinpath(file_name).read_text(encoding="utf-8")
    return KnownSchema.from_json(text, source=file_name)


@functools.cache
def current_schema() -> KnownSchema:
    """The schema this version writes (``cloudtrail_event.avsc``)."""
    return load_schema(CURRENT_SCHEMA_FILE)


@functools.cache
def packaged_schemas() -> KnownSchemas:
    """Every event schema shipped here: the current one and any ``cloudtrail_event.v<N>.avsc``."""
    older = sorted(
        entry.name
        for entry in _package_files().iterdir()
        if entry.name.startswith("cloudtrail_event.v") and entry.name.endswith(".avsc")
    )
    return KnownSchemas([current_schema(), *(load_schema(name) for name in older)])


def _require_object(record: Any) -> None:
    if not isinstance(record, Mapping):
        raise EncodeError(f"record: must be a JSON object (dict), got {type(record).__name__}")


def to_avro(record: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a CloudTrail record (JSON object as dict) to a datum of the current schema."""
    _require_object(record)
    return current_schema().converter.to_avro(record)


def from_avro(datum: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a datum of the current schema back to the CloudTrail record (dict)."""
    return current_schema().converter.from_avro(datum)


# --------------------------------------------------------------------------------------------
# Codecs


class EventCodec(Protocol):
    """What producers and consumers need: a record to bytes and back."""

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise DecodeError("not_bytes", f"expected bytes to decode, got {type(data).__name__}")


class SingleObjectCodec:
    """Avro single-object encoding (the default codec).

    ``writer`` is the schema ``encode`` writes (default: the current one); ``known`` the schemas
    ``decode`` accepts (default: every packaged schema; the writer is always added).
    """

    __slots__ = ("_by_header", "_encode", "_header", "known", "writer")

    def __init__(self, writer: KnownSchema | None = None, known: KnownSchemas | None = None) -> None:
        self.writer = writer if writer is not None else current_schema()
        known = known if known is not None else packaged_schemas()
        self.known = known if self.writer in known else known.with_schema(self.writer)
        self._header = self.writer.header
        self._encode = self.writer.binary.encode
        self._by_header = {schema.header: schema for schema in self.known}

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one CloudTrail record: header + Avro binary body."""
        if type(record) is not dict:  # the hot path skips the costlier Mapping check
            _require_object(record)
        try:
            return self._encode(record, self._header)
        except UnicodeEncodeError as exc:
            raise EncodeError(f"record: text is not encodable as UTF-8 ({exc})") from exc

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one single-object message back to the CloudTrail record."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        writer = self._by_header.get(data[:SINGLE_OBJECT_HEADER_LEN])
        if writer is None:
            raise self._header_error(data)
        return _read_body(data, SINGLE_OBJECT_HEADER_LEN, writer)

    def _header_error(self, data: bytes) -> DecodeError:
        """What is wrong with a header that names no known schema."""
        if len(data) < SINGLE_OBJECT_HEADER_LEN:
            return DecodeError(
                "short_header",
                f"message too short for an Avro single-object header: {len(data)} bytes, need at "
                f"least {SINGLE_OBJECT_HEADER_LEN} (2-byte marker C3 01 + 8-byte schema fingerprint)",
            )
        if data[:2] != SINGLE_OBJECT_MARKER:
            hint = ""
            if data[0] == CONFLUENT_MAGIC_BYTE:
                hint = " (this looks like Confluent Schema Registry framing: configure the registry URL)"
            return DecodeError(
                "bad_marker",
                f"not an Avro single-object message: marker is {data[:2].hex(' ').upper()}, expected C3 01{hint}",
            )
        fingerprint = int.from_bytes(data[2:SINGLE_OBJECT_HEADER_LEN], "little")
        return DecodeError(
            "unknown_fingerprint",
            f"unknown schema fingerprint 0x{fingerprint:016x}; this consumer knows: {self.known.describe()}",
        )


def _read_body(data: bytes, offset: int, writer: KnownSchema) -> dict[str, Any]:
    """Read the Avro body at ``data[offset:]`` written with ``writer``; it must end exactly there."""
    try:
        return writer.binary.decode(data, offset)
    except DecodeError as exc:
        raise DecodeError(exc.reason, f"{exc} (schema {writer.describe()})") from exc
    except IndexError as exc:
        raise DecodeError(
            "truncated_body",
            f"truncated Avro body: {len(data) - offset} bytes after the header end mid-record "
            f"(schema {writer.describe()})",
        ) from exc
    except UnicodeDecodeError as exc:
        raise DecodeError("corrupt_body", f"corrupt Avro body: {exc} (schema {writer.describe()})") from exc


class ConfluentCodec:
    """Confluent Schema Registry wire format: magic byte 0, 4-byte big-endian schema id, body.

    Build it with :meth:`from_url`. The constructor takes the serializer pieces directly, so the
    framing and conversion can be exercised without a registry. Messages in single-object
    encoding are decoded too.
    """

    def __init__(
        self,
        *,
        serializer: Callable[[dict[str, Any], Any], bytes | None],
        deserializer: Callable[[bytes, Any], Any],
        schema_for_id: Callable[[int], str],
        context: Any = None,
        writer: KnownSchema | None = None,
        registry_url: str = "<registry>",
    ) -> None:
        self.writer = writer if writer is not None else current_schema()
        self.registry_url = registry_url
        self._serializer = serializer
        self._deserializer = deserializer
        self._schema_for_id = schema_for_id
        self._context = context
        self._single_object = SingleObjectCodec(self.writer)
        self._converters: dict[int, RecordConverter] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        topic: str,
        registry_conf: Mapping[str, Any] | None = None,
        auto_register: bool = True,
        writer: KnownSchema | None = None,
    ) -> ConfluentCodec:
        """Codec backed by the Schema Registry at ``url``; the subject is ``<topic>-value``."""
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext
        except ImportError as exc:
            raise CodecError(
                "the Schema Registry codec needs confluent-kafka's registry extras "
                f"(pip install 'confluent-kafka[avro,schemaregistry]'): {exc}"
            ) from exc
        writer = writer if writer is not None else current_schema()
        conf = {**(registry_conf or {}), "url": url}
        new_client = getattr(SchemaRegistryClient, "new_client", SchemaRegistryClient)  # knows mock://
        client = new_client(conf)
        serializer = AvroSerializer(client, json.dumps(writer.schema), conf={"auto.register.schemas": auto_register})
        deserializer = AvroDeserializer(client)  # no reader schema: datums come in the writer's shape

        def schema_for_id(schema_id: int) -> str:
            return client.get_schema(schema_id).schema_str

        return cls(
            serializer=serializer,
            deserializer=deserializer,
            schema_for_id=schema_for_id,
            context=SerializationContext(topic, MessageField.VALUE),
            writer=writer,
            registry_url=url,
        )

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record in Confluent framing (registers the schema on first use)."""
        _require_object(record)
        datum = self.writer.converter.to_avro(record)
        try:
            data = self._serializer(datum, self._context)
        except Exception as exc:  # registry unreachable, registration refused, datum rejected
            raise EncodeError(f"Schema Registry serialization failed ({self.registry_url}): {exc}") from exc
        if not data:
            raise EncodeError("Schema Registry serializer returned no bytes")
        return data

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode Confluent framing (single-object messages are recognised by C3 01)."""
        data = _as_bytes(data)
        if data[:2] == SINGLE_OBJECT_MARKER:
            return self._single_object.decode(data)
        if len(data) < CONFLUENT_HEADER_LEN:
            raise DecodeError(
                "short_header",
                f"message too short for Confluent framing: {len(data)} bytes, need at least "
                f"{CONFLUENT_HEADER_LEN} (magic byte 0 + 4-byte schema id)",
            )
        if data[0] != CONFLUENT_MAGIC_BYTE:
            raise DecodeError(
                "bad_magic_byte",
                f"not Confluent Schema Registry framing: magic byte is 0x{data[0]:02X}, expected 0x00 "
                "(single-object messages start with C3 01)",
            )
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")
        converter = self._converter_for(schema_id)
        try:
            datum = self._deserializer(data, self._context)
        except Exception as exc:  # the serializers report corrupt bodies through many types
            raise DecodeError(
                "truncated_body",
                f"truncated or corrupt Avro body (schema id {schema_id}): {type(exc).__name__}: {exc}",
            ) from exc
        return converter.from_avro(datum)

    def _converter_for(self, schema_id: int) -> RecordConverter:
        converter = self._converters.get(schema_id)
        if converter is not None:
            return converter
        try:
            text = self._schema_for_id(schema_id)
        except Exception as exc:
            raise DecodeError(
                "unknown_schema_id", f"unknown schema id {schema_id} at {self.registry_url}: {exc}"
            ) from exc
        try:
            schema = KnownSchema.from_json(text, source=f"registry schema id {schema_id}")
        except Exception as exc:
            raise DecodeError(
                "unknown_schema_id",
                f"schema id {schema_id} at {self.registry_url} is not a usable event schema: {exc}",
            ) from exc
        local = self._single_object.known.by_fingerprint_bytes(schema.fingerprint_bytes)
        converter = (local or schema).converter
        self._converters[schema_id] = converter
        return converter


@functools.cache
def default_codec() -> SingleObjectCodec:
    """The process-wide single-object codec for the current schema."""
    return SingleObjectCodec()


def encode_event(record: Mapping[str, Any]) -> bytes:
    """Encode a record with the default (single-object) codec."""
    return default_codec().encode(record)


def decode_event(data: bytes) -> dict[str, Any]:
    """Decode single-object bytes with the default codec."""
    return default_codec().decode(data)


def make_codec(
    registry_url: str | None = None,
    *,
    topic: str | None = None,
    registry_conf: Mapping[str, Any] | None = None,
) -> EventCodec:
    """Single-object codec, or the Schema Registry codec when ``registry_url`` is set (needs ``topic``)."""
    if not registry_url:
        return default_codec()
    if not topic:
        raise CodecError("topic: required with a Schema Registry URL (the subject is <topic>-value)")
    return ConfluentCodec.from_url(registry_url, topic=topic, registry_conf=registry_conf)
