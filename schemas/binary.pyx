# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Avro binary bodies of event records, written and read in C (Cython).

This is the hot path of the codec. :mod:`schemas.compiled` walks a schema and builds a plan out of
the types here (:class:`BinaryRecord`, :class:`ArrayCodec`, :class:`ScalarUnion`); these execute
it: CloudTrail JSON object -> Avro binary body -> JSON object, in one pass each way, with no
intermediate Avro datum. The bytes written are exactly those ``fastavro.schemaless_writer`` writes
for ``RecordConverter.to_avro`` (the tests hold the two to that on every real and simulated record).

It also holds the JSON text helpers both compilers share: :func:`dump_json_bytes`,
:func:`load_json`, :func:`load_extra`.
"""

import json
import sys

import orjson

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Check, PyDict_Next
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsSsize_t, PyLong_CheckExact, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

from .errors import DecodeError, EncodeError


cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL  # borrowed
    # Not in the limited API, but exported by every CPython 3 and what Cython's own code uses for
    # dict displays: a dict with room for minused items, so decoding does not grow it step by step.
    dict _PyDict_NewPresized(Py_ssize_t minused)
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyBool_Check(object o)
    bint PyFloat_CheckExact(object o)
    double PyFloat_AS_DOUBLE(object o)
    bint PyFloat_Check(object o)
    bint PyList_Check(object o)
    bint PyTuple_Check(object o)
    Py_ssize_t PyList_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)  # borrowed
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)  # borrowed
    PyTypeObject* Py_TYPE(PyObject* o)
    PyTypeObject PyUnicode_Type
    PyTypeObject PyBool_Type
    PyTypeObject PyLong_Type
    PyTypeObject PyFloat_Type
    PyTypeObject PyDict_Type
    PyTypeObject PyList_Type
    int PyFloat_Pack8(double x, char* p, int le) except -1
    double PyFloat_Unpack8(const char* p, int le) except? -1.0

# Field kinds of a record plan (schemas.compiled builds plans with these).
K_STRING = 0   # ["null", "string"]
K_JSON = 1     # ["null", "string"] marked jsonText: any JSON value as JSON text
K_RECORD = 2   # ["null", record]: helper is a BinaryRecord
K_ARRAY = 3    # ["null", array]: helper is an ArrayCodec
K_SCALARS = 4  # ["null", scalar, ...]: helper is a ScalarUnion

cdef enum:
    _STRING = 0
    _JSON = 1
    _RECORD = 2
    _ARRAY = 3
    _SCALARS = 4
    # Scalar branches of unions and arrays.
    _B_STRING = 0
    _B_BOOLEAN = 1
    _B_LONG = 2
    _B_DOUBLE = 3
    _TAG_NULL = 0
    _TAG_SECOND = 2  # zig-zag varint of union index 1
    _STACK_BYTES = 4096
    _STACK_FIELDS = 64
    _CACHE_SLOTS = 128  # a power of two
    _MAX_WALK_DEPTH = 256  # orjson writes at most 255 levels

_BRANCHES = {"string": _B_STRING, "boolean": _B_BOOLEAN, "long": _B_LONG, "double": _B_DOUBLE}

EXTRA_FIELDS = "extraFields"

cdef object _orjson_dumps = orjson.dumps
cdef object _orjson_loads = orjson.loads
cdef object _json_dumps = json.dumps
cdef object _json_loads = json.loads


# --------------------------------------------------------------------------------------------
# JSON text


cpdef bytes dump_json_bytes(object value, str where):
    """UTF-8 JSON text of ``value``; a leading space marks text holding integers beyond 64 bits. NaN and
    +-Infinity are refused (EncodeError), never written as the ``null`` orjson would write for them."""
    cdef bytes text_bytes
    try:
        text_bytes = _orjson_dumps(value)
    except TypeError:
        pass  # an integer orjson cannot write (beyond 64 bits), or a type JSON lacks
    else:
        if _holds_non_finite(<PyObject*>value, 0):
            raise EncodeError(f"{where}: NaN/Infinity is not valid JSON")
        return text_bytes
    try:
        text = _json_dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return b" " + text.encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise EncodeError(f"{where}: value is not representable as JSON ({exc})") from exc
    except RecursionError:
        raise EncodeError(f"{where}: value is nested too deeply to encode") from None


cpdef bint holds_non_finite(object value):
    """Whether a float NaN or +-Infinity is anywhere in ``value`` (dicts, lists and tuples), which JSON text
    cannot hold and orjson writes as ``null``. For a value orjson has just written: it does not guard
    against a circular value."""
    return _holds_non_finite(<PyObject*>value, 0)


cdef bint _holds_non_finite(PyObject* value, int depth):
    """Whether a NaN or +-Infinity is anywhere in ``value``: the hot path's question, answered without
    taking a reference (a record orjson has just written is neither circular nor deeper than 255)."""
    cdef PyTypeObject* kind = Py_TYPE(value)
    cdef Py_ssize_t position = 0, index
    cdef PyObject* name
    cdef PyObject* item
    if kind == &PyUnicode_Type or kind == &PyBool_Type or kind == &PyLong_Type or value == <PyObject*>None:
        return False
    if kind == &PyFloat_Type:
        return not isfinite(PyFloat_AS_DOUBLE(<object>value))
    if depth >= _MAX_WALK_DEPTH:  # deeper than orjson writes
        return False
    if kind == &PyDict_Type or PyDict_Check(<object>value):
        while PyDict_Next(<object>value, &position, &name, &item):
            if _holds_non_finite(item, depth + 1):
                return True
    elif kind == &PyList_Type or PyList_Check(<object>value):
        for index in range(PyList_GET_SIZE(<object>value)):
            if _holds_non_finite(PyList_GET_ITEM(<object>value, index), depth + 1):
                return True
    elif PyTuple_Check(<object>value):
        for index in range(PyTuple_GET_SIZE(<object>value)):
            if _holds_non_finite(PyTuple_GET_ITEM(<object>value, index), depth + 1):
                return True
    elif PyFloat_Check(<object>value):  # a float subclass
        return not isfinite(PyFloat_AS_DOUBLE(<object>value))
    return False


cpdef object load_json(object text, str where):
    """Parse JSON text written by :func:`dump_json_bytes` (big integers stay exact)."""
    cdef bint exact
    if PyBytes_CheckExact(text):  # what the decoder passes
        exact = PyBytes_GET_SIZE(text) > 0 and PyBytes_AS_STRING(text)[0] == c' '
    else:
        exact = text[:1] in (b" ", " ")
    try:
        return _json_loads(text) if exact else _orjson_loads(text)
    except ValueError as exc:
        raise DecodeError("bad_json_member", f"{where}: member is not valid JSON text ({exc})") from exc
    except RecursionError:  # json.loads of text nested deeper than the interpreter's recursion limit
        raise DecodeError("bad_json_member", f"{where}: member is nested too deeply to read") from None


cpdef dict load_extra(object text, str where):
    """Parse an ``extraFields`` member: JSON text of an object."""
    extra = load_json(text, where)
    if not isinstance(extra, dict):
        raise DecodeError("bad_json_member", f"{where}: must hold a JSON object")
    return extra


# --------------------------------------------------------------------------------------------
# Output buffer: on the stack for a typical record, on the heap beyond


cdef struct Out:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity
    bint on_heap


cdef int _grow(Out* out, Py_ssize_t more) except -1:
    cdef Py_ssize_t capacity = max(out.size + more, 2 * out.capacity)
    cdef char* data
    if out.on_heap:
        data = <char*>PyMem_Realloc(out.data, capacity)
    else:
        data = <char*>PyMem_Malloc(capacity)
        if data != NULL:
            memcpy(data, out.data, out.size)
    if data == NULL:
        raise MemoryError()
    out.data = data
    out.capacity = capacity
    out.on_heap = True
    return 0


cdef inline int _put(Out* out, unsigned char byte) except -1:
    if out.size == out.capacity:
        _grow(out, 1)
    out.data[out.size] = <char>byte
    out.size += 1
    return 0


cdef inline int _put_raw(Out* out, const char* data, Py_ssize_t size) except -1:
    if out.size + size > out.capacity:
        _grow(out, size)
    memcpy(out.data + out.size, data, size)
    out.size += size
    return 0


cdef inline int _put_long(Out* out, int64_t value) except -1:
    cdef uint64_t n = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
    while n > 0x7F:
        _put(out, <unsigned char>((n & 0x7F) | 0x80))
        n >>= 7
    return _put(out, <unsigned char>n)


cdef inline int _put_bytes(Out* out, const char* data, Py_ssize_t size) except -1:
    _put_long(out, size)
    return _put_raw(out, data, size)


cdef inline int _put_str(Out* out, object text) except -1:
    cdef Py_ssize_t size
    cdef const char* data = PyUnicode_AsUTF8AndSize(text, &size)  # UnicodeEncodeError on lone surrogates
    return _put_bytes(out, data, size)


cdef inline int _put_json(Out* out, object value, str where) except -1:
    cdef bytes raw = dump_json_bytes(value, where)
    return _put_bytes(out, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))


# --------------------------------------------------------------------------------------------
# Scalars


cdef inline bint _accepts(int branch, object value):
    """Whether a JSON value belongs in a scalar branch without loss (ints stay ints, floats floats)."""
    cdef int overflow
    if branch == _B_STRING:
        return PyUnicode_CheckExact(value)
    if branch == _B_BOOLEAN:
        return PyBool_Check(value)
    if branch == _B_LONG:
        if not PyLong_CheckExact(value):
            return False
        PyLong_AsLongLongAndOverflow(value, &overflow)
        return overflow == 0
    return PyFloat_CheckExact(value)


cdef int _put_scalar(Out* out, int branch, object value) except -1:
    cdef char raw[8]
    cdef int overflow
    if branch == _B_STRING:
        return _put_str(out, value)
    if branch == _B_BOOLEAN:
        return _put(out, 1 if value is True else 0)
    if branch == _B_LONG:
        return _put_long(out, PyLong_AsLongLongAndOverflow(value, &overflow))  # checked by _accepts
    PyFloat_Pack8(PyFloat_AS_DOUBLE(value), raw, 1)
    return _put_raw(out, raw, 8)


# --------------------------------------------------------------------------------------------
# Input cursor


cdef struct In:
    const unsigned char* data
    Py_ssize_t pos
    Py_ssize_t size


cdef inline int _byte(In* src) except -1:
    if src.pos >= src.size:
        raise IndexError("Avro body ends mid-record")  # reported as truncated_body by the codec
    src.pos += 1
    return src.data[src.pos - 1]


cdef int64_t _read_long(In* src) except? -1:
    cdef unsigned char byte = _byte(src)
    cdef uint64_t n = byte & 0x7F
    cdef int shift = 7
    while byte & 0x80:
        if shift > 63:
            raise DecodeError("corrupt_body", f"varint longer than 10 bytes at offset {src.pos}")
        byte = _byte(src)
        if shift == 63 and byte & 0x7E:
            raise DecodeError("corrupt_body", f"varint exceeds 64 bits at offset {src.pos}")
        n |= <uint64_t>(byte & 0x7F) << shift
        shift += 7
    return <int64_t>((n >> 1) ^ (0 - (n & 1)))


cdef Py_ssize_t _read_size(In* src, str where) except -1:
    """Read a length prefix; the byte string then runs from ``src.pos`` for the returned length."""
    cdef int64_t size = _read_long(src)
    if size < 0:
        raise DecodeError("corrupt_body", f"{where}: negative length {size}")
    if size > src.size - src.pos:
        raise DecodeError("truncated_body", f"{where}: needs {size} bytes, {src.size - src.pos} left")
    return <Py_ssize_t>size


cdef inline object _read_str(In* src, Py_ssize_t size):
    cdef object text = PyUnicode_DecodeUTF8(<const char*>src.data + src.pos, size, NULL)
    src.pos += size
    return text


cdef inline object _read_json(In* src, Py_ssize_t size, str where):
    cdef bytes text = PyBytes_FromStringAndSize(<const char*>src.data + src.pos, size)
    src.pos += size
    return load_json(text, where)


cdef object _read_scalar(In* src, int branch, str where):
    if branch == _B_STRING:
        return _read_str(src, _read_size(src, where))
    if branch == _B_BOOLEAN:
        return _byte(src) != 0
    if branch == _B_LONG:
        return PyLong_FromLongLong(_read_long(src))
    if src.size - src.pos < 8:
        raise DecodeError("truncated_body", f"{where}: double needs 8 bytes, {src.size - src.pos} left")
    src.pos += 8
    return PyFloat_Unpack8(<const char*>src.data + src.pos - 8, 1)


# --------------------------------------------------------------------------------------------
# Plans


cdef class ScalarUnion:
    """A nullable union of several scalar branches, e.g. [null, long, double]."""

    cdef readonly str where
    cdef int branches[4]
    cdef int count

    def __init__(self, list members, str where):
        if not 1 <= len(members) <= 4:
            raise ValueError(f"{where}: a scalar union has 1 to 4 branches after null")
        self.where = where
        self.count = len(members)
        for index, member in enumerate(members):
            self.branches[index] = _BRANCHES[member]

    cdef int write(self, object value, Out* out) except -1:
        """Write tag and value and return 1, or return 0 when no branch takes the value."""
        cdef int index
        for index in range(self.count):
            if _accepts(self.branches[index], value):
                _put(out, <unsigned char>(2 * (index + 1)))
                _put_scalar(out, self.branches[index], value)
                return 1
        return 0

    cdef object read(self, unsigned char tag, In* src):
        if tag & 1 or tag > 2 * self.count:
            raise DecodeError("corrupt_body", f"{self.where}: no union branch for tag byte {tag}")
        return _read_scalar(src, self.branches[tag // 2 - 1], self.where)


cdef class ArrayCodec:
    """A nullable array of records or of one scalar type."""

    cdef readonly str where
    cdef BinaryRecord item_record
    cdef int item_branch

    def __init__(self, object item, str where):
        self.where = where
        if isinstance(item, BinaryRecord):
            self.item_record = item
            self.item_branch = -1
        else:
            self.item_record = None
            self.item_branch = _BRANCHES[item]

    cdef int write(self, object value, Out* out) except -1:
        """Write tag and array and return 1, or return 0 when the value is not such an array."""
        cdef list items
        cdef Py_ssize_t count
        if not PyList_CheckExact(value):
            return 0
        items = <list>value
        if self.item_record is not None:
            for item in items:
                if not PyDict_Check(item):
                    return 0
        else:
            for item in items:
                if not _accepts(self.item_branch, item):
                    return 0
        _put(out, _TAG_SECOND)
        count = len(items)
        if count:
            _put_long(out, count)
            for item in items:
                if self.item_record is not None:
                    self.item_record.write(item, out)
                else:
                    _put_scalar(out, self.item_branch, item)
        _put(out, 0)
        return 1

    cdef list read(self, In* src):
        cdef list items = []
        cdef int64_t count = _read_long(src)
        cdef uint64_t magnitude
        while count:
            if count < 0:  # a block with its byte size
                _read_long(src)
                magnitude = <uint64_t>(-(count + 1)) + 1
            else:
                magnitude = <uint64_t>count
            if magnitude > <uint64_t>(src.size - src.pos):  # every item takes at least one byte
                raise DecodeError(
                    "truncated_body", f"{self.where}: {magnitude} array items but {src.size - src.pos} bytes left"
                )
            for _ in range(magnitude):
                if self.item_record is not None:
                    items.append(self.item_record.read_from(src))
                else:
                    items.append(_read_scalar(src, self.item_branch, self.where))
            count = _read_long(src)
        return items


cdef class BinaryRecord:
    """CloudTrail JSON object <-> Avro binary body of one record type.

    Built empty, then given its fields with :meth:`set_fields` (a record may refer to itself).
    """

    cdef readonly str fullname
    cdef readonly bint has_extra
    cdef readonly str extra_where
    cdef readonly tuple names
    cdef readonly frozenset known
    cdef dict positions
    cdef tuple wheres
    cdef tuple helpers
    cdef int* kinds
    cdef Py_ssize_t count
    cdef Py_ssize_t size_hint  # the most members a decoded object of this type has had
    cdef PyObject* cache_keys[_CACHE_SLOTS]
    cdef Py_ssize_t cache_positions[_CACHE_SLOTS]

    def __init__(self, str fullname, bint has_extra):
        self.fullname = fullname
        self.has_extra = has_extra
        self.extra_where = f"{fullname}.{EXTRA_FIELDS}"
        self.names = ()
        self.wheres = ()
        self.helpers = ()
        self.known = frozenset()
        self.positions = {}
        self.count = 0

    def __dealloc__(self):
        PyMem_Free(self.kinds)
        for slot in range(_CACHE_SLOTS):
            Py_XDECREF(self.cache_keys[slot])

    cdef inline Py_ssize_t position_of(self, PyObject* key) except -2:
        """The field position of a member name, -1 when the schema does not name it.

        Names seen before are found by identity: records made alike (by orjson, or from literals)
        reuse the same name objects. Each cached name is kept alive, so its address cannot be taken
        by another object while it is cached.
        """
        cdef size_t slot = (<size_t>key >> 4) & (_CACHE_SLOTS - 1)
        cdef PyObject* found
        cdef Py_ssize_t position
        if self.cache_keys[slot] == key:
            return self.cache_positions[slot]
        found = PyDict_GetItemWithError(self.positions, <object>key)
        position = -1 if found == NULL else PyLong_AsSsize_t(<object>found)
        if PyUnicode_CheckExact(<object>key):  # str subclasses may compare unlike themselves: not cached
            Py_INCREF(<object>key)
            Py_XDECREF(self.cache_keys[slot])
            self.cache_keys[slot] = key
            self.cache_positions[slot] = position
        return position

    def set_fields(self, list fields):
        """``fields``: (name, where, kind, helper) in schema order, without extraFields."""
        kinds = <int*>PyMem_Malloc(max(len(fields), 1) * sizeof(int))
        if kinds == NULL:
            raise MemoryError()
        PyMem_Free(self.kinds)
        self.kinds = kinds
        for index, (_, _, kind, _) in enumerate(fields):
            if kind not in (K_STRING, K_JSON, K_RECORD, K_ARRAY, K_SCALARS):
                raise ValueError(f"unknown field kind {kind!r}")
            self.kinds[index] = kind
        # Interned: decoded records then share key objects with string literals in consumers' code,
        # so their lookups match by identity; records built from literals match ours the same way.
        self.names = tuple(sys.intern(field[0]) for field in fields)
        self.wheres = tuple(field[1] for field in fields)
        self.helpers = tuple(field[3] for field in fields)
        self.known = frozenset(self.names)
        self.positions = {name: index for index, name in enumerate(self.names)}
        self.count = len(fields)

    def encode(self, object obj, bytes header=b""):
        """``header`` followed by the Avro body of ``obj`` (a mapping), as bytes."""
        cdef char stack[_STACK_BYTES]
        cdef Out out
        out.data = stack
        out.size = 0
        out.capacity = _STACK_BYTES
        out.on_heap = False
        if not PyDict_Check(obj):
            obj = dict(obj)
        try:
            _put_raw(&out, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header))
            self.write(obj, &out)
            return PyBytes_FromStringAndSize(out.data, out.size)
        finally:
            if out.on_heap:
                PyMem_Free(out.data)

    cdef int write(self, object obj, Out* out) except -1:
        cdef PyObject* stack_values[_STACK_FIELDS]
        cdef PyObject** values = stack_values
        cdef Py_ssize_t index, position = 0
        cdef PyObject* key
        cdef PyObject* item
        cdef PyObject* found
        cdef bint unknown = False
        if self.count > _STACK_FIELDS:
            values = <PyObject**>PyMem_Malloc(self.count * sizeof(PyObject*))
            if values == NULL:
                raise MemoryError()
        memset(values, 0, self.count * sizeof(PyObject*))
        try:
            # One pass over the members: each finds its field (a member the schema does not name
            # is extra), and the fields are then written in schema order.
            while PyDict_Next(obj, &position, &key, &item):
                index = self.position_of(key)
                if index < 0:
                    unknown = True
                    continue
                Py_INCREF(<object>item)
                Py_XDECREF(values[index])  # NULL unless two keys equal one name (str subclasses)
                values[index] = item
            return self.write_values(obj, values, unknown, out)
        finally:
            for index in range(self.count):
                Py_XDECREF(values[index])
            if values != stack_values:
                PyMem_Free(values)

    cdef int write_values(self, object obj, PyObject** values, bint unknown, Out* out) except -1:
        cdef Py_ssize_t index
        cdef object value
        cdef int kind
        cdef list misfits = None
        for index in range(self.count):
            if values[index] == NULL:
                _put(out, _TAG_NULL)  # null: the member is absent
                continue
            value = <object>values[index]
            kind = self.kinds[index]
            if kind == _STRING:
                if PyUnicode_CheckExact(value):
                    _put(out, _TAG_SECOND)
                    _put_str(out, value)
                    continue
            elif kind == _JSON:
                _put(out, _TAG_SECOND)
                _put_json(out, value, self.wheres[index])
                continue
            elif kind == _RECORD:
                if PyDict_Check(value):
                    _put(out, _TAG_SECOND)
                    (<BinaryRecord>self.helpers[index]).write(value, out)
                    continue
            elif kind == _ARRAY:
                if (<ArrayCodec>self.helpers[index]).write(value, out):
                    continue
            elif (<ScalarUnion>self.helpers[index]).write(value, out):
                continue
            _put(out, _TAG_NULL)  # the value does not fit its typed field: it goes to extraFields
            if misfits is None:
                misfits = []
            misfits.append(self.names[index])
        if not unknown and misfits is None:
            if self.has_extra:
                _put(out, _TAG_NULL)
            return 0
        known = self.known
        if misfits is not None:
            known = known.difference(misfits)
        extra = {key: item for key, item in obj.items() if key not in known}  # in the object's order
        if not self.has_extra:
            raise EncodeError(f"{self.fullname}: no {EXTRA_FIELDS} member to carry {sorted(extra)}")
        _put(out, _TAG_SECOND)
        return _put_json(out, extra, self.extra_where)

    def decode(self, bytes data, Py_ssize_t pos=0):
        """The JSON object whose Avro body is ``data[pos:]``; the body must end where ``data`` ends."""
        cdef In src
        if pos < 0 or pos > PyBytes_GET_SIZE(data):
            raise ValueError(f"position {pos} is outside the data")
        src.data = <const unsigned char*>PyBytes_AS_STRING(data)
        src.pos = pos
        src.size = PyBytes_GET_SIZE(data)
        record = self.read_from(&src)
        if src.pos != src.size:
            raise DecodeError("trailing_bytes", f"{src.size - src.pos} unexpected bytes after the Avro body")
        return record

    cdef dict read_from(self, In* src):
        cdef dict out = _PyDict_NewPresized(self.size_hint)
        cdef Py_ssize_t index, size
        cdef unsigned char tag, first
        cdef int kind
        for index in range(self.count):
            tag = _byte(src)
            if tag == _TAG_NULL:  # null: the member was absent
                continue
            kind = self.kinds[index]
            if kind == _STRING or kind == _JSON:
                if tag != _TAG_SECOND:
                    raise DecodeError("corrupt_body", f"{self.wheres[index]}: bad union tag byte {tag}")
                first = _byte(src)
                if first < 0x80 and not first & 1:  # one-byte length, the common case
                    size = first >> 1
                    if size > src.size - src.pos:
                        raise DecodeError("truncated_body", f"{self.wheres[index]}: string runs past the end")
                else:
                    src.pos -= 1
                    size = _read_size(src, self.wheres[index])
                if kind == _STRING:
                    out[self.names[index]] = _read_str(src, size)
                else:
                    out[self.names[index]] = _read_json(src, size, self.wheres[index])
            elif kind == _SCALARS:
                out[self.names[index]] = (<ScalarUnion>self.helpers[index]).read(tag, src)
            elif tag != _TAG_SECOND:
                raise DecodeError("corrupt_body", f"{self.wheres[index]}: bad union tag byte {tag}")
            elif kind == _RECORD:
                out[self.names[index]] = (<BinaryRecord>self.helpers[index]).read_from(src)
            else:
                out[self.names[index]] = (<ArrayCodec>self.helpers[index]).read(src)
        if self.has_extra:
            tag = _byte(src)
            if tag == _TAG_SECOND:
                size = _read_size(src, self.extra_where)
                text = PyBytes_FromStringAndSize(<const char*>src.data + src.pos, size)
                src.pos += size
                out.update(load_extra(text, self.extra_where))
            elif tag != _TAG_NULL:
                raise DecodeError("corrupt_body", f"{self.extra_where}: bad union tag byte {tag}")
        if len(out) > self.size_hint:
            self.size_hint = len(out)
        return out
