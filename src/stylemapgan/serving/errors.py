"""The server's one error type: an HTTP status plus a one-line message the page shows as is."""

from __future__ import annotations


class ApiError(Exception):
    """A request the server refuses; `status` is a 4xx (or 503 when busy), `message` names what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Superseded(Exception):
    """A newer request of the same kind from the same page arrived before this one ran (latest wins)."""


class Busy(Exception):
    """The inference queue is full."""
