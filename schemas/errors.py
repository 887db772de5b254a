"""Errors raised by the event codec."""

from __future__ import annotations


class CodecError(ValueError):
    """Base class of the codec's errors."""


class EncodeError(CodecError):
    """A record could not be encoded."""


class DecodeError(CodecError):
    """Bytes could not be decoded; ``reason`` is a short code, the message says what was wrong.

    Reasons: ``not_bytes``, ``short_header``, ``bad_marker``, ``unknown_fingerprint``,
    ``bad_magic_byte``, ``unknown_schema_id``, ``truncated_body``, ``corrupt_body``,
    ``trailing_bytes``, ``bad_json_member``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
