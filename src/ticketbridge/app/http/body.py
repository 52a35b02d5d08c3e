"""Reading a request body within its caps: a size limit per request and a process-wide budget of
bytes held before their signature is checked."""

from __future__ import annotations

from starlette.types import Receive

from ticketbridge.adapters.inbound.errors import InboundError


class PayloadTooLarge(InboundError):
    status = 413


class BodyBudgetFull(InboundError):
    """Unverified bodies in flight already hold the process's budget (see ``BodyBudget``)."""

    status = 503


class BodyBudget:
    """Bytes of unverified bodies held at once, at most ``limit``: a body that would take more
    is refused (503) instead of read, so slow or forged bodies cannot fill memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes if they fit; False (nothing reserved) otherwise."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        """Return ``size`` bytes taken earlier."""
        self.used -= size


async def read_body(
    receive: Receive, declared: bytes | None, limit: int, budget: BodyBudget | None = None
) -> bytes:
    """The raw body, refusing more than ``limit`` bytes by the Content-Length header's value
    (``declared``, as received) and while streaming; with a ``budget``, every byte read is taken
    from it (given back here on failure, else by the caller).

    Raises ``PayloadTooLarge``, ``BodyBudgetFull``, or ``InboundError`` (400) for an invalid
    Content-Length or a client gone before the body's end.
    """
    if declared is not None:
        if not declared.isdigit():  # bytes: ASCII digits only
            raise InboundError("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    # The ASGI messages read directly, as ``Request.stream`` would (without its generator).
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise InboundError("client disconnected before the body was complete")
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                raise PayloadTooLarge(f"body larger than {limit} bytes")
            if budget is not None and not budget.take(len(chunk)):
                raise BodyBudgetFull("too many unverified bodies in flight, retry later")
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except BaseException:
        if budget is not None:
            budget.give(size)
        raise
