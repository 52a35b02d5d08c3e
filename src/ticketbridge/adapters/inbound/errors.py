"""Errors an inbound adapter raises for a request it refuses; each maps to one 4xx."""

from __future__ import annotations


class InboundError(Exception):
    """Base: the request is refused; ``status`` is the HTTP answer, ``message`` is safe to show."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(InboundError):
    """Credentials missing or wrong. The message never says which part was wrong."""

    status = 401

    def __init__(self) -> None:
        super().__init__("unauthorized")


class MalformedPayload(InboundError):
    """The body is not JSON a helpdesk would send (400)."""

    status = 400


class MissingField(InboundError):
    """Valid JSON that lacks, or has a bad value for, a field the rules need (422)."""

    status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
