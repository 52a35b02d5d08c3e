"""One transaction's writes and reads for a group of webhooks or timers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticketbridge.adapters.store.compiled import FastStatement, fast_statements
from ticketbridge.adapters.store.postgres import (
    NOTHING,
    PgSets,
    pg_effect_params,
    pg_ticket_params,
    pg_timeline_params,
    pg_timer_parts,
)
from ticketbridge.adapters.store.rows import (
    Announcement,
    DueTimer,
    OutboxRow,
    RawJSON,
    json_text,
)
from ticketbridge.adapters.store.schema import (
    DEAD,
    NOT_CONFIGURED,
    PENDING,
    SKIPPED,
    TIMER_PENDING,
    tickets,
    timers,
)
from ticketbridge.adapters.store.sqlite import SQLITE_ROWS_PER_INSERT, sqlite_load_tickets
from ticketbridge.adapters.store.statements import (
    INBOX_KEYS,
    TICKET_KEYS,
    TIMELINE_KEYS,
    statements,
    timers_with_states,
)
from ticketbridge.rules.delivery import LeasePlan
from ticketbridge.rules.effects import DEAD_LETTER


def stored_dedup_key(ticket_id: str, dedup_key: str) -> str:
    """The inbox's key for a delivery: ``dedup_key`` behind its ticket's id (length-prefixed,
    so no two (ticket, key) pairs share one), so that a ticket's deliveries sit together in
    the unique index. As bare hashes, every webhook's key landed on a random page of that
    index: a group of 16 new tickets wrote 70 pages to the log at COMMIT, against 51 so
    (145 -> 125 µs a webhook, in process). One key now never dedups two tickets' events."""
    return f"{len(ticket_id)}:{ticket_id}:{dedup_key}"


def _first_ids(keys: Sequence[Any], returned: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """For each of ``keys`` in order, the id ``returned`` for it as ``(id, *key)`` rows, or
    None where none was returned (a conflict) or an earlier equal key took it."""
    ids = {tuple(row[1:]) if len(row) > 2 else row[1]: int(row[0]) for row in returned}
    return [ids.pop(key, None) for key in keys]


def _effect_values(
    rows: Sequence[tuple[Mapping[str, Any], float, bool]],
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
    values: Sequence[Mapping[str, Any]], ids: Sequence[int | None]
) -> list[OutboxRow | None]:
    """What ``insert_effects`` returns: for each inserted row (its id found) the row."""
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
    """One transaction's worth of writes for one webhook or timer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self._sql = statements(conn.dialect.name)
        self._fast = fast_statements(conn.dialect)
        self._cursor: Any = None

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def _dbapi_cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def _run(
        self, name: str, values: Mapping[str, Any], keys: Sequence[str] | None = None
    ) -> tuple[FastStatement, Any]:
        """Execute the hot-path statement ``name`` (see ``FastStatement``) with ``values``."""
        fast = self._fast.get(name, keys)
        params = fast.params(values)
        cursor = self._dbapi_cursor()
        try:
            cursor.execute(fast.sql, params)
        except Exception as exc:
            self._cursor = None
            # As Connection.execute would: the SQLAlchemy exception (OperationalError...),
            # and a connection found broken is invalidated.
            self.conn._handle_dbapi_exception(exc, fast.sql, params, cursor, None)
        return fast, cursor

    def _sets(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Execute ``sql`` on the driver (one of ``PgSets``' statements, or a multi-row form
        of SQLite's); the rows it returned, as the driver gave them."""
        cursor = self._dbapi_cursor()
        try:
            cursor.execute(sql, params)
        except Exception as exc:
            self._cursor = None
            self.conn._handle_dbapi_exception(exc, sql, params, cursor, None)
        return cursor.fetchall() if cursor.description is not None else []

    def _run_many(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> int:
        """Execute ``name`` once per row (``executemany``); the rows it changed."""
        if len(rows) == 1 and self._pg:  # psycopg: a pipeline for one row costs more than it saves
            return int(self._run(name, rows[0], keys)[1].rowcount)
        fast = self._fast.get(name, keys)
        params = [fast.params(row) for row in rows]
        cursor = self._dbapi_cursor()
        try:
            cursor.executemany(fast.sql, params)
        except Exception as exc:
            self._cursor = None
            self.conn._handle_dbapi_exception(exc, fast.sql, params, cursor, None)
        return int(cursor.rowcount)

    def _insert_rows(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` with the single-row INSERT ``name`` made multi-row, up to
        ``SQLITE_ROWS_PER_INSERT`` rows a statement (SQLite); the rows its RETURNING gave, in
        no promised order. One statement where one per row ran before: the rows' bindings and
        the inserts are the same work, the per-statement overhead is paid once."""
        fast = self._fast.get(name, keys)
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
            sql = fast.rows_sql(len(chunk))
            found.extend(fast.rows_of(self._sets(sql, fast.rows_params(chunk))))
        return found

    def _load_tickets_sqlite(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The stored states of the tickets ``keys`` that exist, one statement per
        ``SQLITE_ROWS_PER_INSERT`` keys (each looked up by primary key)."""
        fast = self._fast.get("load_ticket")  # for its ``state`` column's result processor
        states: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), SQLITE_ROWS_PER_INSERT):
            chunk = keys[start : start + SQLITE_ROWS_PER_INSERT]
            params = [value for key in chunk for value in key]
            found = self._sets(sqlite_load_tickets(len(chunk)), params)
            for (source, ticket_id, _), (state,) in zip(
                found, fast.rows_of([row[2:] for row in found]), strict=True
            ):
                states[(source, ticket_id)] = dict(state)
        return states

    def _run_each(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> list[list[tuple[Any, ...]]]:
        """Execute ``name`` once per row and return what each execution returned, in order.

        On PostgreSQL this is one ``executemany(returning=True)``, which psycopg pipelines:
        one round trip for the whole list instead of one per row. SQLite runs in process, so
        there each row is simply executed in turn.
        """
        if not rows:
            return []
        fast = self._fast.get(name, keys)
        if not self._pg or len(rows) == 1:  # one row: a pipeline would cost more than it saves
            return [fast.rows(self._run(name, row, keys)[1]) for row in rows]
        params = [fast.params(row) for row in rows]
        cursor = self._dbapi_cursor()
        try:
            cursor.executemany(fast.sql, params, returning=True)
        except Exception as exc:
            self._cursor = None
            self.conn._handle_dbapi_exception(exc, fast.sql, params, cursor, None)
        found = [fast.rows(cursor)]
        while cursor.nextset():
            found.append(fast.rows(cursor))
        return found

    def announce(self, *, timer: float | None = None, effects: int | None = None) -> None:
        """Tell every listening replica, at commit, that there is new work (PostgreSQL): a
        timer armed at ``timer``, ``effects`` effects for anyone to claim. Neither given:
        "anything may have changed" (see ``Announcement``)."""
        if self._sql.announce is not None:
            self._run("announce", {"payload": Announcement(timer, effects).encode()})

    def add_inbox(
        self,
        *,
        source: str,
        dedup_key: str,
        ticket_id: str,
        event: dict[str, Any],
        at: float,
    ) -> int | None:
        """Record a received event; None when (source, dedup_key) was already recorded."""
        row = {
            "source": source,
            "dedup_key": stored_dedup_key(ticket_id, dedup_key),
            "ticket_id": ticket_id,
            "received_at": at,
            "outcome": "accepted",
            "event": event,
        }
        fast, cursor = self._run("add_inbox", row, INBOX_KEYS)
        found = fast.rows(cursor)
        return int(found[0][0]) if found else None

    def add_inbox_and_lock(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[list[int | None], dict[tuple[str, str], dict[str, Any]]]:
        """Record ``rows`` (``add_inbox``'s arguments as dicts) in the inbox, in order: each
        one's id, or None for a (source, dedup_key) already recorded (earlier in ``rows``
        too); and the states of the rows' tickets that exist, by ``(source, ticket_id)``. On
        PostgreSQL one statement, the tickets (of all the rows) locked FOR UPDATE one by one
        in key order, so that transactions sharing tickets take their locks in one order; on
        SQLite (one writer) the tickets of the new rows, read."""
        keys_stored = [stored_dedup_key(row["ticket_id"], row["dedup_key"]) for row in rows]
        if self._pg:
            keys = sorted({(row["source"], row["ticket_id"]) for row in rows})
            returned = self._sets(
                PgSets.add_inbox_and_lock,
                (
                    [row["source"] for row in rows],
                    keys_stored,
                    [row["ticket_id"] for row in rows],
                    [row["at"] for row in rows],
                    [json_text(row["event"]) for row in rows],
                    [source for source, _ in keys],
                    [ticket_id for _, ticket_id in keys],
                ),
            )
            inserted = [(i, source, key) for part, i, source, key, _ in returned if part == 0]
            states = {
                (source, ticket_id): dict(json.loads(state) if isinstance(state, str) else state)
                for part, _, source, ticket_id, state in returned
                if part == 1
            }
            ids = _first_ids(
                [(row["source"], key) for row, key in zip(rows, keys_stored, strict=True)], inserted
            )
            return ids, states
        # One multi-row INSERT (a key twice in ``rows``: the later one finds the conflict);
        # in process it measured 9-10 against 13 µs a webhook for one INSERT per row.
        found = self._insert_rows(
            "add_inbox_keyed",
            [
                {
                    "source": row["source"],
                    "dedup_key": key,
                    "ticket_id": row["ticket_id"],
                    "received_at": row["at"],
                    "outcome": "accepted",
                    "event": row["event"],
                }
                for row, key in zip(rows, keys_stored, strict=True)
            ],
            INBOX_KEYS,
        )
        ids = _first_ids(
            [(row["source"], key) for row, key in zip(rows, keys_stored, strict=True)], found
        )
        fresh = sorted({(r["source"], r["ticket_id"]) for r, i in zip(rows, ids, strict=True) if i})
        return ids, self._load_tickets_sqlite(fresh)

    def mark_inbox(self, inbox_id: int, outcome: str) -> None:
        self._run("mark_inbox", {"b_id": inbox_id, "b_outcome": outcome})

    def load_ticket(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        fast, cursor = self._run("load_ticket", {"b_source": source, "b_ticket": ticket_id})
        found = fast.rows(cursor)
        return dict(found[0][0]) if found else None

    def open_targets(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """``(source, ticket_id, target)`` for every target on which one of the tickets
        ``keys`` has an open (pending or retrying) effect."""
        ordered = sorted(set(keys))
        if self._pg and ordered:
            found_pg = self._sets(
                PgSets.open_targets, ([s for s, _ in ordered], [t for _, t in ordered])
            )
            return {(source, ticket_id, target) for source, ticket_id, target in found_pg}
        found = self._run_each("open_targets", [{"b_source": s, "b_ticket": t} for s, t in ordered])
        return {
            (source, ticket_id, target)
            for (source, ticket_id), rows in zip(ordered, found, strict=True)
            for (target,) in rows
        }

    def save_ticket(self, source: str, ticket_id: str, state: dict[str, Any], at: float) -> None:
        row = {"source": source, "ticket_id": ticket_id, "state": state, "updated_at": at}
        self._run("save_ticket", row, TICKET_KEYS)

    def add_timeline(
        self, source: str, ticket_id: str, *, at: float, kind: str, detail: dict[str, Any]
    ) -> None:
        self.add_timeline_many([(source, ticket_id, at, kind, detail)])

    def add_timeline_many(
        self, entries: Sequence[tuple[str, str, float, str, dict[str, Any] | RawJSON]]
    ) -> None:
        """Append ``(source, ticket_id, at, kind, detail)`` entries in one statement."""
        if entries and self._pg:
            self._sets(PgSets.add_timeline, pg_timeline_params(entries))
        elif entries:
            self._run_many(
                "add_timeline",
                [
                    {"source": s, "ticket_id": t, "at": at, "kind": k, "detail": d}
                    for s, t, at, k, d in entries
                ],
                TIMELINE_KEYS,
            )

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
            inserted = self.insert_effects([(row, at, False) for row in rows])
        else:
            plan = LeasePlan(self.open_targets([(r["source"], r["ticket_id"]) for r in rows]))
            inserted = self.insert_effects([(row, at, plan.take(row)) for row in rows], lease=lease)
        return [row for row in inserted if row is not None]

    def insert_effects(
        self,
        rows: Sequence[tuple[Mapping[str, Any], float, bool]],
        *,
        lease: tuple[str, float] | None = None,
        skipped: Sequence[bool] | None = None,
    ) -> list[OutboxRow | None]:
        """Insert ``(effect, at, leased)`` rows, in order (one round trip on PostgreSQL); for
        each the inserted row, or None where its key was already present. A row with
        ``leased`` true is inserted leased to ``lease``'s owner (see ``enqueue``). A row whose
        ``skipped`` entry is true is inserted final, ``skipped`` for want of a configured
        target (what the dispatcher would record on its first look, without the round trip).
        """
        values = _effect_values(rows, lease, skipped)
        if not values:
            return []
        if self._pg:
            returned = self._sets(PgSets.insert_effects, pg_effect_params(values))
            return _outbox_rows(values, _first_ids([v["key"] for v in values], returned))
        returned = self._insert_rows("enqueue_keyed", values, tuple(values[0]))
        return _outbox_rows(values, _first_ids([v["key"] for v in values], returned))

    def write_decided(
        self,
        *,
        states: Sequence[tuple[str, str, dict[str, Any] | RawJSON]],
        timer_changes: Sequence[tuple[str, str, str, float | None, str]],
        timeline: Sequence[tuple[str, str, float, str, dict[str, Any] | RawJSON]],
        effects: Sequence[tuple[Mapping[str, Any], float, bool]],
        at: float,
        lease: tuple[str, float] | None = None,
        skipped: Sequence[bool] | None = None,
    ) -> list[OutboxRow | None]:
        """``save_tickets``, ``set_timers_many``, ``add_timeline_many`` and ``insert_effects``
        (whose result it returns), in that order. On PostgreSQL one statement: the first
        three as data-modifying ``WITH`` queries of the effects' INSERT (each a different
        table, or for the timers different rows, so their running together changes nothing),
        one round trip and one execution where there were four."""
        if not self._pg:
            self.save_tickets(states, at=at)
            self.set_timers_many(timer_changes, at=at)
            self.add_timeline_many(timeline)
            return self.insert_effects(effects, lease=lease, skipped=skipped)
        parts: list[tuple[str, tuple[Any, ...]]] = []
        if states:
            parts.append((PgSets.save_tickets, pg_ticket_params(states, at)))
        parts.extend(pg_timer_parts(timer_changes, at))
        if timeline:
            parts.append((PgSets.add_timeline, pg_timeline_params(timeline)))
        values = _effect_values(effects, lease, skipped)
        main, params = (
            (PgSets.insert_effects, pg_effect_params(values)) if values else (NOTHING, ())
        )
        if parts:
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(parts))
            main = f"WITH {ctes} {main}"
            params = (*(p for _, ps in parts for p in ps), *params)
        returned = self._sets(main, params)
        return _outbox_rows(values, _first_ids([v["key"] for v in values], returned))

    def has_open_effect(self, source: str, ticket_id: str, target: str) -> bool:
        """Whether the ticket has an open (pending or retrying) effect on ``target``."""
        values = {"b_source": source, "b_ticket": ticket_id, "b_target": target}
        fast, cursor = self._run("open_for_target", values)
        return bool(fast.rows(cursor))

    def set_timer(
        self, source: str, ticket_id: str, *, kind: str, due: float | None, rule: str, at: float
    ) -> None:
        """Arm (or move) the ticket's timer of ``kind``; cancel it when ``due`` is None."""
        self.set_timers(source, ticket_id, [(kind, due, rule)], at=at)

    def set_timers(
        self,
        source: str,
        ticket_id: str,
        changes: Sequence[tuple[str, float | None, str]],
        *,
        at: float,
    ) -> None:
        """Apply ``(kind, due or None, rule)`` changes to one ticket's timers."""
        self.set_timers_many([(source, ticket_id, k, d, r) for k, d, r in changes], at=at)

    def set_timers_many(
        self, changes: Sequence[tuple[str, str, str, float | None, str]], *, at: float
    ) -> None:
        """Apply ``(source, ticket_id, kind, due or None, rule)`` changes; for the same timer
        the last change wins."""
        if self._pg:
            for sql, params in pg_timer_parts(changes, at):
                self._sets(sql, params)
            return
        last = {(s, t, k): (d, r) for s, t, k, d, r in changes}
        armed = [
            {
                "source": s,
                "ticket_id": t,
                "kind": k,
                "due_at": due,
                "status": TIMER_PENDING,
                "rule": rule,
                "created_at": at,
                "updated_at": at,
            }
            for (s, t, k), (due, rule) in last.items()
            if due is not None
        ]
        cancelled = [
            {"b_source": s, "b_ticket": t, "b_kind": k, "b_at": at}
            for (s, t, k), (due, _) in last.items()
            if due is None
        ]
        if armed:  # one multi-row upsert: the keys are distinct (``last``)
            self._insert_rows("arm_timer", armed, tuple(armed[0]))
        if cancelled:
            self._run_many("cancel_timer", cancelled)

    def save_tickets(
        self, states: Sequence[tuple[str, str, dict[str, Any] | RawJSON]], *, at: float
    ) -> None:
        """Upsert ``(source, ticket_id, state)`` rows of distinct tickets in one statement (on
        PostgreSQL a ticket twice is an error)."""
        if states and self._pg:
            self._sets(PgSets.save_tickets, pg_ticket_params(states, at))
        elif states:
            rows = [
                {"source": s, "ticket_id": t, "state": st, "updated_at": at} for s, t, st in states
            ]
            self._insert_rows("save_ticket", rows, TICKET_KEYS)  # one multi-row upsert

    def mark_timers_fired(self, fired: Sequence[tuple[int, float]], *, at: float) -> None:
        """Mark ``(timer_id, lateness)`` pairs fired."""
        if fired:
            self._run_many(
                "mark_timer_fired", [{"b_id": i, "b_at": at, "b_late": late} for i, late in fired]
            )

    def enqueue_many(self, rows: Sequence[dict[str, Any]], *, at: float) -> int:
        """Insert effects in one statement (a key already present is left); the rows inserted,
        or the rows offered where the driver cannot count an executemany (psycopg: -1)."""
        if not rows:
            return 0
        values = _effect_values([(row, at, False) for row in rows], None, None)
        inserted = self._run_many("enqueue_quietly", values, tuple(values[0]))
        return inserted if inserted >= 0 else len(values)

    def finish_effect(
        self,
        row: OutboxRow,
        *,
        status: str,
        now: float,
        attempts: int,
        code: int | None,
        error: str | None,
        next_attempt_at: float | None = None,
        result: dict[str, Any] | None = None,
        follow_ups: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Record an attempt's outcome and enqueue its follow-ups; False (nothing written) if
        the lease was lost, i.e. the fencing token moved on."""
        values: dict[str, Any] = {
            "status": status,
            "now": now,
            "attempts": attempts,
            "code": code,
            "error": error,
            "next_attempt_at": next_attempt_at,
            "result": result,
        }
        return self.finish_effects([(row, values, follow_ups)])[0]

    def finish_effects(
        self, items: Sequence[tuple[OutboxRow, Mapping[str, Any], Sequence[dict[str, Any]]]]
    ) -> list[bool]:
        """``finish_effect`` for each ``(row, outcome, follow_ups)``, in order (one round trip
        on PostgreSQL for the outcomes); ``outcome`` holds ``finish_effect``'s keywords."""
        found = self._run_each(
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

    def due_timers(self, *, now: float, limit: int) -> list[DueTimer]:
        """Pending timers due at ``now``, earliest first, locked for this transaction.

        On PostgreSQL each timer is locked together with its ticket, skipping any that is
        locked: a webhook locks its ticket and then its timers, so taking a timer first and
        then waiting for its ticket would deadlock. A skipped timer fires on the next round.
        (Every timer has its ticket: both are written in one transaction, and tickets stay.)
        """
        query = sa.select(
            timers.c.id, timers.c.source, timers.c.ticket_id, timers.c.kind, timers.c.due_at
        )
        if self.conn.dialect.name == "postgresql":
            query = query.join(
                tickets,
                sa.and_(
                    tickets.c.source == timers.c.source,
                    tickets.c.ticket_id == timers.c.ticket_id,
                ),
            )
        query = (
            query.where(timers.c.status == TIMER_PENDING, timers.c.due_at <= now)
            .order_by(timers.c.due_at, timers.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [DueTimer(*row) for row in self.conn.execute(query).all()]

    def due_timers_with_states(
        self, *, now: float, limit: int
    ) -> tuple[list[DueTimer], dict[tuple[str, str], str]]:
        """``due_timers``, and in the same statement their tickets' states as the stored JSON
        text, by ``(source, ticket_id)`` (for pydantic to validate without a dict between).
        On PostgreSQL both rows are locked as in ``due_timers``; on SQLite a timer without a
        ticket comes without a state."""
        query = (
            timers_with_states(outer=not self._pg)
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

    def mark_timer_fired(self, timer_id: int, *, at: float, lateness: float) -> None:
        self.conn.execute(
            self._sql.mark_timer_fired, {"b_id": timer_id, "b_at": at, "b_late": lateness}
        )

    def save_policy(self, fingerprint: str, document: dict[str, Any], *, at: float) -> None:
        """Keep a policy version so tickets pinned to it keep its rules after a reload."""
        row = {"fingerprint": fingerprint, "document": document, "created_at": at}
        self.conn.execute(self._sql.save_policy, row)

    def load_policy(self, fingerprint: str) -> dict[str, Any] | None:
        row = self.conn.execute(self._sql.load_policy, {"b_fingerprint": fingerprint}).first()
        return dict(row.document) if row is not None else None
