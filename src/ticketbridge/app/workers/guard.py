"""Checks before an effect goes out: the helpdesk API's word over a webhook's, and ordering."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import HelpdeskTicket
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import OutboxRow
from ticketbridge.adapters.store.schema import OPEN_STATES, SENT
from ticketbridge.app.workers.delivery import GO, Verdict
from ticketbridge.rules.delivery import page_key_of_recovery, still_applies


class TicketReader(Protocol):
    async def get_ticket(self, ticket_id: str) -> HelpdeskTicket:
        """The ticket as the helpdesk API shows it now."""
        ...


class EffectGuard:
    """Re-reads the ticket before a page, bridge, reassign, close, note or INFO (when a reader
    is set), and holds a RECOVERY until its page went out (or drops it when the page
    provably never reached VictorOps: made, then skipped or dead without any delivery).

    A re-read is reused for ``reuse_seconds`` so the effects of one timer (a bridge and its
    note, a breach note and its INFO) cost one API call, not one each.
    """

    REREAD = frozenset({"page", "bridge", "reassign", "close", "note", "info"})

    def __init__(
        self,
        *,
        store: Store,
        run_db: Callable[..., Awaitable[object]],
        readers: Mapping[str, TicketReader],
        reconcile: Callable[[str, HelpdeskTicket], Awaitable[None]],
        reuse_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._run_db = run_db
        self._readers = readers
        self._reconcile = reconcile
        self._reuse = reuse_seconds
        self._recent: dict[tuple[str, str], tuple[float, HelpdeskTicket]] = {}

    async def _read(self, reader: TicketReader, source: str, ticket_id: str) -> HelpdeskTicket:
        now = time.monotonic()
        cached = self._recent.get((source, ticket_id))
        if cached is not None and now - cached[0] < self._reuse:
            return cached[1]
        ticket = await reader.get_ticket(ticket_id)
        if len(self._recent) > 10_000:  # bounded: drop what is stale
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < self._reuse}
        self._recent[(source, ticket_id)] = (now, ticket)
        return ticket

    async def check(self, row: OutboxRow) -> Verdict:
        if row.kind == "recover":
            page_key = page_key_of_recovery(row.key)
            found = await self._run_db(lambda: self._store.effect_delivery(page_key))
            status, tried = cast("tuple[str, bool] | None", found) or (None, False)
            if status == SENT:
                return GO
            if status in OPEN_STATES:
                return Verdict("wait", "its page has not gone out yet", 1.0)
            if tried:
                # Skipped or dead after a delivery that may have landed (e.g. sent, then the
                # process killed before recording it): VictorOps may hold the incident. A
                # RECOVERY of an entity with none open changes nothing there.
                return GO
            return Verdict("skip", f"nothing to recover: the page was {status or 'never made'}")
        reader = self._readers.get(row.source)
        if reader is None or row.kind not in self.REREAD:
            return GO
        try:
            ticket = await self._read(reader, row.source, row.ticket_id)
        except AdapterError as exc:
            if exc.status_code == 404:
                return Verdict("skip", "the helpdesk API no longer has this ticket")
            raise
        if still_applies(row.kind, ticket.priority, ticket.status):
            return GO
        await self._reconcile(row.source, ticket)
        return Verdict(
            "skip",
            f"the helpdesk API shows {ticket.priority.label}, "
            f"{ticket.status.value}: {row.kind} no longer applies",
        )
