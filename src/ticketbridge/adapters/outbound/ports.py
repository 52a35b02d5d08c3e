"""What outbound adapters return: a successful call, and a ticket read back from a helpdesk."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ticketbridge.adapters.outbound.errors import AdapterError
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


class GroupDirectory:
    """A helpdesk's agent groups by name, fetched with ``load`` once and again only when a
    name is not found (a group created since); concurrent lookups share one fetch."""

    def __init__(self, vendor: str, load: Callable[[], Awaitable[dict[str, int]]]) -> None:
        self._vendor = vendor
        self._load = load
        self._groups: dict[str, int] | None = None
        self._lock = asyncio.Lock()

    async def id_of(self, name: str) -> int:
        """The id of the group called ``name``, or a final AdapterError if there is none."""
        async with self._lock:
            if self._groups is None or name not in self._groups:
                self._groups = await self._load()
            groups = self._groups
        if name not in groups:
            raise AdapterError(f"{self._vendor} has no group named {name!r}", retryable=False)
        return groups[name]
