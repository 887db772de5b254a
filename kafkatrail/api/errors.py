"""The one error an API call raises: what the client receives as `{"__type": code, "Message": message}`."""

from __future__ import annotations


class ApiError(Exception):
    """An AWS-shaped error; `status` is the HTTP status (400 for every client error unless AWS uses another)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"__type": self.code, "Message": self.message}
