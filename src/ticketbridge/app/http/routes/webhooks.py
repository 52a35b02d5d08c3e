"""Inbound helpdesk webhooks: authenticate, cap, parse, commit, then answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.types import Receive

from ticketbridge.adapters.inbound import freshdesk, generic, signatures, zendesk
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.adapters.inbound.errors import InboundError
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.http.body_budget import BodyBudget
from ticketbridge.app.http.deps import from_state, services_of
from ticketbridge.app.http.schemas import ErrorBody, WebhookAccepted
from ticketbridge.app.metrics import metrics_of
from ticketbridge.app.services.ingest import Incoming
from ticketbridge.rules.model import TicketEvent

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger("ticketbridge.webhooks")


class PayloadTooLarge(InboundError):
    status = 413


class UnsupportedMediaType(InboundError):
    status = 415


class BodyBudgetFull(InboundError):
    """Unverified bodies in flight already hold the process's budget (see ``BodyBudget``)."""

    status = 503


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


def error_response(exc: InboundError, *, basic: bool = True) -> JSONResponse:
    headers: dict[str, str] = {}
    if basic and exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="ticketbridge"'
    if isinstance(exc, _UNREAD_BODY):
        headers["Connection"] = "close"
    if isinstance(exc, BodyBudgetFull):
        headers["Retry-After"] = "1"
    return Answer({"error": exc.message}, status_code=exc.status, headers=headers)


async def _read_body(
    receive: Receive, declared: str | None, limit: int, budget: BodyBudget | None = None
) -> bytes:
    """The raw body, refusing more than ``limit`` bytes by the Content-Length header's value
    (``declared``) and while streaming; with a ``budget``, every byte read is taken from it
    (given back here on failure, else by the caller)."""
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
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


def _budget_of(request: Request, limit: int) -> BodyBudget:
    """The app's budget of unverified body bytes, made on first use."""
    state = request.app.state._state
    budget: BodyBudget | None = state.get("body_budget")
    if budget is None:
        budget = state["body_budget"] = BodyBudget(limit)
    return budget


@contextlib.asynccontextmanager
async def _unverified_body(request: Request, services: Services) -> AsyncIterator[bytes]:
    """The body of a request whose signature covers it, held within the app's budget of
    unverified bytes until the block (which checks the signature) ends."""
    settings = services.settings
    budget = _budget_of(request, settings.http.unverified_body_bytes)
    raw = await _read_body(
        request.receive, request.headers.get("content-length"), settings.max_body_bytes, budget
    )
    try:
        yield raw
    finally:
        budget.give(len(raw))


def require_json(request: Request) -> None:
    _require_json(request.headers.get("content-type", ""))


def _require_json(content_type: str) -> None:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")


def _first_headers(request: Request) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name, the first of each name as
    ``request.headers`` would give it, in one pass."""
    raw = request.scope["headers"]  # not ``request.headers``: its first read fails a lookup
    return dict(reversed(raw if isinstance(raw, list) else list(raw)))


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class _EncodedSecrets:
    """The encoded values of a list of secrets, remembered while the list holds the same
    secret objects (encoding every secret per request was a measurable share of a webhook)."""

    def __init__(self) -> None:
        self._source: tuple[SecretStr, ...] = ()
        self._encoded: list[bytes] = []

    def of(self, secrets: Sequence[SecretStr]) -> list[bytes]:
        source = tuple(secrets)
        if source != self._source:  # by identity, else by value: equal secrets encode alike
            self._encoded = [s.get_secret_value().encode() for s in source]
            self._source = source
        return self._encoded


_freshdesk_secrets = _EncodedSecrets()


def _header(name: str, description: str, required: bool = True) -> dict[str, object]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Not JSON, or JSON a helpdesk would not send"),
        (401, "Missing or wrong credentials"),
        (413, "Body over the size cap"),
        (415, "Content-Type is not application/json"),
        (422, "A field the rules need is missing or invalid (named in the message)"),
        (503, "The store is unavailable; retry later (Retry-After)"),
    )
}


# Handlers take the request alone (no FastAPI dependency): resolving even one dependency
# per request is a measurable share of a webhook's cost.
Handler = Callable[[Request], Awaitable[JSONResponse]]


def _webhook_route(
    path: str, summary: str, *headers: dict[str, object]
) -> Callable[[Handler], Handler]:
    """``router.post`` for a webhook: 202, 200 for a duplicate, the 4xx/503 answers, a JSON
    body and the signature ``headers`` it needs."""
    extra: dict[str, object] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    if headers:
        extra["parameters"] = list(headers)
    return router.post(
        path,
        status_code=202,
        response_model=WebhookAccepted,
        responses={200: {"model": WebhookAccepted, "description": "Duplicate delivery"}, **_ERRORS},
        summary=summary,
        openapi_extra=extra,
    )


@_webhook_route("/webhooks/freshdesk", "Receive a Freshdesk automation-rule webhook")
async def freshdesk_webhook(request: Request) -> JSONResponse:
    """Answers 202 only after the event, the ticket's new state and its effects are committed."""
    services = services_of(request)
    settings = services.settings
    secrets = _freshdesk_secrets.of(settings.freshdesk.webhook_secrets)
    headers = _first_headers(request)
    try:
        check_shared_secret(_latin1(headers.get(b"authorization")), secrets)
        _require_json(headers.get(b"content-type", b"").decode("latin-1"))
        raw = await _read_body(
            request.receive, _latin1(headers.get(b"content-length")), settings.max_body_bytes
        )
        event, dedup_key = freshdesk.parse_webhook(raw)
    except InboundError as exc:
        return refuse(request, "freshdesk", exc)
    return await ingest_and_answer(request, services, "freshdesk", event, dedup_key)


@_webhook_route(
    "/webhooks/zendesk",
    "Receive a Zendesk trigger webhook (signed)",
    _header("X-Zendesk-Webhook-Signature", "base64(HMAC-SHA256(secret, timestamp + body))"),
    _header("X-Zendesk-Webhook-Signature-Timestamp", "ISO-8601, within 300 s of now"),
    _header("X-Zendesk-Webhook-Invocation-Id", "per invocation; unsigned, so not used", False),
)
async def zendesk_webhook(request: Request) -> JSONResponse:
    """The signature is checked on the raw bytes before anything parses them."""
    services = services_of(request)
    secrets = [s.get_secret_value().encode() for s in services.settings.zendesk.webhook_secrets]
    headers = request.headers
    try:
        async with _unverified_body(request, services) as raw:
            signatures.verify_zendesk(
                body=raw,
                signature=headers.get("x-zendesk-webhook-signature"),
                timestamp=headers.get("x-zendesk-webhook-signature-timestamp"),
                secrets=secrets,
                now=services.clock.now(),
            )
        require_json(request)
        event, dedup_key = zendesk.parse_webhook(
            raw, headers.get("x-zendesk-webhook-signature-timestamp")
        )
    except InboundError as exc:
        return refuse(request, "zendesk", exc)
    return await ingest_and_answer(request, services, "zendesk", event, dedup_key)


@_webhook_route(
    "/webhooks/generic",
    "Receive a canonical ticket event signed with Standard Webhooks",
    _header("webhook-id", "unique per message, kept across retries: the dedup key"),
    _header("webhook-timestamp", "unix seconds, within 300 s of now"),
    _header("webhook-signature", "space-separated v1,<base64> entries"),
)
async def generic_webhook(request: Request) -> JSONResponse:
    """The signature is checked on the raw bytes before anything parses them."""
    services = services_of(request)
    keys = [
        signatures.standard_secret(s.get_secret_value())
        for s in services.settings.generic.webhook_secrets
    ]
    headers = request.headers
    try:
        async with _unverified_body(request, services) as raw:
            signatures.verify_standard(
                body=raw,
                msg_id=headers.get("webhook-id"),
                timestamp=headers.get("webhook-timestamp"),
                signature=headers.get("webhook-signature"),
                keys=keys,
                now=services.clock.now(),
            )
        require_json(request)
        event, dedup_key = generic.parse_webhook(
            raw, headers.get("webhook-id"), signed_at=headers.get("webhook-timestamp")
        )
    except InboundError as exc:
        return refuse(request, "generic", exc)
    return await ingest_and_answer(request, services, "generic", event, dedup_key)


# Served by the request middleware directly (see ``RequestContext``); the routes above stay
# for the OpenAPI document and for other methods.
DIRECT: dict[str, Handler] = {
    "/webhooks/freshdesk": freshdesk_webhook,
    "/webhooks/zendesk": zendesk_webhook,
    "/webhooks/generic": generic_webhook,
}


def refuse(request: Request, route: str, exc: InboundError) -> JSONResponse:
    log.info("webhook.refused", source=route, status=exc.status, reason=exc.message)
    metrics_of(request.app).webhook(route, str(exc.status))
    return error_response(exc, basic=route == "freshdesk")


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
