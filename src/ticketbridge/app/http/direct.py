"""The webhook fast path, whole: a webhook POST is answered before the app's middleware stack,
without route matching or dependency solving (on a webhook that machinery cost more than the
endpoint itself), by one endpoint per inbound source built from the Source table.

The routes in ``routes/webhooks.py`` register the same endpoints for the OpenAPI document and
for other methods (405); a POST never reaches them. Per request this path allocates only what
the answer needs: secrets are encoded once per configured list, not per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ticketbridge.adapters.inbound.errors import InboundError
from ticketbridge.adapters.inbound.sources import SOURCES, Source, first_headers
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.http.body import BodyBudget, BodyBudgetFull, PayloadTooLarge, read_body
from ticketbridge.app.http.deps import from_state, services_of
from ticketbridge.app.http.middleware import begin, finish
from ticketbridge.app.metrics import Metrics, metrics_of
from ticketbridge.app.services.ingest import Incoming
from ticketbridge.rules.model import TicketEvent

log = structlog.get_logger("ticketbridge.webhooks")

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute(NamedTuple):
    """``scope["route"]`` for a request served directly: its template, as a route's."""

    path: str


class Direct:
    """The endpoints served directly, by POST path. Such an endpoint takes the request alone,
    handles its own errors and returns the response."""

    def __init__(self, endpoints: Mapping[str, Endpoint], metrics: Metrics | None = None) -> None:
        self.endpoints = dict(endpoints)
        self.metrics = metrics
        self._routes = {path: DirectRoute(path) for path in self.endpoints}

    async def serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with ``endpoint``, with the request id, log context, metrics and
        canonical line the middleware gives every other request. Outside the app's error
        middleware, so an unexpected error is logged and answered 500 here."""
        request_id = begin(scope)
        started = time.perf_counter()
        status = 500
        try:
            path = scope["path"]
            scope["route"] = self._routes.get(path) or DirectRoute(path)
            try:
                response = await endpoint(Request(scope, receive, send))
            except Exception:
                log.exception("http.unhandled_error", path=path)
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
            finish(scope, status, started, self.metrics)


class DirectApp(FastAPI):
    """FastAPI, with the POSTs ``direct`` serves answered before the app's own middleware stack
    (its error, telemetry and body-limit middleware); every other request goes through it."""

    direct: Direct | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self.direct
        if direct is not None and scope["type"] == "http" and scope["method"] == "POST":
            endpoint = direct.endpoints.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await direct.serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# --- the webhook endpoints -------------------------------------------------------------------

# Answered before the body was read to its end: the connection is closed after the answer
# rather than kept for a body nobody will read.
_UNREAD_BODY = (PayloadTooLarge, BodyBudgetFull)
# Reused: ``json.dumps`` with these options builds an encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Answer(JSONResponse):
    """A JSON answer built with less ceremony than Starlette's: the body encoded once, the
    headers as raw pairs (a webhook's answer is a tenth of its cost otherwise)."""

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = _encode(content).encode()
        raw = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]
        if headers:
            raw.extend(
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            )
        self.raw_headers = raw


class EncodedKeys:
    """The keys (``key`` of each secret) of a list of secrets, remembered while the list holds
    the same secret objects."""

    def __init__(self, key: Callable[[str], bytes]) -> None:
        self._key = key
        self._source: tuple[SecretStr, ...] = ()
        self._encoded: list[bytes] = []

    def of(self, secrets: Sequence[SecretStr]) -> list[bytes]:
        """The keys of ``secrets``, encoded again only when the list changed."""
        source = tuple(secrets)
        if source != self._source:  # by identity, else by value: equal secrets encode alike
            self._encoded = [self._key(s.get_secret_value()) for s in source]
            self._source = source
        return self._encoded


def _budget_of(request: Request, limit: int) -> BodyBudget:
    """The app's budget of unverified body bytes, made on first use."""
    state = request.app.state._state
    budget: BodyBudget | None = state.get("body_budget")
    if budget is None:
        budget = state["body_budget"] = BodyBudget(limit)
    return budget


class UnsupportedMediaType(InboundError):
    status = 415


def _require_json(content_type: str) -> None:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")


def webhook_endpoint(source: Source) -> Endpoint:
    """The endpoint for ``source``'s webhooks: authenticate, cap, parse, commit, then answer.

    A source whose signature covers the body has it read first (within the budget of
    unverified bytes) and checked before anything parses it; a source whose credentials are
    in the headers has them checked before the body is read.
    """
    name = source.name
    secrets_of = attrgetter(f"{name}.webhook_secrets")
    keys = EncodedKeys(source.key)
    verify, parse, signs_body = source.verify, source.parse, source.signs_body
    challenge = source.challenge

    async def endpoint(request: Request) -> JSONResponse:
        services = services_of(request)
        settings = services.settings
        secrets = keys.of(secrets_of(settings))
        headers = first_headers(request.scope["headers"])
        try:
            if signs_body:
                budget = _budget_of(request, settings.http.unverified_body_bytes)
                raw = await read_body(
                    request.receive,
                    headers.get(b"content-length"),
                    settings.max_body_bytes,
                    budget,
                )
                try:
                    verify(headers, raw, secrets, services.clock.now())
                finally:
                    budget.give(len(raw))
                _require_json(headers.get(b"content-type", b"").decode("latin-1"))
            else:
                verify(headers, b"", secrets, None)
                _require_json(headers.get(b"content-type", b"").decode("latin-1"))
                raw = await read_body(
                    request.receive, headers.get(b"content-length"), settings.max_body_bytes
                )
            event, dedup_key = parse(raw, headers)
        except InboundError as exc:
            return refuse(request, name, exc, challenge)
        return await ingest_and_answer(request, services, name, event, dedup_key)

    return endpoint


def error_response(exc: InboundError, challenge: str | None) -> JSONResponse:
    """The answer refusing a request: the error's message, and the headers its status needs."""
    headers: dict[str, str] = {}
    if challenge is not None and exc.status == 401:
        headers["WWW-Authenticate"] = challenge
    if isinstance(exc, _UNREAD_BODY):
        headers["Connection"] = "close"
    if isinstance(exc, BodyBudgetFull):
        headers["Retry-After"] = "1"
    return Answer({"error": exc.message}, status_code=exc.status, headers=headers)


def refuse(request: Request, route: str, exc: InboundError, challenge: str | None) -> JSONResponse:
    """Log and count a refused webhook, and answer it."""
    log.info("webhook.refused", source=route, status=exc.status, reason=exc.message)
    metrics_of(request.app).webhook(route, str(exc.status))
    return error_response(exc, challenge)


async def ingest_and_answer(
    request: Request, services: Services, route: str, event: TicketEvent, dedup_key: str
) -> JSONResponse:
    """Commit the event (group commit), start its effects and timers, then answer.

    ``route`` labels metrics and logs (``generic`` for every generic sender, so the label set
    stays bounded); the event's own source is logged beside it.
    """
    now = services.clock.now()
    app = request.app
    dispatcher = from_state(app, "dispatcher")
    lease = dispatcher.lease(now.timestamp()) if services.fast_path else None
    try:
        result = await services.writer.submit_many(
            services.ingest_many, Incoming(event, dedup_key, now, lease)
        )
    except StoreUnavailable as exc:
        log.error("webhook.store_unavailable", source=route, error=str(exc))
        metrics_of(app).webhook(route, "503")
        return Answer(
            {"error": "store unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    metrics = metrics_of(app)
    metrics.webhook(route, result.outcome)
    for target in result.skipped:
        metrics.effect(target, "skipped")
    if result.leased:
        dispatcher.deliver_now(result.leased)
    if result.unclaimed:
        dispatcher.wake()
    if result.earliest_timer is not None:
        from_state(app, "scheduler").wake_if_earlier(result.earliest_timer)
    log.info(
        "webhook.received",
        source=route,
        ticket_source=event.source,
        ticket=event.ticket_id,
        kind=event.kind.value,
        outcome=result.outcome,
        effects=result.effects,
        skipped=len(result.skipped),
    )
    # The body of ``WebhookAccepted``, built directly (a model per answer costs more).
    return Answer(
        {"outcome": result.outcome, "ticket_id": event.ticket_id, "effects": result.effects},
        status_code=200 if result.outcome == "duplicate" else 202,
    )


# The webhook endpoints by POST path, one per source.
WEBHOOKS: dict[str, Endpoint] = {
    f"/webhooks/{source.name}": webhook_endpoint(source) for source in SOURCES.values()
}
