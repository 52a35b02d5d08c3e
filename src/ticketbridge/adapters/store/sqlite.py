"""SQLite: connection settings, BEGIN IMMEDIATE, and the multi-row statements' text."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ticketbridge.adapters.store.compiled import Driver, driver_execute
from ticketbridge.adapters.store.errors import StoreBusy
from ticketbridge.adapters.store.rows import TicketWrite, TimelineEntry, TimerUpdate, first_ids
from ticketbridge.adapters.store.schema import TIMER_PENDING
from ticketbridge.adapters.store.statements import INBOX_KEYS, TICKET_KEYS, TIMELINE_KEYS

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# At most this many rows per multi-row INSERT on SQLite (``SqliteWrites._insert_rows``): its
# statement text is cached per row count (``SQLITE_CACHED_STATEMENTS``), and a row has at
# most 16 columns, far below SQLite's 32,766 parameters a statement.
SQLITE_ROWS_PER_INSERT = 64
# Prepared statements the sqlite3 module keeps per connection (128 by default): the
# multi-row INSERTs and ticket lookups take one per row count, 1 to SQLITE_ROWS_PER_INSERT.
SQLITE_CACHED_STATEMENTS = 512
# How long a SQLite BEGIN waits for another process's write lock (milliseconds).
SQLITE_BUSY_MS = 10_000


@functools.cache
def sqlite_load_tickets(count: int) -> str:
    """``count`` tickets' states by key (SQLite), each a lookup by primary key: as
    ``(source, ticket_id) IN (VALUES ...)`` SQLite scans the table instead."""
    keys = ", ".join(["(?, ?)"] * count)
    return (
        "SELECT t.source, t.ticket_id, t.state "  # noqa: S608 (placeholders only, no input)
        f"FROM (VALUES {keys}) AS k CROSS JOIN tickets AS t "
        "ON t.source = k.column1 AND t.ticket_id = k.column2"
    )


class SqliteWrites:
    """How a unit of work's set-wise writes run on SQLite: in process, so a statement per row
    costs no round trip; rows of one kind still go as one multi-row INSERT (the per-statement
    overhead paid once), up to ``SQLITE_ROWS_PER_INSERT`` rows a statement."""

    # Due timers come with their ticket by an outer join: a timer without its ticket
    # (possible on SQLite only in tests) comes without a state.
    timers_need_ticket = False

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def _insert_rows(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` with the single-row INSERT ``name`` made multi-row; the rows its
        RETURNING gave, in no promised order."""
        fast = self._driver.compiled(name, keys)
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
            sql = fast.rows_sql(len(chunk))
            found.extend(fast.rows_of(self._driver.sets(sql, fast.rows_params(chunk))))
        return found

    def _load_tickets(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The stored states of the tickets ``keys`` that exist, each looked up by primary
        key, ``SQLITE_ROWS_PER_INSERT`` keys a statement."""
        fast = self._driver.compiled("load_ticket")  # its ``state`` column's result processor
        states: dict[tuple[str, str], Any] = {}
        for start in range(0, len(keys), SQLITE_ROWS_PER_INSERT):
            chunk = keys[start : start + SQLITE_ROWS_PER_INSERT]
            params = [value for key in chunk for value in key]
            found = self._driver.sets(sqlite_load_tickets(len(chunk)), params)
            for (source, ticket_id, _), (state,) in zip(
                found, fast.rows_of([row[2:] for row in found]), strict=True
            ):
                states[(source, ticket_id)] = dict(state)
        return states

    def add_inbox_and_lock(
        self, rows: Sequence[Mapping[str, Any]], stored_keys: Sequence[str]
    ) -> tuple[list[int | None], dict[tuple[str, str], Any]]:
        """See ``UnitOfWork.add_inbox_and_lock``: one multi-row INSERT (a key twice in
        ``rows``: the later one finds the conflict), then the new rows' tickets, read (one
        writer: nothing to lock)."""
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
                for row, key in zip(rows, stored_keys, strict=True)
            ],
            INBOX_KEYS,
        )
        ids = first_ids(
            [(row["source"], key) for row, key in zip(rows, stored_keys, strict=True)], found
        )
        fresh = sorted({(r["source"], r["ticket_id"]) for r, i in zip(rows, ids, strict=True) if i})
        return ids, self._load_tickets(fresh)

    def open_targets(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """See ``UnitOfWork.open_targets``: one lookup per ticket."""
        found = self.run_each("open_targets", [{"b_source": s, "b_ticket": t} for s, t in keys])
        return {
            (source, ticket_id, target)
            for (source, ticket_id), rows in zip(keys, found, strict=True)
            for (target,) in rows
        }

    def save_tickets(self, states: Sequence[TicketWrite], at: float) -> None:
        """Upsert the tickets' states in one multi-row statement."""
        rows = [{"source": s, "ticket_id": t, "state": st, "updated_at": at} for s, t, st in states]
        self._insert_rows("save_ticket", rows, TICKET_KEYS)

    def set_timers(self, changes: Sequence[TimerUpdate], at: float) -> None:
        """Arm and cancel timers; for the same timer the last change wins."""
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
            self._driver.run_many("cancel_timer", cancelled)

    def add_timeline(self, entries: Sequence[TimelineEntry]) -> None:
        """Append timeline entries (one ``executemany``)."""
        self._driver.run_many(
            "add_timeline",
            [
                {"source": s, "ticket_id": t, "at": at, "kind": k, "detail": d}
                for s, t, at, k, d in entries
            ],
            TIMELINE_KEYS,
        )

    def insert_effects(self, values: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert outbox rows (one multi-row INSERT); ``(id, key)`` of those inserted."""
        return self._insert_rows("enqueue_keyed", values, tuple(values[0]))

    def write_decided(
        self,
        states: Sequence[TicketWrite],
        timer_changes: Sequence[TimerUpdate],
        timeline: Sequence[TimelineEntry],
        values: Sequence[Mapping[str, Any]],
        at: float,
    ) -> list[tuple[Any, ...]]:
        """See ``UnitOfWork.write_decided``: its four writes in turn."""
        if states:
            self.save_tickets(states, at)
        if timer_changes:
            self.set_timers(timer_changes, at)
        if timeline:
            self.add_timeline(timeline)
        return self.insert_effects(values) if values else []

    def run_many(self, name: str, rows: Sequence[Mapping[str, Any]], keys: Any = None) -> int:
        """Execute ``name`` once per row; the rows it changed."""
        return self._driver.run_many(name, rows, keys)

    def run_each(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[list[tuple[Any, ...]]]:
        """Execute ``name`` once per row; what each execution returned, in order."""
        return [self._driver.fetch(name, row) for row in rows]

    def announce(self, timer: float | None, effects: int | None) -> None:
        """Nothing: one process serves a SQLite file, and it wakes its own workers."""


def engine_options() -> dict[str, Any]:
    """``create_engine`` options for a SQLite URL."""
    return {"connect_args": {"cached_statements": SQLITE_CACHED_STATEMENTS}}


def configure(engine: Engine, synchronous: str) -> None:
    """Each connection in WAL mode with ``synchronous`` durability; every transaction begins
    IMMEDIATE (the write lock taken at BEGIN: one writer, no lock upgrade that deadlocks). A
    ``nowait`` one that finds the file locked raises ``StoreBusy`` at once."""
    mode = synchronous.upper()
    if mode not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNCHRONOUS}")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={mode}")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get("nowait"):
            driver_execute(conn, "BEGIN IMMEDIATE")
            return
        # Take the write lock now or fail at once (``StoreBusy``), not after waiting.
        driver_execute(conn, "PRAGMA busy_timeout=0")
        try:
            driver_execute(conn, "BEGIN IMMEDIATE")
        except sa.exc.OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise StoreBusy("the database file is locked by another process") from exc
            raise
        finally:
            driver_execute(conn, f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
