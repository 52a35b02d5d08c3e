"""A pure-ASGI middleware: request id, bound log context, one canonical line per request,
and the webhook routes' direct path."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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


class DirectApp(FastAPI):
    """FastAPI, with the ``direct`` requests of ``context`` served before the app's own
    middleware stack (its error, telemetry and body-limit middleware), which on a webhook
    cost a tenth of the request; every other request goes through the stack, where
    ``context`` is installed as a middleware too."""

    context: RequestContext | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = self.context
        if context is not None:
            endpoint = context.endpoint_for(scope)
            if endpoint is not None:
                scope["app"] = self
                await context.serve_direct(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


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
        self._routes = {path: DirectRoute(path) for path in self.direct}

    def endpoint_for(self, scope: Scope) -> Endpoint | None:
        """The endpoint serving this request on the direct path, if it takes it (a POST to
        one of ``direct``'s paths)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        return self.direct.get(scope["path"])

    async def serve_direct(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a direct request (``endpoint_for``): what ``__call__`` does for any request, with
        ``endpoint`` in place of the app. Outside the app's error middleware (see
        ``DirectApp``), so an unexpected error is logged and answered 500 here."""
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            path = scope["path"]
            scope["route"] = self._routes.get(path) or DirectRoute(path)
            try:
                response = await endpoint(Request(scope, receive, send))
            except Exception:
                log.exception("http.unhandled_error", path=scope["path"])
                response = JSONResponse({"error": "internal error"}, status_code=500)
            # The answer's messages, sent as Starlette's ``Response.__call__`` would, with the
            # request id beside its headers.
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*response.raw_headers, (b"x-request-id", request_id.encode())],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            status = response.status_code
        finally:
            self._finish(scope, status, started)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self.endpoint_for(scope)
        if endpoint is not None:
            await self.serve_direct(endpoint, scope, receive, send)
            return
        request_id = _request_id(scope)
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
            await self.app(scope, receive, send_with_id)
        finally:
            self._finish(scope, status, started)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        """The request's metrics and canonical line; its log context cleared."""
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


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a safe one (the last such header), else a
    new one."""
    incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return incoming if _SAFE_ID.match(incoming) else new_request_id()
