"""The interface of `binary.pyx` (Cython): the Avro body codec of CloudTrail records, for type checkers."""

from typing import Any

K_STRING: int
K_JSON: int
K_RECORD: int
K_ARRAY: int
K_SCALARS: int
EXTRA_FIELDS: str

def dump_json_bytes(value: object, where: str) -> bytes: ...
def holds_non_finite(value: object) -> bool: ...
def load_json(text: object, where: str) -> object: ...
def load_extra(text: object, where: str) -> dict[str, Any]: ...

class ScalarUnion:
    where: str
    def __init__(self, members: list[str], where: str) -> None: ...

class ArrayCodec:
    where: str
    def __init__(self, item: object, where: str) -> None: ...

class BinaryRecord:
    fullname: str
    has_extra: bool
    extra_where: str
    names: tuple[str, ...]
    known: frozenset[str]
    def __init__(self, fullname: str, has_extra: bool) -> None: ...
    def set_fields(self, fields: list[tuple[str, str, int, object]]) -> None: ...
    def encode(self, obj: object, header: bytes = b"") -> bytes: ...
    def decode(self, data: bytes, pos: int = 0) -> dict[str, Any]: ...
