"""Zendesk trigger webhooks ("Notify webhook" action, JSON body) parsed into rules events.

Sans I/O: takes the raw bytes (already signature-checked by the route, see ``signatures``)
and the signed timestamp header, returns ``(TicketEvent, dedup_key)`` or raises an
``InboundError``. The trigger's JSON body (README, "Zendesk") is::

    {"zendesk_webhook": {
      "ticket_id": "{{ticket.id}}",
      "ticket_url": "{{ticket.link}}",
      "ticket_subject": "{{ticket.title}}",
      "ticket_status": "{{ticket.status}}",
      "ticket_priority": "{{ticket.priority}}",
      "ticket_updated_at": "{{ticket.updated_at_with_timestamp}}",
      "ticket_assignee_email": "{{ticket.assignee.email}}",
      "ticket_tags": "{{ticket.tags}}",
      "ticketbridge_event": "created"
    }}

The bare object (without the wrapper) is accepted too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ticketbridge.adapters.inbound import fields, signatures
from ticketbridge.adapters.inbound.errors import MissingField
from ticketbridge.adapters.inbound.freshdesk import dedup_key as body_hash
from ticketbridge.adapters.inbound.freshdesk import load_json
from ticketbridge.rules.model import EventKind, Priority, Status, TicketEvent

SOURCE = "zendesk"
WRAPPER = "zendesk_webhook"

PRIORITY_LABELS = {
    "low": Priority.LOW,
    "normal": Priority.MEDIUM,
    "high": Priority.HIGH,
    "urgent": Priority.URGENT,
    # A ticket without a priority renders as "" or "-": it is no emergency.
    "": Priority.MEDIUM,
    "-": Priority.MEDIUM,
}
STATUS_LABELS = {
    "new": Status.OPEN,
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "hold": Status.PENDING,
    "on-hold": Status.PENDING,
    "on hold": Status.PENDING,
    "solved": Status.RESOLVED,
    "closed": Status.CLOSED,
}
# Zendesk triggers say what happened only through which trigger fired: each trigger's body
# names it (default "updated").
RULE_EVENTS = {
    "created": EventKind.CREATED,
    "updated": EventKind.UPDATED,
    "priority_changed": EventKind.PRIORITY_CHANGED,
    "status_changed": EventKind.STATUS_CHANGED,
    "agent_reply": EventKind.AGENT_REPLY,
    "customer_reply": EventKind.CUSTOMER_REPLY,
    "assigned": EventKind.ASSIGNED,
}


def _unwrap(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise MissingField(WRAPPER, "the body must be a JSON object")
    inner = document.get(WRAPPER, document)
    if not isinstance(inner, dict):
        raise MissingField(WRAPPER, "must be a JSON object")
    return inner


def _url_and_domain(url: str) -> tuple[str, str]:
    """``{{ticket.link}}`` renders without a scheme (``acme.zendesk.com/agent/tickets/1``)."""
    if not url:
        return "", ""
    if "://" not in url:
        url = "https://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    domain = host.split(".")[0] if host.endswith(".zendesk.com") else host
    return url, domain


def parse_webhook(raw: bytes, signed_at: str | None = None) -> tuple[TicketEvent, str]:
    """Parse a Zendesk trigger body into ``(event, dedup_key)``.

    ``signed_at`` is the ``X-Zendesk-Webhook-Signature-Timestamp`` the route verified. The
    dedup key is made only of what the signature covers, so a captured request sent again is
    a duplicate whatever its other headers say: ``X-Zendesk-Webhook-Invocation-Id`` is not
    signed (a replay may carry a fresh one) and ``X-Zendesk-Webhook-Id`` names the webhook,
    not the delivery; neither is used. Without ``ticket_updated_at`` in the body, the signed
    time is the event's helpdesk time, which the rules' stale check compares with the
    ticket's.
    """
    signed = None if signed_at is None else signatures.zendesk_time(signed_at)
    inner = _unwrap(load_json(raw))
    key = body_hash(inner)  # also refuses unpaired surrogates, as for Freshdesk

    def text(name: str, *, required: bool = False) -> str:
        return fields.text(inner, name, prefix=WRAPPER, required=required)

    ticket_id = fields.ticket_number(inner, "ticket_id", prefix=WRAPPER)

    priority_label = text("ticket_priority")
    priority = PRIORITY_LABELS.get(priority_label.lower())
    if priority is None:
        raise MissingField(
            f"{WRAPPER}.ticket_priority",
            f"unknown priority {priority_label[:40]!r} (expected Low, Normal, High or Urgent)",
        )

    status_label = text("ticket_status", required=True)
    # Custom ticket statuses keep their label and count as open.
    status = STATUS_LABELS.get(status_label.lower(), Status.OPEN)

    rule_event = text("ticketbridge_event") or "updated"
    if rule_event not in RULE_EVENTS:
        raise MissingField(
            f"{WRAPPER}.ticketbridge_event",
            f"unknown event {rule_event[:40]!r} (expected {', '.join(RULE_EVENTS)})",
        )
    url, domain = _url_and_domain(text("ticket_url"))
    assignee = inner.get("ticket_assignee_email")
    assigned = None if assignee is None else bool(text("ticket_assignee_email"))
    # {{ticket.tags}} renders space-separated.
    tags = fields.names(inner, "ticket_tags", prefix=WRAPPER, separators=" ,")

    updated_at = fields.timestamp(inner, "ticket_updated_at", prefix=WRAPPER)
    event = TicketEvent(
        source=SOURCE,
        ticket_id=ticket_id,
        kind=RULE_EVENTS[rule_event],
        priority=priority,
        status=status,
        status_label=status_label[:100],
        domain=domain,
        url=url,
        subject=text("ticket_subject")[:500],
        occurred_at=updated_at or signed,
        agent_assigned=assigned,
        tags=tags,
        system_wide=fields.flag(inner, "ticket_system_wide", prefix=WRAPPER),
        components=fields.names(inner, "ticket_components", prefix=WRAPPER) or (),
    )
    # A body with the ticket's update time names one update of one ticket by one trigger: its
    # hash alone is the key, which also folds a retry Zendesk signs anew. Without it, equal
    # bodies recur (open, solved, open again) and the signed time tells deliveries apart.
    if signed_at is not None and updated_at is None:
        key = fields.signed_key("zendesk-signed", signed_at, raw)
    return event, key
