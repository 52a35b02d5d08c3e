"""A pure-ASGI middleware: request id, bound log context, one canonical line per request.

The webhook POSTs, served before the middleware stack (``direct.py``), get the same from
``begin`` and ``finish``."""

from __future__ import annotations

import random
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketbridge.app.metrics import Metrics

log = structlog.get_logger("ticketbridge.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Scraped every few seconds: their canonical line is logged at debug, not info.
QUIET_PATHS = frozenset({"/metrics"})
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """A random UUID4 in hex, as ``uuid.uuid4().hex``; from ``random`` rather than
    ``os.urandom``, whose system call is a measurable share of a webhook (a request id
    correlates log lines, it guards nothing)."""
    return f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


def begin(scope: Scope) -> str:
    """The request's id, bound to the log context (cleared first): the caller's
    ``X-Request-ID`` when it is a safe one (the last such header), else a new one."""
    incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    request_id = incoming if _SAFE_ID.match(incoming) else new_request_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def finish(scope: Scope, status: int, started: float, metrics: Metrics | None) -> None:
    """The request's metrics and canonical line; its log context cleared."""
    elapsed = time.perf_counter() - started
    if metrics is not None:
        metrics.http_request(scope, status, elapsed)
    (log.debug if scope["path"] in QUIET_PATHS else log.info)(
        "http.request",
        method=scope["method"],
        path=scope["path"],
        status=status,
        duration_ms=round(elapsed * 1000, 2),
    )
    structlog.contextvars.clear_contextvars()


class RequestContext:
    """Every HTTP request through the app's stack: its id (answered as ``X-Request-ID``), its
    log context, and its metrics and canonical line when it ends."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = begin(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            finish(scope, status, started, self.metrics)
