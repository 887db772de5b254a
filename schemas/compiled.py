"""Code compiled from an event schema, following the conventions in its ``doc``.

From one ``.avsc`` record schema two things are built:

* :class:`RecordConverter`: CloudTrail JSON object <-> Avro datum (a dict fastavro and the
  Confluent serializers understand);
* :func:`compile_binary`: the plan of :class:`kafkatrail.schemas.binary.BinaryRecord`, which turns a CloudTrail
  JSON object into an Avro binary body and back directly, in C. It is the hot path: it writes
  exactly the bytes ``fastavro.schemaless_writer`` writes for ``RecordConverter.to_avro`` (the tests
  hold it to that) at a fraction of the cost.

Only the Avro subset the event contract uses is supported: records, arrays, unions whose first
branch is ``null``, and the primitives null, boolean, long, double, string. Fields marked
``"jsonText": true`` hold JSON text; a record's ``extraFields`` member (its last field) holds JSON
text of an object with every member that has no typed home.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from .binary import (
    EXTRA_FIELDS,
    K_ARRAY,
    K_JSON,
    K_RECORD,
    K_SCALARS,
    K_STRING,
    ArrayCodec,
    BinaryRecord,
    ScalarUnion,
    dump_json_bytes,
    load_extra,
    load_json,
)
from .errors import CodecError, EncodeError

JSON_TEXT_ATTRIBUTE: Final = "jsonText"

_SCALARS: Final = frozenset({"null", "boolean", "long", "double", "string"})
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_MISFIT: Final = object()  # "this value does not fit the typed field": it goes to extraFields


# --------------------------------------------------------------------------------------------
# Schema walking shared by both compilers


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _accepts(branch: str, value: Any) -> bool:
    """Whether a JSON value belongs in a scalar branch without loss (ints stay ints, floats floats)."""
    kind = type(value)
    if branch == "string":
        return kind is str
    if branch == "boolean":
        return kind is bool
    if branch == "long":
        return kind is int and _INT64_MIN <= value <= _INT64_MAX
    if branch == "double":
        return kind is float
    return False


def _union_members(avro_type: Any, where: str) -> list[Any]:
    """The union's members after ``null`` (which must come first: optional fields default to null)."""
    if not isinstance(avro_type, list) or not avro_type or avro_type[0] != "null":
        raise CodecError(f"{where}: every event field must be a union whose first branch is null")
    members = [m["type"] if isinstance(m, dict) and m.get("type") in _SCALARS else m for m in avro_type[1:]]
    if any(m == "null" for m in members):
        raise CodecError(f"{where}: null appears twice in the union")
    scalars = [m for m in members if isinstance(m, str) and m in _SCALARS]
    if scalars and len(scalars) != len(members):
        raise CodecError(f"{where}: a union mixing scalars and complex types is not supported")
    if "double" in scalars and "long" in scalars and scalars.index("double") < scalars.index("long"):
        raise CodecError(f"{where}: put long before double so integers are not written as doubles")
    if not scalars and len(members) != 1:
        raise CodecError(f"{where}: a union may hold one complex type only")
    return members


class _Names:
    """Named types seen so far in one schema walk (records only)."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    def resolve(self, name: str, namespace: str, where: str) -> Any:
        found = self.records.get(_fullname(name, namespace)) or self.records.get(name)
        if found is None:
            raise CodecError(f"{where}: unknown named type {name!r}")
        return found


def _check_extra_last(schema: Mapping[str, Any], where: str) -> bool:
    names = [f["name"] for f in schema["fields"]]
    if EXTRA_FIELDS not in names:
        return False
    if names[-1] != EXTRA_FIELDS:
        raise CodecError(f"{where}: {EXTRA_FIELDS} must be the record's last field")
    return True


class _Field(NamedTuple):
    name: str
    where: str
    members: list[Any]
    json_text: bool


class _RecordShape(NamedTuple):
    """One record schema, checked: its names, whether it carries extraFields, and its other fields."""

    fullname: str
    space: str
    has_extra: bool
    fields: list[_Field]


def _record_shape(schema: Mapping[str, Any], namespace: str) -> _RecordShape:
    """Check a record schema once for both compilers (converter and binary codec)."""
    fullname = _fullname(schema["name"], schema.get("namespace", namespace))
    has_extra = _check_extra_last(schema, fullname)
    fields = []
    for avro_field in schema["fields"]:
        name = avro_field["name"]
        where = f"{fullname}.{name}"
        members = _union_members(avro_field["type"], where)
        if name == EXTRA_FIELDS:
            continue
        json_text = bool(avro_field.get(JSON_TEXT_ATTRIBUTE))
        if json_text and members != ["string"]:
            raise CodecError(f"{where}: a jsonText field must be a nullable string")
        fields.append(_Field(name, where, members, json_text))
    return _RecordShape(fullname, fullname.rpartition(".")[0], has_extra, fields)


# --------------------------------------------------------------------------------------------
# JSON object <-> Avro datum

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]
_EXTRA_SLOT: Final = object()


class RecordConverter:
    """CloudTrail JSON object <-> datum of one Avro record type."""

    __slots__ = ("decoders", "encoders", "fullname", "has_extra")

    def __init__(self, fullname: str) -> None:
        self.fullname = fullname
        self.encoders: dict[str, Encoder] = {}
        self.decoders: dict[str, Any] = {}  # None: the value passes unchanged
        self.has_extra = False

    @classmethod
    def compile(cls, schema: Mapping[str, Any]) -> RecordConverter:
        """Compile the converter of a top-level record schema."""
        return _compile_converter(schema, "", _Names())

    def to_avro(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """JSON object -> datum (absent members are left out: they take their null default)."""
        out: dict[str, Any] = {}
        extra: dict[str, Any] | None = None
        encoders = self.encoders
        for key, value in obj.items():
            encoder = encoders.get(key)
            if encoder is not None:
                avro_value = encoder(value)
                if avro_value is not _MISFIT:
                    out[key] = avro_value
                    continue
            if extra is None:
                extra = {}
            extra[key] = value
        if extra is not None:
            if not self.has_extra:
                raise EncodeError(f"{self.fullname}: no {EXTRA_FIELDS} member to carry {sorted(extra)}")
            out[EXTRA_FIELDS] = dump_json_bytes(extra, f"{self.fullname}.{EXTRA_FIELDS}").decode()
        return out

    def from_avro(self, datum: Mapping[str, Any]) -> dict[str, Any]:
        """Datum -> JSON object."""
        out: dict[str, Any] = {}
        extra_text: str | None = None
        decoders = self.decoders
        for key, value in datum.items():
            if value is None:
                continue
            decoder = decoders.get(key)
            if decoder is None:
                out[key] = value
            elif decoder is _EXTRA_SLOT:
                extra_text = value
            else:
                out[key] = decoder(value)
        if extra_text is not None:
            out.update(load_extra(extra_text, f"{self.fullname}.{EXTRA_FIELDS}"))
        return out


def _compile_converter(schema: Mapping[str, Any], namespace: str, names: _Names) -> RecordConverter:
    shape = _record_shape(schema, namespace)
    converter = RecordConverter(shape.fullname)
    names.records[shape.fullname] = converter
    converter.has_extra = shape.has_extra
    for field in shape.fields:
        if field.json_text:
            codec = _json_converter(field.where)
        else:
            codec = _compile_value(field.members, shape.space, names, field.where)
        converter.encoders[field.name], converter.decoders[field.name] = codec
    if shape.has_extra:
        converter.decoders[EXTRA_FIELDS] = _EXTRA_SLOT
    return converter


def _json_converter(where: str) -> tuple[Encoder, Decoder]:
    def encode(value: Any) -> str:
        return dump_json_bytes(value, where).decode()

    def decode(text: str) -> Any:
        return load_json(text, where)

    return encode, decode


def _scalar_encoder(members: list[str]) -> Encoder:
    if members == ["string"]:
        return lambda value: value if type(value) is str else _MISFIT

    def encode(value: Any) -> Any:
        return value if any(_accepts(m, value) for m in members) else _MISFIT

    return encode


def _compile_value(members: list[Any], namespace: str, names: _Names, where: str) -> tuple[Encoder, Any]:
    if all(isinstance(m, str) and m in _SCALARS for m in members):
        return _scalar_encoder(members), None
    return _compile_complex(members[0], namespace, names, where)


def _compile_complex(avro_type: Any, namespace: str, names: _Names, where: str) -> tuple[Encoder, Any]:
    if isinstance(avro_type, str):
        if avro_type in _SCALARS:
            return _scalar_encoder([avro_type]), None
        return _record_converter_codec(names.resolve(avro_type, namespace, where))
    kind = avro_type.get("type")
    if kind == "record":
        return _record_converter_codec(_compile_converter(avro_type, namespace, names))
    if kind == "array":
        item_encoder, item_decoder = _compile_complex(avro_type["items"], namespace, names, where + "[]")

        def encode_array(value: Any) -> Any:
            if type(value) is not list:
                return _MISFIT
            items = [item_encoder(item) for item in value]
            return _MISFIT if any(item is _MISFIT for item in items) else items

        if item_decoder is None:
            return encode_array, None
        return encode_array, lambda value: [item_decoder(item) for item in value]
    raise CodecError(f"{where}: Avro type {kind!r} is not used by the event contract")


def _record_converter_codec(converter: RecordConverter) -> tuple[Encoder, Decoder]:
    to_avro = converter.to_avro
    return (lambda value: to_avro(value) if isinstance(value, dict) else _MISFIT), converter.from_avro


# --------------------------------------------------------------------------------------------
# Plans for the compiled Avro body codec (schemas.binary)


def _compile_binary(schema: Mapping[str, Any], namespace: str, names: _Names) -> BinaryRecord:
    shape = _record_shape(schema, namespace)
    record = BinaryRecord(shape.fullname, shape.has_extra)
    names.records[shape.fullname] = record
    fields: list[tuple[str, str, int, Any]] = []
    for name, where, members, json_text in shape.fields:
        if json_text:
            fields.append((name, where, K_JSON, None))
        elif members == ["string"]:
            fields.append((name, where, K_STRING, None))
        elif all(isinstance(m, str) and m in _SCALARS for m in members):
            fields.append((name, where, K_SCALARS, ScalarUnion(members, where)))
        else:
            kind, helper = _compile_binary_complex(members[0], shape.space, names, where)
            fields.append((name, where, kind, helper))
    record.set_fields(fields)
    return record


def _compile_binary_complex(avro_type: Any, namespace: str, names: _Names, where: str) -> tuple[int, Any]:
    if isinstance(avro_type, str):
        return K_RECORD, names.resolve(avro_type, namespace, where)
    kind = avro_type.get("type")
    if kind == "record":
        return K_RECORD, _compile_binary(avro_type, namespace, names)
    if kind == "array":
        items = avro_type["items"]
        if isinstance(items, dict) and items.get("type") in _SCALARS:
            items = items["type"]
        if isinstance(items, str) and items in _SCALARS - {"null"}:
            return K_ARRAY, ArrayCodec(items, where)
        _, item_record = _compile_binary_complex(items, namespace, names, where + "[]")
        return K_ARRAY, ArrayCodec(item_record, where)
    raise CodecError(f"{where}: Avro type {kind!r} is not used by the event contract")


def compile_binary(schema: Mapping[str, Any]) -> BinaryRecord:
    """Compile the Avro body codec (:class:`kafkatrail.schemas.binary.BinaryRecord`) of a top-level record schema."""
    return _compile_binary(schema, "", _Names())
