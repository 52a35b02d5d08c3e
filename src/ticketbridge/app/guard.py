"""Checks before an effect goes out: the helpdesk API's word over a webhook's, and ordering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.freshdesk import HelpdeskTicket
from ticketbridge.adapters.store.schema import OPEN_STATES, SENT
from ticketbridge.adapters.store.sql import OutboxRow, Store
from ticketbridge.app.dispatcher import GO, Verdict
from ticketbridge.rules.model import Priority, Status

PAGING = (Priority.URGENT, Priority.HIGH)


class TicketReader(Protocol):
    async def get_ticket(self, ticket_id: str) -> HelpdeskTicket:
        """The ticket as the helpdesk API shows it now."""
        ...


def still_applies(kind: str, ticket: HelpdeskTicket) -> bool:
    """Whether an effect of ``kind`` still matches the ticket the helpdesk API shows."""
    if kind in ("page", "bridge"):
        return ticket.priority in PAGING and ticket.status.is_active
    if kind == "reassign":
        return ticket.status.is_active
    if kind == "close":
        return ticket.status is Status.PENDING
    return True


class EffectGuard:
    """Re-reads the ticket before a page, bridge, reassign or close (when a reader is set),
    and holds a RECOVERY until its page went out (or drops it when the page never did)."""

    REREAD = frozenset({"page", "bridge", "reassign", "close"})

    def __init__(
        self,
        *,
        store: Store,
        run_db: Callable[..., Awaitable[object]],
        readers: Mapping[str, TicketReader],
        reconcile: Callable[[str, HelpdeskTicket], Awaitable[None]],
    ) -> None:
        self._store = store
        self._run_db = run_db
        self._readers = readers
        self._reconcile = reconcile

    async def check(self, row: OutboxRow) -> Verdict:
        if row.kind == "recover":
            page_key = row.key.rsplit(":recover:", 1)[0] + ":page:" + row.key.rsplit(":", 1)[1]
            status = await self._run_db(lambda: self._store.effect_status(page_key))
            if status == SENT:
                return GO
            if status in OPEN_STATES:
                return Verdict("wait", "its page has not gone out yet", 1.0)
            return Verdict("skip", f"nothing to recover: the page was {status or 'never made'}")
        reader = self._readers.get(row.source)
        if reader is None or row.kind not in self.REREAD:
            return GO
        try:
            ticket = await reader.get_ticket(row.ticket_id)
        except AdapterError as exc:
            if exc.status_code == 404:
                return Verdict("skip", "the helpdesk API no longer has this ticket")
            raise
        if still_applies(row.kind, ticket):
            return GO
        await self._reconcile(row.source, ticket)
        return Verdict(
            "skip",
            f"the helpdesk API shows {ticket.priority.label}, "
            f"{ticket.status.value}: {row.kind} no longer applies",
        )
