"""What outbound adapters return: a successful call, and a ticket read back from a helpdesk."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ticketbridge.rules import Priority, Status


@dataclass(frozen=True)
class Sent:
    """A successful vendor call: its HTTP status and what to store with the effect."""

    code: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HelpdeskTicket:
    """A ticket as the helpdesk API reports it now (custom statuses count as open)."""

    ticket_id: str
    priority: Priority
    status: Status
    status_code: int
    group_id: int | None
    responder_id: int | None
    updated_at: datetime | None
