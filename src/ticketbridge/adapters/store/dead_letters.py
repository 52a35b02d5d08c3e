"""Dead letters and replay: list effects by status, and re-drive one dead effect once.

The API (``GET /v1/effects``, ``POST /v1/effects/{id}/retry``) and the CLI (``ticketbridge
effects list|retry``) both call these, so the rules live here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import DEAD, PENDING, outbox, timeline

# What the list shows: everything but the payload and the result.
_COLUMNS = (
    outbox.c.id,
    outbox.c.key,
    outbox.c.target,
    outbox.c.kind,
    outbox.c.source,
    outbox.c.ticket_id,
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.last_code,
    outbox.c.last_error,
    outbox.c.created_at,
    outbox.c.updated_at,
    outbox.c.next_attempt_at,
)


@dataclass(frozen=True)
class EffectRecord:
    """One outbox row as operators see it (times are epoch seconds)."""

    id: int
    key: str
    target: str
    kind: str
    source: str
    ticket_id: str
    status: str
    attempts: int
    last_code: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float


class EffectNotFound(LookupError):
    """No effect has this id."""

    def __init__(self, effect_id: int) -> None:
        super().__init__(f"no effect {effect_id}")
        self.effect_id = effect_id


class EffectNotDead(Exception):
    """Only a dead effect can be replayed; this one is not (any more)."""

    def __init__(self, effect_id: int, status: str) -> None:
        super().__init__(f"effect {effect_id} is not dead (status {status})")
        self.effect_id = effect_id
        self.status = status


def _record(row: Any) -> EffectRecord:
    return EffectRecord(**{c.name: getattr(row, c.name) for c in _COLUMNS})


def list_effects(
    store: Store, *, status: str, limit: int, before_id: int | None = None
) -> tuple[list[EffectRecord], int | None]:
    """Effects with ``status``, newest first, at most ``limit`` of them with an id below
    ``before_id``; and the ``before_id`` of the next page (None when this is the last)."""
    query = sa.select(*_COLUMNS).where(outbox.c.status == status)
    if before_id is not None:
        query = query.where(outbox.c.id < before_id)
    query = query.order_by(outbox.c.id.desc()).limit(limit + 1)
    with store.reading() as conn:
        rows = conn.execute(query).all()
    page = [_record(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


def replay_dead(store: Store, effect_id: int, *, now: float, via: str) -> EffectRecord:
    """Put one dead effect back in the outbox, due at ``now``; raise EffectNotFound or
    EffectNotDead otherwise. One transaction: of concurrent replays of one effect, exactly
    one succeeds; the others find it no longer dead.

    The effect gets a fresh retry budget (``attempts`` back to 0). What it went through is
    kept: ``last_error`` reads ``replayed after N attempts; was: <error>`` until the next
    attempt, and the ticket's timeline gets a ``replayed`` entry with the attempts, the last
    response code and error, and ``via`` (who asked: ``api`` or ``cli``).
    """
    with store.transaction() as conn:
        row = conn.execute(
            sa.select(*_COLUMNS).where(outbox.c.id == effect_id).with_for_update()
        ).first()
        if row is None:
            raise EffectNotFound(effect_id)
        if row.status != DEAD:
            raise EffectNotDead(effect_id, row.status)
        note = f"replayed after {row.attempts} attempt{'' if row.attempts == 1 else 's'}"
        if row.last_error:
            note += f"; was: {row.last_error}"
        updated = conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == effect_id, outbox.c.status == DEAD)
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
                last_error=note,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(*_COLUMNS)
        ).first()
        if updated is None:  # lost a race the row lock should have prevented
            raise EffectNotDead(effect_id, "changed concurrently")
        conn.execute(
            sa.insert(timeline).values(
                source=row.source,
                ticket_id=row.ticket_id,
                at=now,
                kind="replayed",
                detail={
                    "effect": row.key,
                    "id": row.id,
                    "attempts": row.attempts,
                    "last_response_code": row.last_code,
                    "last_error": row.last_error,
                    "via": via,
                },
            )
        )
    return _record(updated)
