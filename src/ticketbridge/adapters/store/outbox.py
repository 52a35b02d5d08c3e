"""Outbox claims: lease due effects, renew and release leases, and when work comes due.

Each function runs on a connection inside a transaction its caller (``Store``) holds.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticketbridge.adapters.store.rows import OutboxRow
from ticketbridge.adapters.store.schema import OPEN_STATES, TIMER_PENDING, outbox, timers
from ticketbridge.adapters.store.statements import blocked


def claim_due(
    conn: Connection, *, now: float, owner: str, limit: int, lease_seconds: float
) -> list[OutboxRow]:
    """Lease up to ``limit`` due effects to ``owner``; each claim bumps its fencing token."""
    due = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.status.in_(OPEN_STATES),
            outbox.c.next_attempt_at <= now,
            sa.or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
            ~blocked(),
        )
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(conn.execute(due).scalars())
    if not ids:
        return []
    rows = conn.execute(
        sa.update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(
            lease_owner=owner,
            lease_expires_at=now + lease_seconds,
            lease_token=outbox.c.lease_token + 1,
        )
        .returning(
            outbox.c.id,
            outbox.c.key,
            outbox.c.target,
            outbox.c.kind,
            outbox.c.source,
            outbox.c.ticket_id,
            outbox.c.payload,
            outbox.c.attempts,
            outbox.c.lease_token,
            outbox.c.lease_expires_at,
        )
    ).all()
    claimed = [
        OutboxRow(
            id=r.id,
            key=r.key,
            target=r.target,
            kind=r.kind,
            source=r.source,
            ticket_id=r.ticket_id,
            payload=dict(r.payload),
            attempts=r.attempts,
            lease_token=r.lease_token,
            lease_expires_at=r.lease_expires_at,
        )
        for r in rows
    ]
    claimed.sort(key=lambda row: row.id)
    return claimed


def renew_lease(conn: Connection, row: OutboxRow, *, owner: str, expires_at: float) -> bool:
    """Extend ``owner``'s lease on the open effect ``row`` to ``expires_at``; False (nothing
    written) if its fencing token moved on: another claim took it."""
    result = conn.execute(
        sa.update(outbox)
        .where(
            outbox.c.id == row.id,
            outbox.c.lease_token == row.lease_token,
            outbox.c.lease_owner == owner,
            outbox.c.status.in_(OPEN_STATES),
        )
        .values(lease_expires_at=expires_at)
    )
    return result.rowcount == 1


def release_leases(conn: Connection, owner: str | None = None) -> int:
    """Drop leases (all, or one owner's) so open effects are claimable at once."""
    stmt = sa.update(outbox).where(outbox.c.lease_owner.is_not(None))
    if owner is not None:
        stmt = stmt.where(outbox.c.lease_owner == owner)
    return conn.execute(stmt.values(lease_owner=None, lease_expires_at=None)).rowcount


def next_due_at(conn: Connection, *, now: float) -> float | None:
    """When an open effect can next be claimed: its due time, or its lease's end while one is
    held. Effects waiting behind an earlier one of their ticket don't count: they become
    claimable when that one finishes, which wakes the dispatcher anyway."""
    when = sa.case(
        (outbox.c.lease_expires_at > now, outbox.c.lease_expires_at),
        else_=outbox.c.next_attempt_at,
    )
    value = conn.execute(
        sa.select(sa.func.min(when)).where(outbox.c.status.in_(OPEN_STATES), ~blocked())
    ).scalar()
    return float(value) if value is not None else None


def next_timer_due(conn: Connection) -> float | None:
    """When the earliest pending timer comes due (None if there is none)."""
    value = conn.execute(
        sa.select(sa.func.min(timers.c.due_at)).where(timers.c.status == TIMER_PENDING)
    ).scalar()
    return float(value) if value is not None else None
