"""A pure-ASGI middleware: request id, bound log context, one canonical line per request,
and the webhook routes' direct path."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

import structlog
from starlette.requests import Request
from starlette.responses import Response
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
    ``os.urandom``, whose system call cost a few percent of a webhook (a request id
    correlates log lines, it guards nothing)."""
    return f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute(NamedTuple):
    """``scope["route"]`` for a request served directly: its template, as a route's."""

    path: str


class RequestContext:
    """``direct`` maps a POST path to the endpoint that serves it without the router's stack
    (exception and exit-stack middleware, route matching, dependency solving): on a webhook
    that stack cost more than the endpoint itself. Such an endpoint takes the request alone,
    handles its own errors and returns the response; its route stays registered with the app
    for the OpenAPI document and for other methods (405)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics | None = None,
        direct: Mapping[str, Endpoint] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
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
            endpoint = self.direct.get(scope["path"]) if scope["method"] == "POST" else None
            if endpoint is None:
                await self.app(scope, receive, send_with_id)
            else:
                scope["route"] = DirectRoute(scope["path"])
                response = await endpoint(Request(scope, receive, send_with_id))
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.http_request(scope, status, elapsed)
            (log.debug if scope["path"] in QUIET_PATHS else log.info)(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
