"""The one error a trail definition raises: an AWS error code plus a message naming trail, member and rule."""

from __future__ import annotations


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
    return f"trail '{name}'" if isinstance(name, str) else "trail (no Name)"
