"""Code compiled from an event schema, following the conventions in its ``doc``.

From one ``.avsc`` record schema two things are built:

* :class:`RecordConverter`: CloudTrail JSON object <-> Avro datum (a dict fastavro and the
  Confluent serializers understand);
* :class:`BinaryRecord`: CloudTrail JSON object <-> Avro binary body, directly. It is the hot path:
  it writes exactly the bytes ``fastavro.schemaless_writer`` writes for ``RecordConverter.to_avro``
  (the tests hold it to that) at a fraction of the cost, because fastavro reads and writes every
  varint through a file object, about 1 µs per field, and the event schema has some 60 fields.

Only the Avro subset the event contract uses is supported: records, arrays, unions whose first
branch is ``null``, and the primitives null, boolean, long, double, string. Fields marked
``"jsonText": true`` hold JSON text; a record's ``extraFields`` member (its last field) holds JSON
text of an object with every member that has no typed home.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import orjson

from .errors import CodecError, DecodeError, EncodeError

EXTRA_FIELDS: Final = "extraFields"
JSON_TEXT_ATTRIBUTE: Final = "jsonText"

_SCALARS: Final = frozenset({"null", "boolean", "long", "double", "string"})
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_DOUBLE: Final = struct.Struct("<d")
_ABSENT: Final = object()
_MISFIT: Final = object()  # "this value does not fit the typed field": it goes to extraFields


# --------------------------------------------------------------------------------------------
# JSON text


def dump_json_bytes(value: Any, where: str) -> bytes:
    """UTF-8 JSON text of ``value``; a leading space marks text holding integers beyond 64 bits."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass  # an integer orjson cannot write (beyond 64 bits), or a type JSON lacks
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return b" " + text.encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise EncodeError(f"{where}: value is not representable as JSON ({exc})") from exc


def load_json(text: bytes | str, where: str) -> Any:
    """Parse JSON text written by :func:`dump_json_bytes` (big integers stay exact)."""
    try:
        if text[:1] in (b" ", " "):
            return json.loads(text)
        return orjson.loads(text)
    except ValueError as exc:
        raise DecodeError("bad_json_member", f"{where}: member is not valid JSON text ({exc})") from exc


def _load_extra(text: bytes | str, where: str) -> dict[str, Any]:
    extra = load_json(text, where)
    if not isinstance(extra, dict):
        raise DecodeError("bad_json_member", f"{where}: must hold a JSON object")
    return extra


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
            out.update(_load_extra(extra_text, f"{self.fullname}.{EXTRA_FIELDS}"))
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
# JSON object <-> Avro binary body

_K_STRING, _K_JSON, _K_RECORD, _K_ARRAY, _K_SCALARS = range(5)
_TAG_NULL: Final = 0
_TAG_SECOND: Final = 2  # zig-zag varint of union index 1


def _write_long(out: bytearray, value: int) -> None:
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise DecodeError("corrupt_body", f"varint longer than 10 bytes at offset {pos}")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _read_size(data: bytes, pos: int, where: str) -> tuple[int, int]:
    """(start, end) of a length-prefixed byte string starting at ``pos``."""
    size, pos = _read_long(data, pos)
    if size < 0:
        raise DecodeError("corrupt_body", f"{where}: negative length {size}")
    end = pos + size
    if end > len(data):
        raise DecodeError("truncated_body", f"{where}: needs {size} bytes, {len(data) - pos} left")
    return pos, end


def _write_bytes(out: bytearray, raw: bytes) -> None:
    size = len(raw)
    if size < 64:
        out.append(size << 1)
    else:
        _write_long(out, size)
    out += raw


def _write_scalar(out: bytearray, branch: str, value: Any) -> None:
    if branch == "string":
        _write_bytes(out, value.encode())
    elif branch == "boolean":
        out.append(1 if value else 0)
    elif branch == "long":
        _write_long(out, value)
    else:  # double
        out += _DOUBLE.pack(value)


def _read_scalar(branch: str, data: bytes, pos: int, where: str) -> tuple[Any, int]:
    if branch == "string":
        start, end = _read_size(data, pos, where)
        return data[start:end].decode(), end
    if branch == "boolean":
        return data[pos] != 0, pos + 1
    if branch == "long":
        return _read_long(data, pos)
    if pos + 8 > len(data):
        raise DecodeError("truncated_body", f"{where}: double needs 8 bytes, {len(data) - pos} left")
    return _DOUBLE.unpack_from(data, pos)[0], pos + 8


class _ScalarUnion:
    """A nullable union of several scalar branches, e.g. [null, long, double]."""

    __slots__ = ("by_tag", "tagged", "where")

    def __init__(self, members: list[str], where: str) -> None:
        self.where = where
        self.tagged = [(2 * index, branch) for index, branch in enumerate(members, start=1)]
        self.by_tag = dict(self.tagged)

    def write(self, value: Any, out: bytearray) -> bool:
        for tag, branch in self.tagged:
            if _accepts(branch, value):
                out.append(tag)
                _write_scalar(out, branch, value)
                return True
        return False

    def read(self, tag: int, data: bytes, pos: int) -> tuple[Any, int]:
        branch = self.by_tag.get(tag)
        if branch is None:
            raise DecodeError("corrupt_body", f"{self.where}: no union branch for tag byte {tag}")
        return _read_scalar(branch, data, pos, self.where)


class _Array:
    """A nullable array of records or of one scalar type."""

    __slots__ = ("item_branch", "item_record", "where")

    def __init__(self, item: Any, where: str) -> None:
        self.where = where
        self.item_record: BinaryRecord | None = item if isinstance(item, BinaryRecord) else None
        self.item_branch: str | None = None if self.item_record is not None else item

    def write(self, value: Any, out: bytearray) -> bool:
        if type(value) is not list:
            return False
        record = self.item_record
        if record is not None:
            if not all(isinstance(item, dict) for item in value):
                return False
            out.append(_TAG_SECOND)
            if value:
                _write_long(out, len(value))
                for item in value:
                    record.write(item, out)
        else:
            branch = self.item_branch
            if not all(_accepts(branch, item) for item in value):  # type: ignore[arg-type]
                return False
            out.append(_TAG_SECOND)
            if value:
                _write_long(out, len(value))
                for item in value:
                    _write_scalar(out, branch, item)  # type: ignore[arg-type]
        out.append(0)
        return True

    def read(self, data: bytes, pos: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        record = self.item_record
        count, pos = _read_long(data, pos)
        while count:
            if count < 0:  # a block with its byte size
                count = -count
                _, pos = _read_long(data, pos)
            if count > len(data) - pos:  # every item takes at least one byte
                raise DecodeError(
                    "truncated_body", f"{self.where}: {count} array items but {len(data) - pos} bytes left"
                )
            for _ in range(count):
                if record is not None:
                    item, pos = record.read(data, pos)
                else:
                    item, pos = _read_scalar(self.item_branch, data, pos, self.where)  # type: ignore[arg-type]
                items.append(item)
            count, pos = _read_long(data, pos)
        return items, pos


class BinaryRecord:
    """CloudTrail JSON object <-> Avro binary body of one record type."""

    __slots__ = ("extra_where", "fullname", "has_extra", "known", "plan")

    def __init__(self, fullname: str) -> None:
        self.fullname = fullname
        self.plan: list[tuple[str, int, Any]] = []  # (field name, kind, per-kind helper)
        self.known: frozenset[str] = frozenset()
        self.has_extra = False
        self.extra_where = f"{fullname}.{EXTRA_FIELDS}"

    @classmethod
    def compile(cls, schema: Mapping[str, Any]) -> BinaryRecord:
        """Compile the binary codec of a top-level record schema."""
        return _compile_binary(schema, "", _Names())

    def write(self, obj: Mapping[str, Any], out: bytearray) -> None:
        """Append the Avro body of ``obj`` to ``out``."""
        known = self.known
        extra: dict[str, Any] | None = None
        if not obj.keys() <= known:
            extra = {key: value for key, value in obj.items() if key not in known}
        get = obj.get
        append = out.append
        absent, string, json_text, record = _ABSENT, _K_STRING, _K_JSON, _K_RECORD  # locals: hot loop
        for name, kind, helper in self.plan:
            value = get(name, absent)
            if value is absent:
                append(0)  # null: the member is absent
                continue
            if kind == string:
                if type(value) is str:
                    raw = value.encode()
                    if len(raw) < 64:  # one-byte length, the common case
                        append(2)
                        append(len(raw) << 1)
                        out += raw
                    else:
                        append(2)
                        _write_bytes(out, raw)
                    continue
            elif kind == json_text:
                append(2)
                _write_bytes(out, dump_json_bytes(value, helper))
                continue
            elif kind == record:
                if isinstance(value, dict):
                    append(2)
                    helper.write(value, out)
                    continue
            elif helper.write(value, out):  # _K_ARRAY or _K_SCALARS: writes its own tag
                continue
            append(0)
            if extra is None:
                extra = {}
            extra[name] = value
        if extra:
            if not self.has_extra:
                raise EncodeError(f"{self.fullname}: no {EXTRA_FIELDS} member to carry {sorted(extra)}")
            if len(extra) > 1:
                extra = {key: extra[key] for key in obj if key in extra}  # the converter's order
            out.append(_TAG_SECOND)
            _write_bytes(out, dump_json_bytes(extra, self.extra_where))
        elif self.has_extra:
            out.append(_TAG_NULL)

    def read(self, data: bytes, pos: int) -> tuple[dict[str, Any], int]:
        """Read one body starting at ``pos``: (JSON object, position after it)."""
        out: dict[str, Any] = {}
        data_end = len(data)
        string, json_text, scalars = _K_STRING, _K_JSON, _K_SCALARS  # locals: this loop is the hot path
        for name, kind, helper in self.plan:
            tag = data[pos]
            pos += 1
            if tag == 0:  # null: the member was absent
                continue
            if kind in (string, json_text):
                if tag != 2:
                    raise DecodeError("corrupt_body", f"{self.fullname}.{name}: bad union tag byte {tag}")
                size = data[pos]
                if size < 0x80 and not size & 1:  # one-byte length, the common case
                    pos += 1
                    end = pos + (size >> 1)
                    if end > data_end:
                        raise DecodeError("truncated_body", f"{self.fullname}.{name}: string runs past the end")
                else:
                    pos, end = _read_size(data, pos, f"{self.fullname}.{name}")
                if kind == string:
                    out[name] = data[pos:end].decode()
                else:
                    out[name] = load_json(data[pos:end], helper)
                pos = end
            elif kind == scalars:
                out[name], pos = helper.read(tag, data, pos)
            elif tag != 2:
                raise DecodeError("corrupt_body", f"{self.fullname}.{name}: bad union tag byte {tag}")
            else:  # _K_RECORD or _K_ARRAY
                out[name], pos = helper.read(data, pos)
        if self.has_extra:
            tag = data[pos]
            pos += 1
            if tag == _TAG_SECOND:
                start, end = _read_size(data, pos, self.extra_where)
                out.update(_load_extra(data[start:end], self.extra_where))
                pos = end
            elif tag != _TAG_NULL:
                raise DecodeError("corrupt_body", f"{self.extra_where}: bad union tag byte {tag}")
        return out, pos


def _compile_binary(schema: Mapping[str, Any], namespace: str, names: _Names) -> BinaryRecord:
    shape = _record_shape(schema, namespace)
    record = BinaryRecord(shape.fullname)
    names.records[shape.fullname] = record
    record.has_extra = shape.has_extra
    for name, where, members, json_text in shape.fields:
        if json_text:
            record.plan.append((name, _K_JSON, where))
        elif members == ["string"]:
            record.plan.append((name, _K_STRING, None))
        elif all(isinstance(m, str) and m in _SCALARS for m in members):
            record.plan.append((name, _K_SCALARS, _ScalarUnion(members, where)))
        else:
            kind, helper = _compile_binary_complex(members[0], shape.space, names, where)
            record.plan.append((name, kind, helper))
    record.known = frozenset(name for name, _, _ in record.plan)
    return record


def _compile_binary_complex(avro_type: Any, namespace: str, names: _Names, where: str) -> tuple[int, Any]:
    if isinstance(avro_type, str):
        return _K_RECORD, names.resolve(avro_type, namespace, where)
    kind = avro_type.get("type")
    if kind == "record":
        return _K_RECORD, _compile_binary(avro_type, namespace, names)
    if kind == "array":
        items = avro_type["items"]
        if isinstance(items, dict) and items.get("type") in _SCALARS:
            items = items["type"]
        if isinstance(items, str) and items in _SCALARS - {"null"}:
            return _K_ARRAY, _Array(items, where)
        _, item_record = _compile_binary_complex(items, namespace, names, where + "[]")
        return _K_ARRAY, _Array(item_record, where)
    raise CodecError(f"{where}: Avro type {kind!r} is not used by the event contract")
