"""Inbound helpdesk webhooks: authenticate, cap, parse, commit, then answer."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ticketbridge.adapters.inbound import freshdesk
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.adapters.inbound.errors import InboundError
from ticketbridge.adapters.store.sql import StoreUnavailable
from ticketbridge.app.deps import ServicesDep
from ticketbridge.app.metrics import metrics_of
from ticketbridge.app.schemas import ErrorBody, WebhookAccepted
from ticketbridge.app.service import ingest_in

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger("ticketbridge.webhooks")


class PayloadTooLarge(InboundError):
    status = 413


class UnsupportedMediaType(InboundError):
    status = 415


def error_response(exc: InboundError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="ticketbridge"'} if exc.status == 401 else None
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes by header and while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InboundError("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InboundError("client disconnected before the body was complete") from None
    return b"".join(chunks)


def require_json(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")


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


@router.post(
    "/webhooks/freshdesk",
    status_code=202,
    response_model=WebhookAccepted,
    responses={200: {"model": WebhookAccepted, "description": "Duplicate delivery"}, **_ERRORS},
    summary="Receive a Freshdesk automation-rule webhook",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def freshdesk_webhook(request: Request, services: ServicesDep) -> JSONResponse:
    """Answers 202 only after the event, the ticket's new state and its effects are committed."""
    secrets = [s.get_secret_value().encode() for s in services.settings.freshdesk.webhook_secrets]
    try:
        check_shared_secret(request.headers.get("authorization"), secrets)
        require_json(request)
        raw = await read_capped_body(request, services.settings.max_body_bytes)
        event, dedup_key = freshdesk.parse_webhook(raw)
    except InboundError as exc:
        log.info("webhook.refused", source="freshdesk", status=exc.status, reason=exc.message)
        metrics_of(request.app).webhook("freshdesk", str(exc.status))
        return error_response(exc)
    now = services.clock.now()
    dispatcher = request.app.state.dispatcher
    lease = dispatcher.lease(now.timestamp()) if services.fast_path else None
    try:
        result = await services.writer.submit(
            lambda uow: ingest_in(
                uow,
                event=event,
                dedup_key=dedup_key,
                now=now,
                policies=services.policies,
                lease=lease,
            )
        )
    except StoreUnavailable as exc:
        log.error("webhook.store_unavailable", source="freshdesk", error=str(exc))
        metrics_of(request.app).webhook("freshdesk", "503")
        return JSONResponse(
            {"error": "store unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    metrics_of(request.app).webhook("freshdesk", result.outcome)
    if result.leased:
        dispatcher.deliver_now(result.leased)
    if result.effects > len(result.leased):
        dispatcher.wake()
    if result.earliest_timer is not None:
        request.app.state.scheduler.wake_if_earlier(result.earliest_timer)
    log.info(
        "webhook.received",
        source="freshdesk",
        ticket=event.ticket_id,
        kind=event.kind.value,
        outcome=result.outcome,
        effects=result.effects,
    )
    body = WebhookAccepted(
        outcome=result.outcome, ticket_id=event.ticket_id, effects=result.effects
    )
    return JSONResponse(
        body.model_dump(), status_code=200 if result.outcome == "duplicate" else 202
    )
