"""One transaction's writes and reads for a group of webhooks or timers, dialect-neutral.

How each set of rows reaches the database is the dialect's (``sqlite.SqliteWrites``,
``postgres.PostgresWrites``); the rows themselves, and what the caller gets back, are
built here once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticketbridge.adapters.store.compiled import Driver
from ticketbridge.adapters.store.rows import (
    DueTimer,
    NewEffect,
    OutboxRow,
    TicketWrite,
    TimelineEntry,
    TimerUpdate,
    first_ids,
)
from ticketbridge.adapters.store.schema import (
    DEAD,
    NOT_CONFIGURED,
    PENDING,
    SKIPPED,
    TIMER_PENDING,
    timers,
)
from ticketbridge.adapters.store.statements import statements, timers_with_states
from ticketbridge.rules.delivery import LeasePlan
from ticketbridge.rules.effects import DEAD_LETTER


class DialectWrites(Protocol):
    """What differs between the dialects in a unit of work: how each set of rows is written
    (one statement a set, or one a row), and what a due timer's read locks."""

    timers_need_ticket: bool

    def add_inbox_and_lock(
        self, rows: Sequence[Mapping[str, Any]], stored_keys: Sequence[str]
    ) -> tuple[list[int | None], dict[tuple[str, str], Any]]: ...
    def open_targets(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str, str]]: ...
    def save_tickets(self, states: Sequence[TicketWrite], at: float) -> None: ...
    def set_timers(self, changes: Sequence[TimerUpdate], at: float) -> None: ...
    def add_timeline(self, entries: Sequence[TimelineEntry]) -> None: ...
    def insert_effects(self, values: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]: ...
    def write_decided(
        self,
        states: Sequence[TicketWrite],
        timer_changes: Sequence[TimerUpdate],
        timeline: Sequence[TimelineEntry],
        values: Sequence[Mapping[str, Any]],
        at: float,
    ) -> list[tuple[Any, ...]]: ...
    def run_many(self, name: str, rows: Sequence[Mapping[str, Any]], keys: Any = None) -> int: ...
    def run_each(
        self, name: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[list[tuple[Any, ...]]]: ...
    def announce(self, timer: float | None, effects: int | None) -> None: ...


def stored_dedup_key(ticket_id: str, dedup_key: str) -> str:
    """The inbox's key for a delivery: ``dedup_key`` behind its ticket's id (length-prefixed,
    so no two (ticket, key) pairs share one), so that a ticket's deliveries sit together in
    the unique index and a COMMIT writes fewer of its pages than random hashes would. One key
    never dedups two tickets' events."""
    return f"{len(ticket_id)}:{ticket_id}:{dedup_key}"


def _effect_values(
    rows: Sequence[NewEffect] | Sequence[tuple[Mapping[str, Any], float, bool]],
    lease: tuple[str, float] | None,
    skipped: Sequence[bool] | None,
) -> list[dict[str, Any]]:
    """The outbox rows to insert for ``(effect, at, leased)`` (see ``insert_effects``)."""
    values = [
        {
            **row,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
            "updated_at": at,
            "lease_owner": lease[0] if leased and lease else None,
            "lease_expires_at": lease[1] if leased and lease else None,
            "lease_token": 1 if leased and lease else 0,
            "last_error": None,
        }
        for row, at, leased in rows
    ]
    for value, skip in zip(values, skipped or (), strict=False):
        if skip:
            value.update(_SKIPPED_AT_ONCE)
    for value in values:
        if value["target"] == DEAD_LETTER:  # a record, never sent (``rules.limits``)
            value.update(_SKIPPED_AT_ONCE, status=DEAD, last_error=value["reason"])
    return values


def _outbox_rows(
    values: Sequence[Mapping[str, Any]], returned: Sequence[tuple[Any, ...]]
) -> list[OutboxRow | None]:
    """What ``insert_effects`` returns for ``values`` given the ``(id, key)`` rows the INSERT
    returned: for each inserted row the row, None where its key was already present."""
    ids = first_ids([value["key"] for value in values], returned)
    return [
        OutboxRow(
            id=row_id,
            key=value["key"],
            target=value["target"],
            kind=value["kind"],
            source=value["source"],
            ticket_id=value["ticket_id"],
            payload=value["payload"],
            attempts=0,
            lease_token=value["lease_token"],
            lease_expires_at=value["lease_expires_at"],
        )
        if row_id is not None
        else None
        for value, row_id in zip(values, ids, strict=True)
    ]


# An effect inserted final, its target not configured (``UnitOfWork.insert_effects``).
_SKIPPED_AT_ONCE = {
    "status": SKIPPED,
    "last_error": NOT_CONFIGURED,
    "lease_owner": None,
    "lease_expires_at": None,
    "lease_token": 0,
}


class UnitOfWork:
    """One transaction's writes and reads for a group of webhooks or due timers."""

    __slots__ = ("_db", "_driver", "_sql", "conn")

    def __init__(self, conn: Connection, dialect: Callable[[Driver], DialectWrites]) -> None:
        self.conn = conn
        self._sql = statements(conn.dialect.name)
        self._driver = Driver(conn)
        self._db = dialect(self._driver)

    def close(self) -> None:
        """Release the driver cursor (the transaction is the store's)."""
        self._driver.close()

    def announce(self, *, timer: float | None = None, effects: int | None = None) -> None:
        """Tell every listening replica, at commit, that there is new work (PostgreSQL): a
        timer armed at ``timer``, ``effects`` effects for anyone to claim. Neither given:
        "anything may have changed" (see ``Announcement``)."""
        self._db.announce(timer, effects)

    def add_inbox_and_lock(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[list[int | None], dict[tuple[str, str], dict[str, Any]]]:
        """Record ``rows`` (dicts of ``source``, ``dedup_key``, ``ticket_id``, ``at`` and
        ``event``) in the inbox, in order: each one's id, or None for a (source, dedup_key)
        already recorded (earlier in ``rows`` too); and the states of the rows' tickets that
        exist, by ``(source, ticket_id)``. On PostgreSQL one statement, the tickets (of all
        the rows) locked FOR UPDATE one by one in key order, so that transactions sharing
        tickets take their locks in one order; on SQLite (one writer) the tickets of the new
        rows, read."""
        stored = [stored_dedup_key(row["ticket_id"], row["dedup_key"]) for row in rows]
        return self._db.add_inbox_and_lock(rows, stored)

    def mark_inbox(self, inbox_id: int, outcome: str) -> None:
        """Record what came of an inbox row (``stale``...)."""
        self._driver.run("mark_inbox", {"b_id": inbox_id, "b_outcome": outcome})

    def load_ticket(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        """The ticket's stored state (locked on PostgreSQL), None if there is none."""
        found = self._driver.fetch("load_ticket", {"b_source": source, "b_ticket": ticket_id})
        return dict(found[0][0]) if found else None

    def open_targets(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """``(source, ticket_id, target)`` for every target on which one of the tickets
        ``keys`` has an open (pending or retrying) effect."""
        ordered = sorted(set(keys))
        return self._db.open_targets(ordered) if ordered else set()

    def save_tickets(self, states: Sequence[TicketWrite], *, at: float) -> None:
        """Upsert the states of distinct tickets in one statement (on PostgreSQL a ticket
        twice is an error)."""
        if states:
            self._db.save_tickets(states, at)

    def set_timers_many(self, changes: Sequence[TimerUpdate], *, at: float) -> None:
        """Apply timer changes (arm at ``due``, cancel for None); for the same timer the last
        change wins."""
        if changes:
            self._db.set_timers(changes, at)

    def add_timeline_many(self, entries: Sequence[TimelineEntry]) -> None:
        """Append timeline entries in one statement."""
        if entries:
            self._db.add_timeline(entries)

    def mark_timers_fired(self, fired: Sequence[tuple[int, float]], *, at: float) -> None:
        """Mark ``(timer_id, lateness)`` pairs fired."""
        if fired:
            rows = [{"b_id": i, "b_at": at, "b_late": late} for i, late in fired]
            self._db.run_many("mark_timer_fired", rows)

    def enqueue(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        at: float,
        lease: tuple[str, float] | None = None,
    ) -> list[OutboxRow]:
        """Insert effects (a key already present is left as it is); return the inserted ones.

        With ``lease=(owner, expires_at)``, an effect whose ticket has no earlier open effect
        on its target is inserted already leased to ``owner`` (``lease_token`` 1): the caller
        sends it at once, without a claim. The others wait for a claim, in order.
        """
        if lease is None:
            inserted = self.insert_effects([NewEffect(row, at, False) for row in rows])
        else:
            plan = LeasePlan(self.open_targets([(r["source"], r["ticket_id"]) for r in rows]))
            effects = [NewEffect(row, at, plan.take(row)) for row in rows]
            inserted = self.insert_effects(effects, lease=lease)
        return [row for row in inserted if row is not None]

    def insert_effects(
        self,
        rows: Sequence[NewEffect],
        *,
        lease: tuple[str, float] | None = None,
        skipped: Sequence[bool] | None = None,
    ) -> list[OutboxRow | None]:
        """Insert effects, in order (one round trip on PostgreSQL); for each the inserted row,
        or None where its key was already present. A ``leased`` one is inserted leased to
        ``lease``'s owner (see ``enqueue``). One whose ``skipped`` entry is true is inserted
        final, ``skipped`` for want of a configured target (what the dispatcher would record
        on its first look, without the round trip)."""
        values = _effect_values(rows, lease, skipped)
        return _outbox_rows(values, self._db.insert_effects(values)) if values else []

    def write_decided(
        self,
        *,
        states: Sequence[TicketWrite],
        timer_changes: Sequence[TimerUpdate],
        timeline: Sequence[TimelineEntry],
        effects: Sequence[NewEffect] | Sequence[tuple[Mapping[str, Any], float, bool]],
        at: float,
        lease: tuple[str, float] | None = None,
        skipped: Sequence[bool] | None = None,
    ) -> list[OutboxRow | None]:
        """``save_tickets``, ``set_timers_many``, ``add_timeline_many`` and ``insert_effects``
        (whose result it returns), in that order; on PostgreSQL one statement (one round trip
        where there were four)."""
        values = _effect_values(effects, lease, skipped)
        returned = self._db.write_decided(states, timer_changes, timeline, values, at)
        return _outbox_rows(values, returned)

    def enqueue_many(self, rows: Sequence[dict[str, Any]], *, at: float) -> int:
        """Insert effects in one statement (a key already present is left); the rows inserted,
        or the rows offered where the driver cannot count an executemany (psycopg: -1)."""
        if not rows:
            return 0
        values = _effect_values([NewEffect(row, at, False) for row in rows], None, None)
        inserted = self._db.run_many("enqueue_quietly", values, tuple(values[0]))
        return inserted if inserted >= 0 else len(values)

    def finish_effects(
        self, items: Sequence[tuple[OutboxRow, Mapping[str, Any], Sequence[dict[str, Any]]]]
    ) -> list[bool]:
        """Record each ``(row, outcome, follow_ups)`` attempt's outcome and enqueue its
        follow-ups, in order (one round trip on PostgreSQL for the outcomes); for each, False
        (nothing written) if the lease was lost, i.e. the fencing token moved on. ``outcome``
        holds ``status``, ``now``, ``attempts`` and optionally ``code``, ``error``,
        ``next_attempt_at`` and ``result``."""
        found = self._db.run_each(
            "finish_effect",
            [
                {
                    "b_id": row.id,
                    "b_token": row.lease_token,
                    "status": outcome["status"],
                    "attempts": outcome["attempts"],
                    "last_code": outcome.get("code"),
                    "last_error": outcome.get("error"),
                    "updated_at": outcome["now"],
                    "next_attempt_at": outcome.get("next_attempt_at"),
                    "result": outcome.get("result"),
                }
                for row, outcome, _ in items
            ],
        )
        kept = [bool(rows) for rows in found]
        for (_, outcome, follow_ups), ok in zip(items, kept, strict=True):
            if ok and follow_ups:
                self.enqueue(follow_ups, at=outcome["now"])
        return kept

    def due_timers_with_states(
        self, *, now: float, limit: int
    ) -> tuple[list[DueTimer], dict[tuple[str, str], str]]:
        """Pending timers due at ``now``, earliest first, locked for this transaction, and in
        the same statement their tickets' states as the stored JSON text by ``(source,
        ticket_id)`` (for pydantic to validate without a dict between). Locked timers are
        skipped: they fire on the next round. On PostgreSQL each timer is locked with its
        ticket (see ``PostgresWrites.timers_need_ticket``); on SQLite a timer without a
        ticket comes without a state."""
        query = (
            timers_with_states(outer=not self._db.timers_need_ticket)
            .where(timers.c.status == TIMER_PENDING, timers.c.due_at <= now)
            .order_by(timers.c.due_at, timers.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        due: list[DueTimer] = []
        states: dict[tuple[str, str], str] = {}
        for timer_id, source, ticket_id, kind, due_at, state in self.conn.execute(query).all():
            due.append(DueTimer(timer_id, source, ticket_id, kind, due_at))
            if state is not None:
                states[(source, ticket_id)] = state
        return due, states

    def upcoming_timers_with_states(
        self, *, after: tuple[float, int], until: float, limit: int
    ) -> list[tuple[DueTimer, str | None]]:
        """Up to ``limit`` pending timers after the position ``after`` (``(due_at, id)``, in
        that order) and due by ``until``, each with its ticket's state as the stored JSON text
        (None without a ticket). A plain read: nothing is locked."""
        due_at, timer_id = after
        query = (
            timers_with_states(outer=True)
            .where(
                timers.c.status == TIMER_PENDING,
                timers.c.due_at >= due_at,
                timers.c.due_at <= until,
                sa.or_(timers.c.due_at > due_at, timers.c.id > timer_id),
            )
            .order_by(timers.c.due_at, timers.c.id)
            .limit(limit)
        )
        return [
            (DueTimer(timer_id, source, ticket_id, kind, due), state)
            for timer_id, source, ticket_id, kind, due, state in self.conn.execute(query).all()
        ]

    def save_policy(self, fingerprint: str, document: dict[str, Any], *, at: float) -> None:
        """Keep a policy version so tickets pinned to it keep its rules after a reload."""
        row = {"fingerprint": fingerprint, "document": document, "created_at": at}
        self.conn.execute(self._sql.save_policy, row)

    def load_policy(self, fingerprint: str) -> dict[str, Any] | None:
        row = self.conn.execute(self._sql.load_policy, {"b_fingerprint": fingerprint}).first()
        return dict(row.document) if row is not None else None
