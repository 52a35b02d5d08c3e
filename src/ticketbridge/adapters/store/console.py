"""Read models of the operator console: open commitments, counts, vendors, a ticket list.

Every query reads the same tables the API reads (no second source of truth) and is bounded:
lists take a ``limit`` and page by keyset (never OFFSET), so a page costs the same on the
first page and the thousandth. The ticket's state is JSON; its priority and status are read
with the dialect's JSON operator (``json_extract`` on SQLite, ``->>`` on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import (
    DEAD,
    RETRYING,
    SENT,
    TIMER_FIRED,
    TIMER_PENDING,
    outbox,
    tickets,
    timers,
)

ACTIVE = ("open", "pending")
_PRIORITY = tickets.c.state["priority"].as_string()
_STATUS = tickets.c.state["status"].as_string()


@dataclass(frozen=True)
class Commitment:
    """One armed (or fired) timer of a ticket, with the ticket's state beside it."""

    source: str
    ticket_id: str
    kind: str
    due_at: float
    rule: str
    state: dict[str, Any]


@dataclass(frozen=True)
class VendorState:
    """What the outbox says of one target: deliveries by status and the last of each."""

    target: str
    sent: int
    retrying: int
    dead: int
    last_sent_at: float | None
    last_failure_at: float | None
    last_failure_code: int | None


@dataclass(frozen=True)
class Board:
    """Everything the Now page shows, read in one transaction."""

    upcoming: list[Commitment]
    breached: list[Commitment]
    open_by_priority: dict[str, int]
    outbox_open: int
    oldest_open_created_at: float | None
    dead: int
    vendors: list[VendorState]


@dataclass(frozen=True)
class TicketSummary:
    source: str
    ticket_id: str
    updated_at: float
    state: dict[str, Any]


def _commitments(rows: Any) -> list[Commitment]:
    return [
        Commitment(r.source, r.ticket_id, r.kind, float(r.due_at), r.rule, dict(r.state))
        for r in rows
    ]


def board(store: Store, *, limit: int = 200) -> Board:
    """The Now page: the ``limit`` soonest pending commitments of active tickets, the
    engagement breaches of active tickets (a fired engagement timer is one: meeting it
    cancels it), open tickets per priority, the outbox's depth and each target's state."""
    joined = timers.join(
        tickets,
        sa.and_(tickets.c.source == timers.c.source, tickets.c.ticket_id == timers.c.ticket_id),
    )
    columns = (
        timers.c.source,
        timers.c.ticket_id,
        timers.c.kind,
        timers.c.due_at,
        timers.c.rule,
        tickets.c.state,
    )
    upcoming_q = (
        sa.select(*columns)
        .select_from(joined)
        .where(timers.c.status == TIMER_PENDING, timers.c.kind != "write_up")
        .order_by(timers.c.due_at)
        .limit(limit)
    )
    breached_q = (
        sa.select(*columns)
        .select_from(joined)
        .where(
            timers.c.status == TIMER_FIRED,
            timers.c.kind == "engagement",
            _STATUS.in_(ACTIVE),
        )
        .order_by(timers.c.due_at.desc())
        .limit(limit)
    )
    counts_q = sa.select(_PRIORITY, sa.func.count()).where(_STATUS.in_(ACTIVE)).group_by(_PRIORITY)
    vendors_q = sa.select(
        outbox.c.target,
        outbox.c.status,
        sa.func.count(),
        sa.func.max(outbox.c.updated_at),
    ).group_by(outbox.c.target, outbox.c.status)
    failure_q = (
        sa.select(outbox.c.target, outbox.c.updated_at, outbox.c.last_code)
        .where(outbox.c.last_code >= 400)
        .order_by(outbox.c.updated_at.desc())
        .limit(200)
    )
    with store.reading() as conn:
        upcoming = _commitments(conn.execute(upcoming_q))
        breached = _commitments(conn.execute(breached_q))
        counts = {str(p): int(n) for p, n in conn.execute(counts_q)}
        grouped = conn.execute(vendors_q).all()
        failures = conn.execute(failure_q).all()
    upcoming = [c for c in upcoming if c.state.get("status") in ACTIVE]
    by_target: dict[str, dict[str, tuple[int, float | None]]] = {}
    for target, status, n, last in grouped:
        by_target.setdefault(target, {})[status] = (int(n), last)
    last_failure: dict[str, tuple[float, int]] = {}
    for target, at, code in failures:
        last_failure.setdefault(target, (float(at), int(code)))
    vendors = []
    for target, statuses in sorted(by_target.items()):
        failed = last_failure.get(target)
        vendors.append(
            VendorState(
                target=target,
                sent=statuses.get(SENT, (0, None))[0],
                retrying=statuses.get(RETRYING, (0, None))[0],
                dead=statuses.get(DEAD, (0, None))[0],
                last_sent_at=statuses.get(SENT, (0, None))[1],
                last_failure_at=failed[0] if failed else None,
                last_failure_code=failed[1] if failed else None,
            )
        )
    stats = store.outbox_stats()
    return Board(
        upcoming=upcoming,
        breached=breached,
        open_by_priority=counts,
        outbox_open=stats.open,
        oldest_open_created_at=stats.oldest_open_created_at,
        dead=stats.dead,
        vendors=vendors,
    )


@dataclass(frozen=True)
class TicketFilter:
    source: str | None = None
    priority: str | None = None
    status: str | None = None
    search: str | None = None
    breached: bool = False
    paged: bool = False


# A ticket has breached when a commitment of it was missed: nobody engaged in time, a customer
# update went unsent (a reminder fired), or the write-up was still open at its deadline.
_BREACHED = sa.or_(
    tickets.c.state["engagement_breached"].as_boolean(),
    tickets.c.state["update_reminders"].as_integer() > 0,
    tickets.c.state["write_up_reminded"].as_boolean(),
)
# A ticket was paged when ticketbridge opened a VictorOps incident for it at least once.
_PAGED = tickets.c.state["page_generation"].as_integer() > 0


Cursor = tuple[float, str, str]


def list_tickets(
    store: Store, filters: TicketFilter, *, limit: int = 50, after: Cursor | None = None
) -> tuple[list[TicketSummary], Cursor | None]:
    """Tickets most recently changed first, ``limit`` at a time after the keyset ``after``
    (the previous page's last ``(updated_at, source, ticket_id)``); and the next cursor."""
    query = sa.select(tickets.c.source, tickets.c.ticket_id, tickets.c.updated_at, tickets.c.state)
    if filters.source:
        query = query.where(tickets.c.source == filters.source)
    if filters.priority:
        query = query.where(filters.priority == _PRIORITY)
    if filters.status == "active":
        query = query.where(_STATUS.in_(ACTIVE))
    elif filters.status:
        query = query.where(filters.status == _STATUS)
    if filters.breached:
        query = query.where(_BREACHED)
    if filters.paged:
        query = query.where(_PAGED)
    if filters.search:
        term = filters.search.strip()
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(
            sa.or_(
                tickets.c.ticket_id == term,
                tickets.c.state["subject"].as_string().ilike(f"%{escaped}%", escape="\\"),
            )
        )
    if after is not None:
        at, source, ticket_id = after
        query = query.where(
            sa.or_(
                tickets.c.updated_at < at,
                sa.and_(
                    tickets.c.updated_at == at,
                    sa.tuple_(tickets.c.source, tickets.c.ticket_id) > sa.tuple_(source, ticket_id),
                ),
            )
        )
    query = query.order_by(
        tickets.c.updated_at.desc(), tickets.c.source, tickets.c.ticket_id
    ).limit(limit + 1)
    with store.reading() as conn:
        rows = conn.execute(query).all()
    page = [TicketSummary(r.source, r.ticket_id, float(r.updated_at), dict(r.state)) for r in rows]
    more = len(page) > limit
    page = page[:limit]
    cursor = (page[-1].updated_at, page[-1].source, page[-1].ticket_id) if more else None
    return page, cursor


def dead_targets(store: Store) -> list[tuple[str, int]]:
    """Each target with dead effects, and how many."""
    query = (
        sa.select(outbox.c.target, sa.func.count())
        .where(outbox.c.status == DEAD)
        .group_by(outbox.c.target)
        .order_by(outbox.c.target)
    )
    with store.reading() as conn:
        return [(str(t), int(n)) for t, n in conn.execute(query)]


def dead_ids_of_target(store: Store, target: str, *, limit: int = 1000) -> list[int]:
    """The ids of up to ``limit`` dead effects of ``target``, oldest first."""
    query = (
        sa.select(outbox.c.id)
        .where(outbox.c.status == DEAD, outbox.c.target == target)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    with store.reading() as conn:
        return [int(i) for i in conn.execute(query).scalars()]
