"""The interface of `validation.pyx` (Cython): the checks a CloudTrail record passes, for type checkers."""

from typing import Any

MAX_RECORD_BYTES: int
REQUIRED_FIELDS: tuple[str, ...]
INSIGHT_REQUIRED_FIELDS: tuple[str, ...]
EVENT_CATEGORIES: frozenset[str]

class InvalidEventError(ValueError):
    field: str
    rule: str
    detail: str
    path: str
    def __init__(self, field: str, rule: str, message: str, *, path: str | None = None) -> None: ...
    def as_dict(self) -> dict[str, str]: ...

def find_unrepresentable(value: Any) -> tuple[str, str] | None: ...
def parse_event(data: bytes | bytearray | memoryview | str) -> dict[str, Any]: ...
def validated_json(record: dict[str, Any], *, max_bytes: int = ...) -> bytes: ...
def validate_event(event: Any, *, max_bytes: int = ...) -> dict[str, Any]: ...
