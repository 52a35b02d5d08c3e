"""The SQLAlchemy statements of the store's hot paths and outbox claims."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ticketbridge.adapters.store.rows import CHANNEL
from ticketbridge.adapters.store.schema import (
    OPEN_STATES,
    TIMER_CANCELLED,
    TIMER_FIRED,
    TIMER_PENDING,
    inbox,
    outbox,
    policies,
    tickets,
    timeline,
    timers,
)

# The columns the hot paths' INSERTs give (the rest take their defaults).
INBOX_KEYS = ("source", "dedup_key", "ticket_id", "received_at", "outcome", "event")
TICKET_KEYS = ("source", "ticket_id", "state", "updated_at")
TIMELINE_KEYS = ("source", "ticket_id", "at", "kind", "detail")


@functools.cache  # built once: aliasing the outbox copies every column (most of a claim's cost)
def blocked() -> sa.Exists:
    """True for an effect with an earlier open effect of the same ticket and target: effects
    of one ticket on one target go out in order (a RECOVERY never overtakes its page, a
    second page never overtakes the RECOVERY before it)."""
    earlier = outbox.alias("earlier")
    return (
        sa.select(earlier.c.id)
        .where(
            earlier.c.source == outbox.c.source,
            earlier.c.ticket_id == outbox.c.ticket_id,
            earlier.c.target == outbox.c.target,
            earlier.c.id < outbox.c.id,
            earlier.c.status.in_(OPEN_STATES),
        )
        .exists()
    )


@functools.cache
def statements(dialect: str) -> Statements:
    return Statements(dialect)


class Statements:
    """Every statement of the hot paths, built once per dialect: SQLAlchemy then reuses its
    compiled form instead of rebuilding (and re-keying) a statement per call."""

    def __init__(self, dialect: str) -> None:
        pg = dialect == "postgresql"
        insert: Any = postgresql.insert if pg else sqlite.insert
        b = sa.bindparam
        self.add_inbox_keyed = (
            insert(inbox)
            .on_conflict_do_nothing(index_elements=["source", "dedup_key"])
            .returning(inbox.c.id, inbox.c.source, inbox.c.dedup_key)
        )
        self.mark_inbox = (
            sa.update(inbox).where(inbox.c.id == b("b_id")).values(outcome=b("b_outcome"))
        )
        load = sa.select(tickets.c.state).where(
            tickets.c.source == b("b_source"), tickets.c.ticket_id == b("b_ticket")
        )
        self.load_ticket = load.with_for_update() if pg else load
        save = insert(tickets)
        self.save_ticket = save.on_conflict_do_update(
            index_elements=["source", "ticket_id"],
            set_={"state": save.excluded.state, "updated_at": save.excluded.updated_at},
        )
        self.add_timeline = sa.insert(timeline)
        # The key beside the id: its multi-row form (SQLite, ``SqliteWrites._insert_rows``)
        # returns rows in no promised order.
        self.enqueue_keyed = (
            insert(outbox)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(outbox.c.id, outbox.c.key)
        )
        self.enqueue_quietly = insert(outbox).on_conflict_do_nothing(index_elements=["key"])
        self.open_for_target = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.source == b("b_source"),
                outbox.c.ticket_id == b("b_ticket"),
                outbox.c.target == b("b_target"),
                # Not ``in_``: an expanding IN cannot take the fast path (``FastStatement``).
                sa.or_(*(outbox.c.status == state for state in OPEN_STATES)),
            )
            .limit(1)
        )
        self.open_targets = (
            sa.select(outbox.c.target)
            .where(
                outbox.c.source == b("b_source"),
                outbox.c.ticket_id == b("b_ticket"),
                sa.or_(*(outbox.c.status == state for state in OPEN_STATES)),
            )
            .distinct()
        )
        arm = insert(timers)
        self.arm_timer = arm.on_conflict_do_update(
            index_elements=["source", "ticket_id", "kind"],
            set_={
                "due_at": arm.excluded.due_at,
                "status": TIMER_PENDING,
                "rule": arm.excluded.rule,
                "updated_at": arm.excluded.updated_at,
                "fired_at": None,
                "lateness": None,
            },
            # A timer that already fired at exactly this due time stays fired: re-planning
            # the same deadline must not fire it twice.
            where=sa.not_(
                sa.and_(timers.c.status == TIMER_FIRED, timers.c.due_at == arm.excluded.due_at)
            ),
        )
        self.cancel_timer = (
            sa.update(timers)
            .where(
                timers.c.source == b("b_source"),
                timers.c.ticket_id == b("b_ticket"),
                timers.c.kind == b("b_kind"),
                timers.c.status == TIMER_PENDING,
            )
            .values(status=TIMER_CANCELLED, updated_at=b("b_at"))
        )
        self.mark_timer_fired = (
            sa.update(timers)
            .where(timers.c.id == b("b_id"), timers.c.status == TIMER_PENDING)
            .values(
                status=TIMER_FIRED, fired_at=b("b_at"), lateness=b("b_late"), updated_at=b("b_at")
            )
        )
        self.finish_effect = (
            sa.update(outbox)
            .where(outbox.c.id == b("b_id"), outbox.c.lease_token == b("b_token"))
            .values(
                status=b("status"),
                attempts=b("attempts"),
                last_code=b("last_code"),
                last_error=b("last_error"),
                updated_at=b("updated_at"),
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=sa.func.coalesce(b("next_attempt_at"), outbox.c.next_attempt_at),
                result=sa.func.coalesce(b("result", type_=sa.JSON), outbox.c.result),
            )
            .returning(outbox.c.id)
        )
        # PostgreSQL delivers a NOTIFY at commit (and once per transaction): every replica
        # listening wakes its workers instead of waiting for a poll.
        self.announce = (
            sa.text(f"SELECT pg_notify('{CHANNEL}', :payload)").bindparams(
                sa.bindparam("payload", type_=sa.String)
            )
            if pg
            else None
        )
        self.save_policy = insert(policies).on_conflict_do_nothing(index_elements=["fingerprint"])
        self.load_policy = sa.select(policies.c.document).where(
            policies.c.fingerprint == b("b_fingerprint")
        )


def timers_with_states(*, outer: bool) -> sa.Select[Any]:
    """Timers (id, source, ticket_id, kind, due_at) with their ticket's state as the stored
    JSON text; ``outer`` keeps a timer without a ticket (its state None)."""
    on = sa.and_(tickets.c.source == timers.c.source, tickets.c.ticket_id == timers.c.ticket_id)
    return sa.select(
        timers.c.id,
        timers.c.source,
        timers.c.ticket_id,
        timers.c.kind,
        timers.c.due_at,
        sa.cast(tickets.c.state, sa.Text),
    ).select_from(timers.outerjoin(tickets, on) if outer else timers.join(tickets, on))
