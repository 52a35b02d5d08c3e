"""Read models: a ticket's view, effects' statuses and results, outbox statistics, counts.

Each function runs on a connection inside a read its caller (``Store``) holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticketbridge.adapters.store.rows import OutboxStats
from ticketbridge.adapters.store.schema import (
    DEAD,
    OPEN_STATES,
    inbox,
    outbox,
    tickets,
    timeline,
    timers,
)

_TABLES = {
    "inbox": inbox,
    "tickets": tickets,
    "timeline": timeline,
    "outbox": outbox,
    "timers": timers,
}


def effect_status(conn: Connection, key: str) -> str | None:
    """The status of the effect with ``key`` (None if there is none)."""
    value = conn.execute(sa.select(outbox.c.status).where(outbox.c.key == key)).scalar()
    return str(value) if value is not None else None


def effect_delivery(conn: Connection, key: str) -> tuple[str, bool] | None:
    """The status of the effect with ``key`` and whether a delivery of it may have reached its
    target: an attempt was counted (a timeout or a 5xx may still have landed), or it was
    leased more than once (a process killed mid-delivery counts no attempt; its lease is
    handed on, to the next claim). None if there is no such effect."""
    row = conn.execute(
        sa.select(outbox.c.status, outbox.c.attempts, outbox.c.lease_token).where(
            outbox.c.key == key
        )
    ).one_or_none()
    if row is None:
        return None
    status, attempts, leases = row
    return str(status), attempts > 0 or leases > 1


def effect_results(
    conn: Connection, keys: Sequence[str]
) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """``key -> (status, result)`` for the effects with these keys (absent: none)."""
    rows = conn.execute(
        sa.select(outbox.c.key, outbox.c.status, outbox.c.result).where(
            outbox.c.key.in_(list(keys))
        )
    )
    return {r.key: (str(r.status), r.result) for r in rows}


def ticket_view(conn: Connection, source: str, ticket_id: str) -> dict[str, Any] | None:
    """The ticket's state, timeline and effects, or None if ticketbridge never saw it."""
    row = conn.execute(
        sa.select(tickets.c.state, tickets.c.updated_at).where(
            tickets.c.source == source, tickets.c.ticket_id == ticket_id
        )
    ).first()
    if row is None:
        return None
    received = conn.execute(
        sa.select(inbox.c.received_at, inbox.c.event, inbox.c.outcome)
        .where(inbox.c.source == source, inbox.c.ticket_id == ticket_id)
        .order_by(inbox.c.id)
    ).all()
    events = conn.execute(
        sa.select(timeline.c.at, timeline.c.kind, timeline.c.detail)
        .where(timeline.c.source == source, timeline.c.ticket_id == ticket_id)
        .order_by(timeline.c.id)
    ).all()
    effects = (
        conn.execute(
            sa.select(outbox)
            .where(outbox.c.source == source, outbox.c.ticket_id == ticket_id)
            .order_by(outbox.c.id)
        )
        .mappings()
        .all()
    )
    armed = (
        conn.execute(
            sa.select(timers)
            .where(timers.c.source == source, timers.c.ticket_id == ticket_id)
            .order_by(timers.c.due_at)
        )
        .mappings()
        .all()
    )
    state = dict(row.state)
    entries: list[tuple[float, int, str, dict[str, Any]]] = []
    for i, r in enumerate(received):
        event = dict(r.event)
        detail = {
            "event": event.get("kind"),
            "priority": event.get("priority"),
            "status": event.get("status_label"),
            "change": event.get("change", {}),
        }
        if event.get("occurred_at"):
            detail["occurred_at"] = event["occurred_at"]
        if r.outcome != "accepted":
            detail["outcome"] = r.outcome
        entries.append((r.received_at, 0, "received", detail))
        if i == 0:
            entries.append((r.received_at, 1, "opened", {"policy": state.get("policy")}))
    entries.extend((e.at, 2, e.kind, dict(e.detail)) for e in events)
    entries.extend(
        (
            e["created_at"],
            3,
            "decided",
            {"effect": e["key"], "target": e["target"], "reason": e["reason"]},
        )
        for e in effects
    )
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return {
        "state": state,
        "updated_at": row.updated_at,
        "timeline": [{"at": at, "kind": kind, "detail": d} for at, _, kind, d in entries],
        "effects": [dict(e) for e in effects],
        "timers": [dict(t) for t in armed],
    }


def count(conn: Connection, table: str) -> int:
    """Rows in one of our tables (tests and operations)."""
    target = _TABLES[table]
    return int(conn.execute(sa.select(sa.func.count()).select_from(target)).scalar_one())


def outbox_stats(conn: Connection) -> OutboxStats:
    """Open and dead effects in one grouped query on the status index (for metrics)."""
    rows = conn.execute(
        sa.select(outbox.c.status, sa.func.count(), sa.func.min(outbox.c.created_at))
        .where(outbox.c.status.in_((*OPEN_STATES, DEAD)))
        .group_by(outbox.c.status)
    ).all()
    by_status = {status: (int(n), oldest) for status, n, oldest in rows}
    open_rows = [by_status[s] for s in OPEN_STATES if s in by_status]
    return OutboxStats(
        open=sum(n for n, _ in open_rows),
        oldest_open_created_at=min((float(o) for _, o in open_rows), default=None),
        dead=by_status.get(DEAD, (0, None))[0],
    )
