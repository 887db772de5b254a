# cython: language_level=3, boundscheck=False, wraparound=False
"""Checks an incoming CloudTrail record passes before it is produced.

:func:`validate_event` takes the record as a ``dict`` or as its JSON text (``bytes``/``str``) and
returns the record as a ``dict``; anything wrong raises :class:`InvalidEventError`, whose message
names the field and the rule, e.g.
``eventTime: must be an ISO-8601 UTC timestamp like 2024-08-01T13:33:28Z (got '2024-13-01')``.

The rules are kafkatrail's choices, drawn from AWS's record reference (docs/cloudtrail.md §1 links it);
they are strict where the pipeline depends on a field and lenient elsewhere:

* Input: bytes must be UTF-8 (rule ``utf8``), parse as strict JSON (``json``; orjson: no NaN, no
  comments, no trailing commas) and hold an object (``object``).
* JSON values (``json``): a record given as a dict may hold only what JSON text can: a float NaN or
  ±Infinity is refused (``requestParameters.ratio: NaN/Infinity is not valid JSON (got nan)``), never
  written as ``null`` as orjson would write it; so is a member name that is not a string (Python's
  json would write ``1`` as ``"1"``); a string or member name with a lone surrogate (text that is not
  UTF-8) is refused with rule ``utf8``. Tuples are taken as arrays. The message names the member's path; the error's
  ``field`` is only its top-level member (``record`` for an unknown one), so a metric label or a
  dead-letter reason made of ``field`` and ``rule`` has a bounded set of values whatever the input.
* Depth (``depth``): a record nested deeper than its JSON text can be written (orjson writes 255
  levels; beyond, or with integers beyond 64 bits, Python's json module writes as deep as the
  interpreter's recursion limit allows) is refused: ``record: is nested too deeply to encode``.
* Size (``size``): at most 256 KiB = 262,144 bytes, counted as the UTF-8 length of the record's
  compact JSON serialisation (no whitespace), which is what kafkatrail writes to log files and
  CloudWatch Logs. CloudTrail documents "256 KB" without saying how it counts; pretty-printed
  input is therefore not penalised for its whitespace.
* Required (``required``; missing or JSON null): ``eventVersion``, ``eventTime``, ``eventSource``,
  ``eventName``, ``awsRegion``, ``eventID``, ``eventType``, ``eventCategory`` and
  ``recipientAccountId``; ``eventCategory`` only from eventVersion 1.07, which introduced it, so
  older log files still replay. AWS's record reference lists ``recipientAccountId`` as optional (it appeared in 1.02),
  but kafkatrail requires it: log files are delivered per account and region, and that account
  is the recipient account. Insights records (``eventCategory`` ``Insight``) have no
  ``eventSource``/``eventName``; they need ``insightDetails`` instead. ``userIdentity``,
  ``sourceIPAddress``, ``requestParameters`` and ``responseElements`` are "always" present in
  AWS's table but are not required (AWS itself emits unusual shapes, so kafkatrail is lenient there).
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

This module is compiled with Cython: it runs for every record a producer emits. The formats are
checked by small C matchers rather than regular expressions; the tests hold each matcher to the
regular expression it replaces.
"""

import json
from collections.abc import Mapping
from typing import Any

import orjson

from .binary import holds_non_finite

from cpython.dict cimport PyDict_CheckExact, PyDict_Next
from cpython.long cimport PyLong_AsSsize_t
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_CheckExact
from libc.math cimport isfinite
from libc.string cimport memset


cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    Py_UCS4 PyUnicode_READ_CHAR(object text, Py_ssize_t index)
    PyTypeObject* Py_TYPE(PyObject* o)
    bint PyFloat_Check(object o)
    double PyFloat_AS_DOUBLE(object o)
    bint PyDict_Check(object o)
    bint PyList_Check(object o)
    bint PyTuple_Check(object o)
    bint PyUnicode_Check(object o)

__all__ = [
    "INSIGHT_REQUIRED_FIELDS",
    "MAX_RECORD_BYTES",
    "REQUIRED_FIELDS",
    "InvalidEventError",
    "find_unrepresentable",
    "parse_event",
    "validate_event",
]

MAX_RECORD_BYTES = 256 * 1024

REQUIRED_FIELDS = (
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
INSIGHT_REQUIRED_FIELDS = (
    "eventVersion",
    "eventTime",
    "awsRegion",
    "eventID",
    "eventType",
    "eventCategory",
    "recipientAccountId",
    "insightDetails",
)
EVENT_CATEGORIES = frozenset({"Management", "Data", "NetworkActivity", "Insight"})

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
cdef dict _FIELD_TYPES = {
    **dict.fromkeys(_STRING_FIELDS, str),
    **dict.fromkeys(_OBJECT_FIELDS, dict),
    "readOnly": bool,
    "managementEvent": bool,
    "resources": list,
}
cdef tuple _RESOURCE_STRINGS = ("ARN", "accountId", "type")

# _check_record reads the record once: each known member's value lands in a slot, by field number.
cdef enum:
    _FIELD_COUNT = 32
    _CACHE_SLOTS = 128  # a power of two
cdef tuple _FIELDS = tuple(_FIELD_TYPES)
cdef tuple _TYPES = tuple(_FIELD_TYPES.values())
cdef dict _NUMBERS = {name: number for number, name in enumerate(_FIELDS)}
assert len(_FIELDS) == _FIELD_COUNT
cdef tuple _REQUIRED = tuple(_NUMBERS[name] for name in REQUIRED_FIELDS)
cdef tuple _INSIGHT_REQUIRED = tuple(_NUMBERS[name] for name in INSIGHT_REQUIRED_FIELDS)
cdef tuple _NON_EMPTY = tuple(_NUMBERS[name] for name in ("eventSource", "eventName", "eventType"))
cdef Py_ssize_t _VERSION = _NUMBERS["eventVersion"]
cdef Py_ssize_t _TIME = _NUMBERS["eventTime"]
cdef Py_ssize_t _ID = _NUMBERS["eventID"]
cdef Py_ssize_t _ACCOUNT = _NUMBERS["recipientAccountId"]
cdef Py_ssize_t _REGION = _NUMBERS["awsRegion"]
cdef Py_ssize_t _CATEGORY = _NUMBERS["eventCategory"]
cdef Py_ssize_t _SHARED_ID = _NUMBERS["sharedEventID"]
cdef Py_ssize_t _RESOURCES = _NUMBERS["resources"]

# Member names seen before, by identity: records made alike (by orjson, or from literals) reuse the
# same name objects, so most lookups end here. Each cached name is kept alive, so its address cannot
# be taken by another object while it is cached.
cdef PyObject* _cache_names[_CACHE_SLOTS]
cdef Py_ssize_t _cache_numbers[_CACHE_SLOTS]
memset(_cache_names, 0, sizeof(_cache_names))


cdef inline Py_ssize_t _number_of(PyObject* name) except -2:
    """The field number of a member name, -1 when it is not a known top-level field."""
    cdef size_t slot = (<size_t>name >> 4) & (_CACHE_SLOTS - 1)
    cdef PyObject* found
    cdef Py_ssize_t number
    if _cache_names[slot] == name:
        return _cache_numbers[slot]
    found = PyDict_GetItemWithError(_NUMBERS, <object>name)
    number = -1 if found == NULL else PyLong_AsSsize_t(<object>found)
    if PyUnicode_CheckExact(<object>name):  # str subclasses may compare unlike themselves: not cached
        Py_INCREF(<object>name)
        Py_XDECREF(_cache_names[slot])
        _cache_names[slot] = name
        _cache_numbers[slot] = number
    return number

# Re-serialising JSON text compactly can only grow it by rewriting numbers (1e9 -> 1000000000.0),
# by less than 8x; text up to MAX/8 bytes therefore cannot exceed MAX and is not measured.
cdef Py_ssize_t _GROWTH_BOUND = 8
cdef Py_ssize_t _UTF8_MAX_BYTES_PER_CHAR = 4


class InvalidEventError(ValueError):
    """A record broke a validation rule: ``field`` (``record`` for the whole input) and ``rule``.

    ``path`` is where in the record, as the message names it (``requestParameters.ratio``); it is
    ``field`` unless the problem lies below a top-level member. ``field`` and ``rule`` take a bounded
    set of values (metric labels, dead-letter reasons); ``path`` does not.
    """

    def __init__(self, field: str, rule: str, message: str, *, path: str | None = None) -> None:
        where = field if path is None else path
        super().__init__(f"{where}: {message}")
        self.field = field
        self.rule = rule
        self.detail = message
        self.path = where

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


cdef dict _TYPE_NAMES = {str: "a string", dict: "an object", bool: "a boolean", list: "an array"}
cdef tuple _TEXT_TYPES = (bytes, bytearray, memoryview, str)


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


cdef bytes _compact_json(object record):
    cdef bytes body
    try:
        body = orjson.dumps(record)
    except TypeError:
        pass  # integers beyond 64 bits, or a value JSON cannot hold
    else:
        if holds_non_finite(record):  # orjson writes NaN and +-Infinity as null, silently
            _refuse_unrepresentable(record)
        return body
    _refuse_unrepresentable(record)  # before json.dumps, which would write a member name 1 as "1", silently
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except RecursionError:
        raise InvalidEventError("record", "depth", "is nested too deeply to encode") from None
    except (TypeError, ValueError) as exc:
        _refuse_unrepresentable(record)
        raise InvalidEventError("record", "json", f"holds a value JSON cannot represent ({exc})") from None


# --------------------------------------------------------------------------------------------
# Values JSON text cannot hold: NaN and +-Infinity, and text that is not UTF-8 (lone surrogates)

cdef enum:
    _FOUND_NOTHING = 0
    _FOUND_NUMBER = 1  # NaN or +-Infinity
    _FOUND_TEXT = 2    # a string with a lone surrogate
    _FOUND_NAME = 3    # a member name with a lone surrogate
    _FOUND_NAME_TYPE = 4  # a member name that is not a string
    _MAX_WALK_DEPTH = 1100  # beyond what Python's json writes at its default recursion limit (orjson: 255)


_PATH_NAME_LIMIT = 40
_PATH_LIMIT = 200
_PLAIN_NAME_EXCLUDED = frozenset(".[]'\"\\")


cdef bint _is_text_ok(object text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


cdef int _find(object value, list path, set open_containers, int depth) except -1:
    """What ``value`` holds first (in document order) that JSON text cannot, as one of the _FOUND_ codes;
    ``path`` then holds the member names and indexes leading to it, innermost first (after the number
    itself, for _FOUND_NUMBER). ``open_containers`` holds the ids of the containers being walked: one met
    again inside itself is skipped, since a record whose encoding failed may be circular. Only failures
    come here; the hot path asks :func:`holds_non_finite` first."""
    cdef Py_ssize_t position = 0, index
    cdef PyObject* name
    cdef PyObject* item
    cdef int found
    cdef bint is_dict
    if PyFloat_Check(value):
        if isfinite(PyFloat_AS_DOUBLE(value)):
            return _FOUND_NOTHING
        path.append(value)  # the caller takes it back off: the message shows it
        return _FOUND_NUMBER
    if PyUnicode_Check(value):
        return _FOUND_NOTHING if _is_text_ok(value) else _FOUND_TEXT
    is_dict = PyDict_Check(value)
    if not (is_dict or PyList_Check(value) or PyTuple_Check(value)) or depth >= _MAX_WALK_DEPTH:
        return _FOUND_NOTHING
    if id(value) in open_containers:
        return _FOUND_NOTHING
    open_containers.add(id(value))
    try:
        if is_dict:
            while PyDict_Next(value, &position, &name, &item):
                if not PyUnicode_Check(<object>name):
                    path.append(<object>name)
                    return _FOUND_NAME_TYPE
                if not _is_text_ok(<object>name):
                    path.append(<object>name)
                    return _FOUND_NAME
                found = _find(<object>item, path, open_containers, depth + 1)
                if found:
                    path.append(<object>name)
                    return found
        else:
            for index in range(len(value)):
                found = _find(value[index], path, open_containers, depth + 1)
                if found:
                    path.append(index)
                    return found
        return _FOUND_NOTHING
    finally:
        open_containers.discard(id(value))


def _path_text(list parts) -> str:
    """``requestParameters.items[2].name``; an odd or long member name is quoted (``['a.b']``), and the
    whole is cut to a short prefix, so a message never echoes a large or misleading key."""
    pieces = []
    for part in parts:
        if isinstance(part, int):
            pieces.append(f"[{part}]")
        elif (isinstance(part, str) and part and len(part) <= _PATH_NAME_LIMIT and part.isprintable()
              and _PLAIN_NAME_EXCLUDED.isdisjoint(part)):
            pieces.append(f".{part}" if pieces else part)
        else:
            pieces.append(f"[{_shown(part, _PATH_NAME_LIMIT)}]")
    text = "".join(pieces)
    return text if len(text) <= _PATH_LIMIT else text[: _PATH_LIMIT - 3] + "..."


def find_unrepresentable(value: Any) -> tuple[str, str] | None:
    """Where ``value`` (a dict, list or scalar as JSON parsers make them) first holds what JSON text
    cannot: ``(path, kind)``, kind ``number`` for NaN or +-Infinity, ``text`` for a string and ``name``
    for a member name that is not UTF-8 (a lone surrogate), ``name_type`` for a member name that is not
    a string; None when nothing is."""
    cdef list path = []
    cdef int found = _find(value, path, set(), 0)
    if found == _FOUND_NOTHING:
        return None
    path.reverse()
    if found == _FOUND_NUMBER:
        path.pop()
    return _path_text(path), ("number", "text", "name", "name_type")[found - 1]


cdef int _refuse_unrepresentable(object record) except -1:
    """Raise InvalidEventError naming the path to the first value of ``record`` JSON text cannot hold."""
    cdef list path = []
    cdef int found = _find(record, path, set(), 0)
    if found == _FOUND_NOTHING:
        return 0
    path.reverse()
    value = path.pop() if found == _FOUND_NUMBER else None
    field = path[0] if isinstance(path[0], str) and path[0] in _NUMBERS else "record"
    where = _path_text(path)
    if found == _FOUND_NUMBER:
        raise InvalidEventError(field, "json", f"NaN/Infinity is not valid JSON (got {value!r})", path=where)
    if found == _FOUND_NAME_TYPE:  # (no negative indexes: the module is compiled with wraparound=False)
        name = path.pop()
        raise InvalidEventError(field, "json", f"member names must be strings (got {_shown(name)})",
                                path=_path_text(path) or "record")
    problem = "member name" if found == _FOUND_NAME else "string"
    raise InvalidEventError(field, "utf8", f"{problem} is not valid UTF-8 (it holds a lone surrogate)", path=where)


cdef Py_ssize_t _serialized_size(object record) except -1:
    return len(_compact_json(record))


cdef int _check_size(Py_ssize_t size, Py_ssize_t max_bytes) except -1:
    if size > max_bytes:
        raise InvalidEventError(
            "record", "size", f"is {size:,} bytes as compact JSON; the limit is {max_bytes:,} bytes"
        )
    return 0


def validated_json(dict record, *, Py_ssize_t max_bytes=MAX_RECORD_BYTES) -> bytes:
    """Validate a record dict as `validate_event` does and return its compact JSON, the bytes the size
    limit is measured on, so a caller that forwards the record as JSON does not serialise it twice."""
    cdef bytes body = _compact_json(record)
    _check_size(len(body), max_bytes)
    _check_record(record)
    return body


def validate_event(event, *, Py_ssize_t max_bytes=MAX_RECORD_BYTES):
    """Validate one CloudTrail record (dict or JSON text) and return it as a dict.

    ``event``: a mapping, or JSON text as ``bytes``, ``bytearray``, ``memoryview`` or ``str``.
    Raises :class:`InvalidEventError` naming the first field and rule that failed.
    """
    cdef Py_ssize_t size, bound
    if PyDict_CheckExact(event):
        record = event
        size = _serialized_size(record)
    elif isinstance(event, _TEXT_TYPES):
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
    _check_size(size, max_bytes)
    _check_record(record)
    return record


def _predates_event_category(version: Any) -> bool:
    """eventCategory arrived in eventVersion 1.07; replayed older log files do not carry it."""
    return isinstance(version, str) and version.startswith("1.") and version[2:].isdigit() and int(version[2:]) < 7


cdef int _check_record(dict record) except -1:
    cdef PyObject* values[_FIELD_COUNT]
    cdef Py_ssize_t position = 0, number
    cdef PyObject* name
    cdef PyObject* value
    cdef PyObject* expected
    memset(values, 0, sizeof(values))
    try:
        while PyDict_Next(record, &position, &name, &value):
            number = _number_of(name)
            if number < 0:
                continue  # an unknown member: allowed
            Py_INCREF(<object>value)
            values[number] = value
            expected = PyTuple_GET_ITEM(_TYPES, number)
            if <PyObject*>Py_TYPE(value) == expected or <object>value is None:
                continue
            if not isinstance(<object>value, <object>expected):
                raise InvalidEventError(
                    <object>name, "type", f"must be {_TYPE_NAMES[<object>expected]} (got {_shown(<object>value)})"
                )
        return _check_values(values)
    finally:
        for number in range(_FIELD_COUNT):
            Py_XDECREF(values[number])


cdef inline object _value(PyObject** values, Py_ssize_t number):
    """The member's value; None when it is absent."""
    return None if values[number] == NULL else <object>values[number]


cdef int _check_values(PyObject** values) except -1:
    category = _value(values, _CATEGORY)
    for number in (_INSIGHT_REQUIRED if category == "Insight" else _REQUIRED):
        if _value(values, number) is None:
            name = _FIELDS[number]
            if name == "eventCategory" and _predates_event_category(_value(values, _VERSION)):
                continue
            got = " (got null)" if values[number] != NULL else ""
            raise InvalidEventError(name, "required", f"is required{got}")
    for number in _NON_EMPTY:
        if _value(values, number) == "":
            raise InvalidEventError(_FIELDS[number], "non_empty", "must be a non-empty string")

    version = <object>values[_VERSION]
    major = _event_version_major(version)
    if major < 0:
        raise InvalidEventError(
            "eventVersion", "format", f"must be <major>.<minor> digits like 1.11 (got {_shown(version)})"
        )
    if major != 1:
        raise InvalidEventError("eventVersion", "major_version", f"major version must be 1 (got {_shown(version)})")

    event_time = <object>values[_TIME]
    if not _is_event_time(event_time):
        raise InvalidEventError(
            "eventTime",
            "format",
            f"must be an ISO-8601 UTC timestamp like 2024-08-01T13:33:28Z (got {_shown(event_time)})",
        )

    event_id = <object>values[_ID]
    if not _is_guid(event_id):
        raise InvalidEventError(
            "eventID",
            "format",
            f"must be a GUID like 0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a90 (got {_shown(event_id)})",
        )

    account = <object>values[_ACCOUNT]
    if not _is_account_id(account):
        raise InvalidEventError(
            "recipientAccountId", "format", f"must be a 12-digit AWS account id (got {_shown(account)})"
        )

    region = <object>values[_REGION]
    if not _is_region(region):
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

    shared = _value(values, _SHARED_ID)
    if shared is not None and not _is_guid(shared):
        raise InvalidEventError("sharedEventID", "format", f"must be a GUID (got {_shown(shared)})")

    resources = _value(values, _RESOURCES)
    if resources:
        _check_resources(resources)
    return 0


cdef int _check_resources(object resources) except -1:
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            raise InvalidEventError(f"resources[{index}]", "type", f"must be an object (got {_shown(resource)})")
        for key in _RESOURCE_STRINGS:
            value = resource.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidEventError(f"resources[{index}].{key}", "type", f"must be a string (got {_shown(value)})")
    return 0


# --------------------------------------------------------------------------------------------
# Formats. Each matcher takes a str (the type checks come first) and accepts exactly what the
# regular expression in its docstring fully matches; [0-9], [a-z] and [a-fA-F] are ASCII only.


cdef inline bint _is_digit(Py_UCS4 char):
    return c'0' <= char <= c'9'


cdef inline bint _is_lower(Py_UCS4 char):
    return c'a' <= char <= c'z'


cdef inline bint _is_hex(Py_UCS4 char):
    return _is_digit(char) or c'a' <= char <= c'f' or c'A' <= char <= c'F'


cdef bint _matches_template(object text, const char* template, Py_ssize_t length):
    """Each ``D`` of the template is a digit, each ``H`` a hex digit, anything else itself."""
    cdef Py_ssize_t index
    cdef Py_UCS4 char
    if PyUnicode_GET_LENGTH(text) != length:
        return False
    for index in range(length):
        char = PyUnicode_READ_CHAR(text, index)
        if template[index] == c'D':
            if not _is_digit(char):
                return False
        elif template[index] == c'H':
            if not _is_hex(char):
                return False
        elif char != <Py_UCS4>template[index]:
            return False
    return True


cdef int _digits(object text, Py_ssize_t start, Py_ssize_t stop):
    cdef int value = 0
    cdef Py_ssize_t index
    for index in range(start, stop):
        value = value * 10 + <int>PyUnicode_READ_CHAR(text, index) - <int>c'0'
    return value


cdef int _days_in_month(int year, int month):
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


cdef bint _is_event_time(object text):
    """``[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z`` naming a real time (year 1 to 9999)."""
    cdef int year, month, day
    if not _matches_template(text, b"DDDD-DD-DDTDD:DD:DDZ", 20):
        return False
    year = _digits(text, 0, 4)
    month = _digits(text, 5, 7)
    day = _digits(text, 8, 10)
    return (
        year >= 1
        and 1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and _digits(text, 11, 13) <= 23
        and _digits(text, 14, 16) <= 59
        and _digits(text, 17, 19) <= 59
    )


cdef bint _is_guid(object text):
    """``[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}``"""
    return _matches_template(text, b"HHHHHHHH-HHHH-HHHH-HHHH-HHHHHHHHHHHH", 36)


cdef bint _is_account_id(object text):
    """``[0-9]{12}``"""
    return _matches_template(text, b"DDDDDDDDDDDD", 12)


cdef bint _is_region(object text):
    """``[a-z]{2,}(?:-[a-z]+){1,3}-[0-9]{1,2}[a-z]?``

    No character class holds ``-``, so the hyphens split the name into its words: a first word of
    two or more letters, one to three words of letters, and a last word of one or two digits and
    an optional letter.
    """
    cdef Py_ssize_t length = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t end, at, start = 0, words = 0
    cdef Py_UCS4 char
    for end in range(length):  # each word but the last ends at a hyphen
        if PyUnicode_READ_CHAR(text, end) != c'-':
            continue
        if words == 4 or end - start < (2 if words == 0 else 1):
            return False
        for at in range(start, end):
            if not _is_lower(PyUnicode_READ_CHAR(text, at)):
                return False
        words += 1
        start = end + 1
    if words < 2 or not 1 <= length - start <= 3 or not _is_digit(PyUnicode_READ_CHAR(text, start)):
        return False
    for at in range(start + 1, length):  # the last word: [0-9]{1,2}[a-z]?
        char = PyUnicode_READ_CHAR(text, at)
        if _is_digit(char):
            if at != start + 1:
                return False
        elif not (_is_lower(char) and at == length - 1):
            return False
    return True


cdef int _event_version_major(object text):
    """``([0-9]+)\\.[0-9]+``: 1 when group 1 is ``1``, 2 for another major, -1 when it does not match."""
    cdef Py_ssize_t length = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t index, dot = -1
    cdef Py_UCS4 char
    for index in range(length):
        char = PyUnicode_READ_CHAR(text, index)
        if char == c'.' and dot < 0:
            dot = index
        elif not _is_digit(char):
            return -1
    if dot < 1 or dot == length - 1:
        return -1
    return 1 if dot == 1 and PyUnicode_READ_CHAR(text, 0) == c'1' else 2

