"""The canonical ticket body for any sender that signs with Standard Webhooks.

Sans I/O: raw bytes (already verified by the route, see ``signatures.verify_standard``) and
the ``webhook-id`` and ``webhook-timestamp`` headers in, ``(TicketEvent, dedup_key)`` out, or
an ``InboundError``::

    {"source": "acme-desk", "ticket_id": "T-1001", "priority": "urgent", "status": "open",
     "status_label": "Waiting on vendor", "event": "created", "domain": "acme",
     "url": "https://desk.acme.example/tickets/T-1001", "subject": "Checkout fails",
     "updated_at": "2026-11-26T12:00:00Z", "assigned": true, "tags": ["vip"]}

Required: ``source``, ``ticket_id``, ``priority``, ``status``. The dedup key is the
``webhook-id`` (Standard Webhooks keeps it across retries).
"""

from __future__ import annotations

import re
from typing import Any

from ticketbridge.adapters.inbound import fields, signatures
from ticketbridge.adapters.inbound.errors import MissingField
from ticketbridge.adapters.inbound.freshdesk import dedup_key as body_hash
from ticketbridge.adapters.inbound.freshdesk import load_json
from ticketbridge.rules.model import EventKind, Priority, Status, TicketEvent

SOURCE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
TICKET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Effects on the helpdesk go to the sender named like the ticket's source: a generic sender
# must not pose as a built-in adapter (or as an effect target) and reach its API.
RESERVED_SOURCES = frozenset({"freshdesk", "zendesk", "generic", "victorops", "victorops-bridge"})
EVENTS = {kind.value: kind for kind in EventKind if kind is not EventKind.NOTE_ADDED}


def parse_webhook(
    raw: bytes, webhook_id: str | None = None, *, signed_at: str | None = None
) -> tuple[TicketEvent, str]:
    """Parse a canonical body into ``(event, dedup_key)``.

    ``webhook_id`` and ``signed_at`` are the ``webhook-id`` and ``webhook-timestamp`` the route
    verified: both are signed, so the id is the dedup key (a replay under a fresh id fails the
    signature), and without ``updated_at`` in the body the signed time is the event's time,
    which the rules' stale check compares with the ticket's.
    """
    signed = None if signed_at is None else signatures.standard_time(signed_at)
    document = load_json(raw)
    if not isinstance(document, dict):
        raise MissingField("body", "must be a JSON object")
    body: dict[str, Any] = document
    key = body_hash(body)

    def text(name: str, *, required: bool = False) -> str:
        return fields.text(body, name, prefix="", required=required)

    source = text("source", required=True)
    if not SOURCE_NAME.fullmatch(source):
        raise MissingField("source", "must be 1-32 of a-z, 0-9 and '-', starting with a letter")
    if source in RESERVED_SOURCES:
        raise MissingField("source", f"{source!r} is reserved for a built-in adapter")
    ticket_id = text("ticket_id", required=True)
    if not TICKET_ID.fullmatch(ticket_id):
        raise MissingField("ticket_id", "must be 1-64 of A-Z, a-z, 0-9, '.', '_' and '-'")
    try:
        priority = Priority(text("priority", required=True).lower())
    except ValueError:
        raise MissingField("priority", "must be urgent, high, medium or low") from None
    try:
        status = Status(text("status", required=True).lower())
    except ValueError:
        raise MissingField("status", "must be open, pending, resolved or closed") from None
    event_name = text("event") or "updated"
    if event_name not in EVENTS:
        raise MissingField("event", f"must be one of {', '.join(EVENTS)}")
    assigned = body.get("assigned")
    if assigned is not None and not isinstance(assigned, bool):
        raise MissingField("assigned", "must be true or false")
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, list):
        raise MissingField("tags", "must be a list of at most 100 strings")

    event = TicketEvent(
        source=source,
        ticket_id=ticket_id,
        kind=EVENTS[event_name],
        priority=priority,
        status=status,
        status_label=(text("status_label") or status.value.capitalize())[:100],
        domain=text("domain")[:100],
        url=text("url")[:2000],
        subject=text("subject")[:500],
        occurred_at=fields.timestamp(body, "updated_at", prefix="") or signed,
        agent_assigned=assigned,
        tags=fields.names(body, "tags", prefix=""),
        system_wide=fields.flag(body, "system_wide", prefix=""),
        components=fields.names(body, "components", prefix="") or (),
    )
    if webhook_id:
        key = fields.delivery_key("webhook-id", webhook_id)
    return event, key
