"""The webhook routes as the OpenAPI document describes them.

A POST to one of these paths is served on the direct path (``app/http/direct.py``) before it
could reach the router: the routes register the same endpoints so the document describes them
and other methods answer 405.
"""

from __future__ import annotations

from fastapi import APIRouter

from ticketbridge.app.http.direct import WEBHOOKS
from ticketbridge.app.http.schemas import ErrorBody, WebhookAccepted

router = APIRouter(tags=["webhooks"])


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
_SIGNED_FIRST = "The signature is checked on the raw bytes before anything parses them."


def _webhook_route(
    source: str, summary: str, description: str, *headers: dict[str, object]
) -> None:
    """Register ``source``'s endpoint: 202, 200 for a duplicate, the 4xx/503 answers, a JSON
    body and the signature ``headers`` it needs."""
    extra: dict[str, object] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    if headers:
        extra["parameters"] = list(headers)
    path = f"/webhooks/{source}"
    router.post(
        path,
        name=f"{source}_webhook",
        status_code=202,
        response_model=WebhookAccepted,
        responses={200: {"model": WebhookAccepted, "description": "Duplicate delivery"}, **_ERRORS},
        summary=summary,
        description=description,
        openapi_extra=extra,
    )(WEBHOOKS[path])


_webhook_route(
    "freshdesk",
    "Receive a Freshdesk automation-rule webhook",
    "Answers 202 only after the event, the ticket's new state and its effects are committed.",
)
_webhook_route(
    "zendesk",
    "Receive a Zendesk trigger webhook (signed)",
    _SIGNED_FIRST,
    _header("X-Zendesk-Webhook-Signature", "base64(HMAC-SHA256(secret, timestamp + body))"),
    _header("X-Zendesk-Webhook-Signature-Timestamp", "ISO-8601, within 300 s of now"),
    _header("X-Zendesk-Webhook-Invocation-Id", "per invocation; unsigned, so not used", False),
)
_webhook_route(
    "generic",
    "Receive a canonical ticket event signed with Standard Webhooks",
    _SIGNED_FIRST,
    _header("webhook-id", "unique per message, kept across retries: the dedup key"),
    _header("webhook-timestamp", "unix seconds, within 300 s of now"),
    _header("webhook-signature", "space-separated v1,<base64> entries"),
)
