"""PostgreSQL: the webhook path's writes as hand-written set-wise statements."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ticketbridge.adapters.store.compiled import Driver, driver_execute
from ticketbridge.adapters.store.rows import (
    Announcement,
    TicketWrite,
    TimelineEntry,
    TimerUpdate,
    first_ids,
    json_text,
)
from ticketbridge.adapters.store.schema import (
    OPEN_STATES,
    TIMER_CANCELLED,
    TIMER_FIRED,
    TIMER_PENDING,
)

PG_CONCURRENCY = 16
# Taken while migrating on PostgreSQL, so that two processes starting at once (or a
# ``ticketbridge migrate`` during a start) do not both create the tables.
PG_MIGRATION_LOCK = 0x7469636B  # "tick"

# A ``nowait`` transaction on PostgreSQL gives up (``StoreBusy``) after waiting this long for
# a lock (another replica's transaction on the same ticket normally commits within a few ms).
PG_NOWAIT_LOCK_MS = 200
# A PostgreSQL connection fails when the server has not acknowledged what was sent for this
# long (TCP_USER_TIMEOUT), rather than waiting on a dead peer indefinitely.
PG_TCP_USER_TIMEOUT_MS = 10_000
# SQLSTATE lock_not_available: a lock wait ran out (lock_timeout).
LOCK_NOT_AVAILABLE = "55P03"


# The arrays of ``PgSets.insert_effects``, in order (``next_attempt_at`` stands for the
# three times, equal at insertion).
_PG_EFFECT_COLUMNS = (
    "key",
    "target",
    "kind",
    "source",
    "ticket_id",
    "payload",
    "reason",
    "status",
    "next_attempt_at",
    "lease_owner",
    "lease_expires_at",
    "lease_token",
    "last_error",
)


class PgSets:
    """The webhook path's writes on PostgreSQL as one statement per set of rows: the rows go
    as arrays (``unnest``), so the server runs one statement where ``executemany`` ran one per
    row (less work on both sides of the connection). ``WITH ORDINALITY ... ORDER BY`` keeps
    the rows' order, hence their ids' order; ``ON CONFLICT DO NOTHING`` also skips a row
    repeating an earlier one of the same set, as one execution after another would. Arrays go
    in binary (``%b``): psycopg's text form escapes each element with a regular expression."""

    add_inbox = (
        "INSERT INTO inbox (source, dedup_key, ticket_id, received_at, outcome, event) "
        "SELECT s, k, t, r, 'accepted', e::json "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[]) "
        "WITH ORDINALITY AS u(s, k, t, r, e, n) ORDER BY n "
        "ON CONFLICT (source, dedup_key) DO NOTHING RETURNING id, source, dedup_key"
    )
    # Locked one by one in the order of the keys given, which the caller sorts (Python's
    # order of strings, code points): every transaction takes its tickets' locks in one order.
    # Each key is looked up on its own (LATERAL): as ``(source, ticket_id) IN (SELECT * FROM
    # unnest(...))`` the plan a connection caches for the statement while the table is young
    # (never analyzed: a fresh database) hashes the keys and reads the whole table, and keeps
    # doing so as the table grows; a lookup by key takes the primary key at any size.
    lock_tickets = (
        "SELECT k.source, k.ticket_id, k.state "
        "FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS u(s, t, n) CROSS JOIN LATERAL "
        "(SELECT source, ticket_id, state FROM tickets WHERE source = u.s AND ticket_id = u.t "
        "FOR UPDATE) AS k ORDER BY u.n"
    )
    # The two above as one statement: the inbox rows inserted (part 0: id, source, dedup_key)
    # and the tickets locked (part 1: source, ticket_id, state), one round trip.
    add_inbox_and_lock = (
        f"WITH i AS ({add_inbox}) "  # noqa: S608 (the two statements above, no input)
        "SELECT 0, id, source, dedup_key, NULL::json FROM i UNION ALL "
        f"SELECT 1, NULL, source, ticket_id, state FROM ({lock_tickets}) AS l"
    )
    # (The f-strings below put this module's state constants in the text, no input.)
    open_targets = (
        "SELECT DISTINCT source, ticket_id, target FROM outbox "  # noqa: S608
        "WHERE (source, ticket_id) IN (SELECT * FROM unnest(%b::text[], %b::text[])) "
        f"AND status IN ({', '.join(repr(state) for state in OPEN_STATES)})"
    )
    save_tickets = (
        "INSERT INTO tickets (source, ticket_id, state, updated_at) "
        "SELECT s, t, st::json, %s FROM unnest(%b::text[], %b::text[], %b::text[]) "
        "AS u(s, t, st) "
        "ON CONFLICT (source, ticket_id) "
        "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
    )
    add_timeline = (
        "INSERT INTO timeline (source, ticket_id, at, kind, detail) "
        "SELECT s, t, a, k, d::json "
        "FROM unnest(%b::text[], %b::text[], %b::float8[], %b::text[], %b::text[]) "
        "WITH ORDINALITY AS u(s, t, a, k, d, n) ORDER BY n"
    )
    # As ``Statements.arm_timer``: a timer already fired at this very due time stays fired.
    arm_timers = (
        "INSERT INTO timers (source, ticket_id, kind, due_at, status, rule, created_at, "  # noqa: S608
        f"updated_at) SELECT s, t, k, d, '{TIMER_PENDING}', r, %s, %s "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[]) "
        "AS u(s, t, k, d, r) "
        "ON CONFLICT (source, ticket_id, kind) DO UPDATE SET due_at = excluded.due_at, "
        f"status = '{TIMER_PENDING}', rule = excluded.rule, updated_at = excluded.updated_at, "
        "fired_at = NULL, lateness = NULL "
        f"WHERE NOT (timers.status = '{TIMER_FIRED}' AND timers.due_at = excluded.due_at)"
    )
    cancel_timers = (
        f"UPDATE timers SET status = '{TIMER_CANCELLED}', updated_at = %s "  # noqa: S608
        "FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(s, t, k) "
        "WHERE timers.source = u.s AND timers.ticket_id = u.t AND timers.kind = u.k "
        f"AND timers.status = '{TIMER_PENDING}'"
    )
    insert_effects = (
        "INSERT INTO outbox (key, target, kind, source, ticket_id, payload, reason, status, "
        "attempts, next_attempt_at, created_at, updated_at, lease_owner, lease_expires_at, "
        "lease_token, last_error) "
        "SELECT ky, tg, kd, s, t, p::json, r, st, 0, a, a, a, lo, le, lt, er "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::text[], %b::text[], %b::float8[], %b::text[], %b::float8[], %b::int[], "
        "%b::text[]) WITH ORDINALITY AS u(ky, tg, kd, s, t, p, r, st, a, lo, le, lt, er, n) "
        "ORDER BY n ON CONFLICT (key) DO NOTHING RETURNING id, key"
    )


# The main query of ``UnitOfWork.write_decided`` when there are no effects to insert.
_NOTHING = "SELECT NULL, NULL WHERE false"


def _ticket_params(states: Sequence[TicketWrite], at: float) -> tuple[Any, ...]:
    return (
        at,
        [s for s, _, _ in states],
        [t for _, t, _ in states],
        [json_text(st) for _, _, st in states],
    )


def _timeline_params(entries: Sequence[TimelineEntry]) -> tuple[Any, ...]:
    return (
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
        [e[3] for e in entries],
        [json_text(e[4]) for e in entries],
    )


def _timer_parts(changes: Sequence[TimerUpdate], at: float) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (and their parameters) for ``set_timers_many``'s changes: for the
    same timer the last change wins."""
    last = {(s, t, k): (d, r) for s, t, k, d, r in changes}
    armed = [(*key, due, rule) for key, (due, rule) in last.items() if due is not None]
    cancelled = [key for key, (due, _) in last.items() if due is None]
    parts: list[tuple[str, tuple[Any, ...]]] = []
    if armed:
        columns = zip(*armed, strict=True)
        parts.append((PgSets.arm_timers, (at, at, *(list(c) for c in columns))))
    if cancelled:
        columns = zip(*cancelled, strict=True)
        parts.append((PgSets.cancel_timers, (at, *(list(c) for c in columns))))
    return parts


def _effect_params(values: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        [json_text(v[name]) if name == "payload" else v[name] for v in values]
        for name in _PG_EFFECT_COLUMNS
    )


class PostgresWrites:
    """How a unit of work's set-wise writes run on PostgreSQL: each set of rows as one
    statement of ``PgSets`` (one round trip), a group's decided writes as one statement."""

    # Due timers are locked with their ticket (an inner join, ``FOR UPDATE SKIP LOCKED``): a
    # webhook locks its ticket and then its timers, so taking a timer first and then waiting
    # for its ticket would deadlock. A skipped timer fires on the next round.
    timers_need_ticket = True

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def add_inbox_and_lock(
        self, rows: Sequence[Mapping[str, Any]], stored_keys: Sequence[str]
    ) -> tuple[list[int | None], dict[tuple[str, str], Any]]:
        """See ``UnitOfWork.add_inbox_and_lock``: one statement, the tickets of all the rows
        locked one by one in key order."""
        keys = sorted({(row["source"], row["ticket_id"]) for row in rows})
        returned = self._driver.sets(
            PgSets.add_inbox_and_lock,
            (
                [row["source"] for row in rows],
                stored_keys,
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
        ids = first_ids(
            [(row["source"], key) for row, key in zip(rows, stored_keys, strict=True)], inserted
        )
        return ids, states

    def open_targets(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """See ``UnitOfWork.open_targets``: one statement."""
        found = self._driver.sets(PgSets.open_targets, ([s for s, _ in keys], [t for _, t in keys]))
        return {(source, ticket_id, target) for source, ticket_id, target in found}

    def save_tickets(self, states: Sequence[TicketWrite], at: float) -> None:
        """Upsert the tickets' states in one statement."""
        self._driver.sets(PgSets.save_tickets, _ticket_params(states, at))

    def set_timers(self, changes: Sequence[TimerUpdate], at: float) -> None:
        """Arm and cancel timers; for the same timer the last change wins."""
        for sql, params in _timer_parts(changes, at):
            self._driver.sets(sql, params)

    def add_timeline(self, entries: Sequence[TimelineEntry]) -> None:
        """Append timeline entries in one statement."""
        self._driver.sets(PgSets.add_timeline, _timeline_params(entries))

    def insert_effects(self, values: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert outbox rows in one statement; ``(id, key)`` of those inserted."""
        return self._driver.sets(PgSets.insert_effects, _effect_params(values))

    def write_decided(
        self,
        states: Sequence[TicketWrite],
        timer_changes: Sequence[TimerUpdate],
        timeline: Sequence[TimelineEntry],
        values: Sequence[Mapping[str, Any]],
        at: float,
    ) -> list[tuple[Any, ...]]:
        """See ``UnitOfWork.write_decided``: one statement, the tickets, timers and timeline
        as data-modifying ``WITH`` queries of the effects' INSERT (each a different table, or
        for the timers different rows, so their running together changes nothing)."""
        parts: list[tuple[str, tuple[Any, ...]]] = []
        if states:
            parts.append((PgSets.save_tickets, _ticket_params(states, at)))
        parts.extend(_timer_parts(timer_changes, at))
        if timeline:
            parts.append((PgSets.add_timeline, _timeline_params(timeline)))
        main, params = (PgSets.insert_effects, _effect_params(values)) if values else (_NOTHING, ())
        if parts:
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(parts))
            main = f"WITH {ctes} {main}"
            params = (*(p for _, ps in parts for p in ps), *params)
        return self._driver.sets(main, params)

    def run_many(self, name: str, rows: Sequence[Mapping[str, Any]], keys: Any = None) -> int:
        """Execute ``name`` once per row (pipelined); the rows it changed (-1: unknown)."""
        if len(rows) == 1:  # a pipeline for one row costs more than it saves
            return int(self._driver.run(name, rows[0], keys)[1].rowcount)
        return self._driver.run_many(name, rows, keys)

    def run_each(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[list[tuple[Any, ...]]]:
        """Execute ``name`` once per row, pipelined (one round trip); what each returned."""
        if len(rows) == 1:  # a pipeline for one row costs more than it saves
            return [self._driver.fetch(name, rows[0])]
        return self._driver.run_pipelined(name, rows) if rows else []

    def announce(self, timer: float | None, effects: int | None) -> None:
        """A NOTIFY at commit: every listening replica learns there is new work."""
        self._driver.run("announce", {"payload": Announcement(timer, effects).encode()})


def engine_options(url: sa.URL, *, stall_seconds: float) -> dict[str, Any]:
    """``create_engine`` options for a PostgreSQL URL: a pool of ``PG_CONCURRENCY``, and
    connection defaults the URL's own query (``?connect_timeout=3``) overrides: an
    unreachable server fails a call in seconds instead of hanging it, and the connections
    show up in pg_stat_activity under our name. A replica that stalls inside a transaction
    (paused, swapped out, partitioned) loses it after ``stall_seconds`` idle: the server
    rolls it back and frees its row locks, so another replica takes over and the stalled
    one's late COMMIT fails instead of writing."""
    stall_ms = max(1000, int(stall_seconds * 1000))
    defaults = {
        "connect_timeout": 10,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        "application_name": "ticketbridge",
        "options": f"-c idle_in_transaction_session_timeout={stall_ms}",
    }
    return {
        "pool_size": PG_CONCURRENCY,
        "max_overflow": 4,
        # The most recently used connection first: a light load keeps reusing a few warm
        # connections (psycopg prepares a statement on a connection after its 5th run).
        "pool_use_lifo": True,
        "connect_args": {k: v for k, v in defaults.items() if k not in url.query},
    }


def configure(engine: Engine, backend_pids: set[int]) -> None:
    """Keep ``backend_pids`` the server processes behind the engine's connections (a replica
    tells its own NOTIFYs from the others'); a ``nowait`` transaction's lock waits end after
    ``PG_NOWAIT_LOCK_MS`` (``StoreBusy``)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        record.info["backend_pid"] = pid = dbapi_conn.info.backend_pid
        backend_pids.add(pid)

    @sa.event.listens_for(engine, "close")
    def _on_close(_dbapi_conn: Any, record: Any) -> None:
        backend_pids.discard(record.info.get("backend_pid"))

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("nowait"):
            driver_execute(conn, f"SET LOCAL lock_timeout = {PG_NOWAIT_LOCK_MS}")
