"""Checks a CloudTrail request against botocore's CloudTrail service model.

botocore's ``ParamValidator`` checks types, required members, unknown members and minimum
lengths; it skips the model's maximum lengths, enums and patterns, which :func:`model_error`
checks from the same model. Nothing here restates a constraint by hand.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.validate import ParamValidator, ValidationErrors

from kafkatrail.trails.errors import cut, shown

_TYPE_NAMES = {
    "<class 'str'>": "a string",
    "<class 'bool'>": "a boolean",
    "<class 'list'>": "a list",
    "<class 'tuple'>": "a list",
    "<class 'dict'>": "a mapping",
}


@functools.cache
def _input_shape(operation: str) -> Shape:
    model = botocore.session.get_session().get_service_model("cloudtrail")
    return model.operation_model(operation).input_shape


def model_error(operation: str, request: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first way ``request`` breaks the CloudTrail model's input shape of ``operation``, or None.

    Returns ``(member path, rule)``, the path in AWS's notation (``EventSelectors[0].ReadWriteType``).
    """
    shape = _input_shape(operation)
    errors = _Validator().validate(request, shape)
    if errors.found:
        return errors.found[0]
    return _beyond_botocore(request, shape, "")


class _Findings(ValidationErrors):
    """botocore's error collector, also keeping each error as (member path, rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def report(self, name: str, reason: str, **kwargs: Any) -> None:
        super().report(name, reason, **kwargs)
        path = name.lstrip(".")
        if reason == "missing required field":
            self.found.append((_join(path, kwargs["required_name"]), "is required"))
        elif reason == "unknown field":
            allowed = ", ".join(kwargs["valid_names"])
            self.found.append((_join(path, cut(kwargs["unknown_param"])), f"unknown member (allowed: {allowed})"))
        elif reason == "invalid type":
            expected = " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t) for t in kwargs["valid_types"]))
            self.found.append((path, f"must be {expected} (got {shown(kwargs['param'])})"))
        elif reason == "invalid length":
            self.found.append((path, f"length must be at least {kwargs['min_allowed']} (got {kwargs['param']})"))
        elif reason == "invalid range":
            self.found.append((path, f"must be at least {kwargs['min_allowed']} (got {kwargs['param']})"))
        else:
            self.found.append((path, reason))


class _Validator(ParamValidator):
    """botocore's validator reporting into :class:`_Findings`."""

    def validate(self, params: Mapping[str, Any], shape: Shape) -> _Findings:
        errors = _Findings()
        self._validate(params, shape, errors, name="")
        return errors


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


def _beyond_botocore(value: Any, shape: Shape, path: str) -> tuple[str, str] | None:
    """Maximum lengths, enums and patterns of the model, on a value ParamValidator accepted."""
    kind = shape.type_name
    if kind == "structure":
        for member, item in value.items():
            found = _beyond_botocore(item, shape.members[member], _join(path, member))
            if found:
                return found
    elif kind == "list":
        maximum = shape.metadata.get("max")
        if maximum is not None and len(value) > maximum:
            return path, f"must have at most {maximum} items (got {len(value)})"
        for index, item in enumerate(value):
            found = _beyond_botocore(item, shape.member, f"{path}[{index}]")
            if found:
                return found
    elif kind == "string":
        return _string_error(value, shape, path)
    elif kind in ("integer", "long"):
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            return path, f"must be at most {maximum} (got {value})"
    return None


def _string_error(value: str, shape: Shape, path: str) -> tuple[str, str] | None:
    maximum = shape.metadata.get("max")
    if maximum is not None and len(value) > maximum:
        return path, f"must be at most {maximum} characters long (got {len(value)})"
    if shape.enum and value not in shape.enum:
        return path, f"must be one of {', '.join(shape.enum)} (got {shown(value)})"
    pattern = shape.metadata.get("pattern")
    # The model's patterns are Java regular expressions, whose \w and \d are ASCII-only.
    if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
        return path, f"must match the pattern {pattern} (got {shown(value)})"
    return None
