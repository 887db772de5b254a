"""The one error a trail definition raises: an AWS error code plus a message naming trail, member and rule."""

from __future__ import annotations

import reprlib

SHOWN_LIMIT = 60  # characters of an input value a message quotes
LABEL_LIMIT = 256  # characters of a trail name a message quotes: twice the longest valid name

_REPR = reprlib.Repr()
_REPR.maxlevel = 3  # a deeply nested value is shown as [[[...]]], never walked to its bottom
_REPR.maxstring = _REPR.maxother = SHOWN_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


class TrailError(ValueError):
    """A trail broke a CloudTrail rule.

    ``code`` is the error name CloudTrail uses (``InvalidEventSelectorsException``, ...), ready for a
    JSON 1.1 ``__type``; ``message`` names the trail, the member and the rule, e.g.
    ``trail 'audit': AdvancedEventSelectors[0].FieldSelectors[2]: operator StartsWith is not allowed
    for field resources.type (Equals only)``. ``str()`` is ``"<code>: <message>"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def within(self, context: str) -> TrailError:
        """The same error with ``context`` (a file, a list index) put in front of the message."""
        return TrailError(self.code, f"{context}: {self.message}")


def trail_label(name: object) -> str:
    """How a message names a trail: ``trail 'audit'``, or ``trail (no Name)`` when it has none."""
    return f"trail '{cut(name, LABEL_LIMIT)}'" if isinstance(name, str) else "trail (no Name)"


def shown(value: object) -> str:
    """``repr(value)`` short enough to quote in a message: strings, lists and mappings are cut (to about
    SHOWN_LIMIT characters, 4 items, 3 levels), so a message never echoes all of a large or deep input."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_LIMIT + 10 else text[:SHOWN_LIMIT] + "..."


def cut(name: object, limit: int = SHOWN_LIMIT) -> str:
    """A member name or trail name as a message writes it (unquoted), cut to ``limit`` characters."""
    text = name if isinstance(name, str) else shown(name)
    return text if len(text) <= limit else text[:limit - 3] + "..."
