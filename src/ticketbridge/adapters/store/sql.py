"""The durable store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Every method is synchronous and short; the app runs them in worker threads. On SQLite all
write transactions begin IMMEDIATE (one writer, no lock upgrades that deadlock) and the app
serialises them, so ``SQLITE_BUSY`` does not happen in one process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, NamedTuple

import pydantic_core
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

from ticketbridge.adapters.store.schema import (
    DEAD,
    NOT_CONFIGURED,
    OPEN_STATES,
    PENDING,
    SKIPPED,
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
from ticketbridge.rules.effects import DEAD_LETTER

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
PG_CONCURRENCY = 16
# Taken while migrating on PostgreSQL, so that two processes starting at once (or a
# ``ticketbridge migrate`` during a start) do not both create the tables.
PG_MIGRATION_LOCK = 0x7469636B  # "tick"


CHANNEL = "ticketbridge"


@dataclass(frozen=True)
class Announcement:
    """What a NOTIFY on CHANNEL says: the earliest timer armed (epoch seconds) and how many
    effects wait for a claim; None for "not said" (look anyway)."""

    timer: float | None = None
    effects: int | None = None

    def encode(self) -> str:
        if self.timer is None and self.effects is None:
            return ""
        return json.dumps({"timer": self.timer, "effects": self.effects})

    @classmethod
    def decode(cls, payload: str) -> Announcement:
        """Never fails: a payload it cannot read says nothing (so it wakes everything)."""
        try:
            found = json.loads(payload) if payload else {}
            timer, effects = found.get("timer"), found.get("effects")
            return cls(
                float(timer) if isinstance(timer, int | float) else None,
                int(effects) if isinstance(effects, int) else None,
            )
        except (ValueError, AttributeError):
            return cls()


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the transaction."""


class StoreBusy(StoreUnavailable):
    """A transaction asked not to wait (``Store.unit_of_work(nowait=True)``) found a lock
    held by another transaction: on SQLite the file's write lock at BEGIN, on PostgreSQL a
    row or key lock held longer than ``PG_NOWAIT_LOCK_MS``. Nothing it did is kept."""


# At most this many rows per multi-row INSERT on SQLite (``UnitOfWork._insert_rows``): its
# statement text is cached per row count (``SQLITE_CACHED_STATEMENTS``), and a row has at
# most 16 columns, far below SQLite's 32,766 parameters a statement.
SQLITE_ROWS_PER_INSERT = 64
# Prepared statements the sqlite3 module keeps per connection (128 by default): the
# multi-row INSERTs and ticket lookups take one per row count, 1 to SQLITE_ROWS_PER_INSERT.
SQLITE_CACHED_STATEMENTS = 512
# How long a SQLite BEGIN waits for another process's write lock (milliseconds).
SQLITE_BUSY_MS = 10_000
# A ``nowait`` transaction on PostgreSQL gives up (``StoreBusy``) after waiting this long for
# a lock (another replica's transaction on the same ticket normally commits within a few ms).
PG_NOWAIT_LOCK_MS = 200
# A PostgreSQL connection fails when the server has not acknowledged what was sent for this
# long (TCP_USER_TIMEOUT), rather than waiting on a dead peer indefinitely.
PG_TCP_USER_TIMEOUT_MS = 10_000
# SQLSTATE lock_not_available: a lock wait ran out (lock_timeout).
_LOCK_NOT_AVAILABLE = "55P03"


def normalise_url(url: str) -> str:
    """Pick our drivers: ``postgresql://`` means psycopg 3, ``sqlite://`` the stdlib module."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL without its password (``user:***@``, and ``?password=***`` as libpq also
    takes it), for logs."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"
    hidden = {k: "***" for k in parsed.query if k.lower() in ("password", "sslpassword")}
    text = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return text.replace("=%2A%2A%2A", "=***")


class DueTimer(NamedTuple):
    """A pending timer that is due (a tuple: a batch of them costs the collector nothing)."""

    id: int
    source: str
    ticket_id: str
    kind: str
    due_at: float


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    target: str
    kind: str
    source: str
    ticket_id: str
    payload: dict[str, Any]
    attempts: int
    lease_token: int
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class OutboxStats:
    """What ``/metrics`` shows of the outbox: open effects, the oldest one's creation time
    (None when there is none) and dead ones."""

    open: int
    oldest_open_created_at: float | None
    dead: int


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(files("ticketbridge.adapters.store").joinpath("migrations"))
    )
    config.attributes["connection"] = connection
    return config


@functools.cache  # built once: aliasing the outbox copies every column (most of a claim's cost)
def _blocked() -> sa.Exists:
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
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


class RawJSON(str):
    """JSON text already serialised (pydantic's ``model_dump_json``): a hot-path statement
    writes it to its JSON column as it is instead of encoding a dict again."""

    __slots__ = ()


_CALLER = object()  # in a _Fast plan: the caller supplies this parameter's value
# The columns the hot paths' INSERTs give (the rest take their defaults).
_INBOX_KEYS = ("source", "dedup_key", "ticket_id", "received_at", "outcome", "event")
_TICKET_KEYS = ("source", "ticket_id", "state", "updated_at")
_TIMELINE_KEYS = ("source", "ticket_id", "at", "kind", "detail")


class _Fast:
    """A hot-path statement compiled once for a dialect and run on the DBAPI cursor.

    The SQL, the parameters' order, the values built into the statement and the bind and
    result processors (JSON, floats) are SQLAlchemy's own for that statement and dialect:
    what reaches the driver is what ``Connection.execute`` would send. Only SQLAlchemy's
    per-call work is skipped (compiled-cache lookup, execution context, result wrapping),
    which on the webhook path costs several times the SQLite call itself.
    """

    __slots__ = (
        "_caller",
        "_names",
        "_positional",
        "_processed",
        "_results",
        "_rows_sql",
        "_template",
        "_width",
        "sql",
    )

    def __init__(self, stmt: Any, dialect: Dialect, keys: Sequence[str] | None = None) -> None:
        compiled: Any = stmt.compile(
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("expanding or literal-execute parameters cannot take the fast path")
        self.sql: str = compiled.string
        self._positional: bool = compiled.positional
        names = (
            compiled.positiontup
            if self._positional
            else list(compiled.construct_params(_check=False))
        )
        binds = {bind_name: bind for bind, bind_name in compiled.bind_names.items()}
        plan: list[tuple[str, Any, Any]] = []
        for name in names:
            bind = binds[name]
            literal = _CALLER if bind.required else bind.effective_value
            plan.append((name, compiled._bind_processors.get(name), literal))
        # ``params``' work laid out once: the values built into the statement in place, the
        # positions the caller fills (by name), the positions a processor converts.
        self._names = tuple(name for name, _, _ in plan)
        self._template = [None if literal is _CALLER else literal for _, _, literal in plan]
        self._caller = tuple(
            (i, name) for i, (name, _, literal) in enumerate(plan) if literal is _CALLER
        )
        self._processed = tuple(
            (i, process) for i, (_, process, _) in enumerate(plan) if process is not None
        )
        self._results: list[Any] = [
            column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
        ]
        self._rows_sql: dict[int, str] = {}
        self._width = -1  # parameters a VALUES row of ``rows_sql`` takes, once known

    def rows_sql(self, count: int) -> str:
        """This single-row ``INSERT ... VALUES (?, ...)`` (qmark style: SQLite) as one
        statement inserting ``count`` rows, whose parameters are ``rows_params``'."""
        sql = self._rows_sql.get(count)
        if sql is None:
            head, values, rest = self.sql.partition(" VALUES (")
            group, close, tail = rest.partition(")")
            if not values or not close or not self._positional or set(group) - set("?, "):
                raise ValueError(f"not a single-row INSERT with qmark parameters: {self.sql}")
            width = group.count("?")
            # What follows the row (an upsert's SET and WHERE) may hold parameters, once for
            # all rows: only values built into the statement, none the caller gives per row.
            if any(i >= width for i, _ in self._caller):
                raise ValueError(f"a per-row parameter after the VALUES row: {self.sql}")
            self._width = width
            rows = ", ".join([f"({group})"] * count)
            sql = self._rows_sql[count] = f"{head} VALUES {rows}{tail}"
        return sql

    def rows_params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The parameters of ``rows_sql(len(rows))``: each row's VALUES in turn, then those
        of the statement's tail (the same for every row)."""
        width = self._width
        if width < 0:
            self.rows_sql(1)
            width = self._width
        out: list[Any] = []
        params: Sequence[Any] = ()
        for row in rows:
            params = self.params(row)  # type: ignore[assignment]
            out.extend(params[:width])
        out.extend(params[width:])
        return out

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for one execution (a tuple, or a dict for pyformat)."""
        out = self._template.copy()
        for i, name in self._caller:
            out[i] = values[name]
        for i, process in self._processed:
            value = out[i]
            if type(value) is not RawJSON:
                out[i] = process(value)
        if self._positional:
            return tuple(out)
        return dict(zip(self._names, out, strict=True))

    def rows(self, cursor: Any) -> list[tuple[Any, ...]]:
        """Every row the last execution returned, through the result processors."""
        return self.rows_of(cursor.fetchall())

    def rows_of(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """``fetched`` (rows of this statement's columns) through the result processors."""
        if not any(self._results):
            return [tuple(row) for row in fetched]
        return [
            tuple(v if p is None else p(v) for v, p in zip(row, self._results, strict=True))
            for row in fetched
        ]


class _FastStatements:
    """The ``_Fast`` forms of the hot paths' statements for one dialect, compiled on first
    use: an INSERT compiles per set of columns given, as SQLAlchemy's would."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._sql = _statements(dialect.name)
        self._compiled: dict[tuple[str, tuple[str, ...] | None], _Fast] = {}

    def get(self, name: str, keys: Sequence[str] | None = None) -> _Fast:
        key = (name, tuple(keys) if keys is not None else None)
        fast = self._compiled.get(key)
        if fast is None:
            fast = self._compiled[key] = _Fast(getattr(self._sql, name), self._dialect, keys)
        return fast


_FAST: weakref.WeakKeyDictionary[Dialect, _FastStatements] = weakref.WeakKeyDictionary()


def _fast_statements(dialect: Dialect) -> _FastStatements:
    found = _FAST.get(dialect)
    if found is None:
        found = _FAST[dialect] = _FastStatements(dialect)
    return found


# The arrays of ``_PgSets.insert_effects``, in order (``next_attempt_at`` stands for the
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


class _PgSets:
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
    # doing so as the table grows (two replicas on a fresh database: ~1,400 scans of ~9,000
    # rows in 10 s); a lookup by key takes the primary key at any size.
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
    # As ``_Statements.arm_timer``: a timer already fired at this very due time stays fired.
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


def json_dumps(value: Any) -> str:
    """The JSON text the store writes for a JSON column's value (the engines'
    ``json_serializer``): compact UTF-8 by pydantic-core, about four times cheaper than
    ``json.dumps`` on an effect's payload. Like ``json.dumps`` it refuses an object of a type
    it does not know; unlike it, it writes a datetime as an ISO 8601 string."""
    return pydantic_core.to_json(value).decode()


def _json_text(value: Any) -> str:
    """What a JSON column's bind processor would send: ``RawJSON`` as it is, else encoded."""
    return value if type(value) is RawJSON else json_dumps(value)


def stored_dedup_key(ticket_id: str, dedup_key: str) -> str:
    """The inbox's key for a delivery: ``dedup_key`` behind its ticket's id (length-prefixed,
    so no two (ticket, key) pairs share one), so that a ticket's deliveries sit together in
    the unique index. As bare hashes, every webhook's key landed on a random page of that
    index: a group of 16 new tickets wrote 70 pages to the log at COMMIT, against 51 so
    (145 -> 125 µs a webhook, in process). One key now never dedups two tickets' events."""
    return f"{len(ticket_id)}:{ticket_id}:{dedup_key}"


@functools.cache
def _sqlite_load_tickets(count: int) -> str:
    """``count`` tickets' states by key (SQLite), each a lookup by primary key: as
    ``(source, ticket_id) IN (VALUES ...)`` SQLite scans the table instead."""
    keys = ", ".join(["(?, ?)"] * count)
    return (
        "SELECT t.source, t.ticket_id, t.state "  # noqa: S608 (placeholders only, no input)
        f"FROM (VALUES {keys}) AS k CROSS JOIN tickets AS t "
        "ON t.source = k.column1 AND t.ticket_id = k.column2"
    )


def _first_ids(keys: Sequence[Any], returned: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """For each of ``keys`` in order, the id ``returned`` for it as ``(id, *key)`` rows, or
    None where none was returned (a conflict) or an earlier equal key took it."""
    ids = {tuple(row[1:]) if len(row) > 2 else row[1]: int(row[0]) for row in returned}
    return [ids.pop(key, None) for key in keys]


# The main query of ``UnitOfWork.write_decided`` when there are no effects to insert.
_NOTHING = "SELECT NULL, NULL WHERE false"


def _pg_ticket_params(
    states: Sequence[tuple[str, str, dict[str, Any] | RawJSON]], at: float
) -> tuple[Any, ...]:
    return (
        at,
        [s for s, _, _ in states],
        [t for _, t, _ in states],
        [_json_text(st) for _, _, st in states],
    )


def _pg_timeline_params(
    entries: Sequence[tuple[str, str, float, str, dict[str, Any] | RawJSON]],
) -> tuple[Any, ...]:
    return (
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
        [e[3] for e in entries],
        [_json_text(e[4]) for e in entries],
    )


def _pg_timer_parts(
    changes: Sequence[tuple[str, str, str, float | None, str]], at: float
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (and their parameters) for ``set_timers_many``'s changes: for the
    same timer the last change wins."""
    last = {(s, t, k): (d, r) for s, t, k, d, r in changes}
    armed = [(*key, due, rule) for key, (due, rule) in last.items() if due is not None]
    cancelled = [key for key, (due, _) in last.items() if due is None]
    parts: list[tuple[str, tuple[Any, ...]]] = []
    if armed:
        columns = zip(*armed, strict=True)
        parts.append((_PgSets.arm_timers, (at, at, *(list(c) for c in columns))))
    if cancelled:
        columns = zip(*cancelled, strict=True)
        parts.append((_PgSets.cancel_timers, (at, *(list(c) for c in columns))))
    return parts


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


def _pg_effect_params(values: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        [_json_text(v[name]) if name == "payload" else v[name] for v in values]
        for name in _PG_EFFECT_COLUMNS
    )


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


class _Statements:
    """Every statement of the hot paths, built once per dialect: SQLAlchemy then reuses its
    compiled form instead of rebuilding (and re-keying) a statement per call."""

    def __init__(self, dialect: str) -> None:
        pg = dialect == "postgresql"
        insert: Any = postgresql.insert if pg else sqlite.insert
        b = sa.bindparam
        self.add_inbox = (
            insert(inbox)
            .on_conflict_do_nothing(index_elements=["source", "dedup_key"])
            .returning(inbox.c.id)
        )
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
        # The key beside the id: its multi-row form (SQLite, ``UnitOfWork._insert_rows``)
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
                # Not ``in_``: an expanding IN cannot take the fast path (``_Fast``).
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


def _timers_with_states(*, outer: bool) -> sa.Select[Any]:
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


class LeasePlan:
    """Which new effects may go out at once (leased to the caller): those whose ticket has no
    open effect on their target, neither in the store nor earlier among the new ones."""

    __slots__ = ("_open",)

    def __init__(self, open_targets: set[tuple[str, str, str]]) -> None:
        self._open = open_targets

    def take(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (an effect about to be inserted) may be leased; it is open after."""
        key = (row["source"], row["ticket_id"], row["target"])
        if key in self._open:
            return False
        self._open.add(key)
        return True


class UnitOfWork:
    """One transaction's worth of writes for one webhook or timer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self._sql = _statements(conn.dialect.name)
        self._fast = _fast_statements(conn.dialect)
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
    ) -> tuple[_Fast, Any]:
        """Execute the hot-path statement ``name`` (see ``_Fast``) with ``values``."""
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
        """Execute ``sql`` on the driver (one of ``_PgSets``' statements, or a multi-row form
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
            found = self._sets(_sqlite_load_tickets(len(chunk)), params)
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
        fast, cursor = self._run("add_inbox", row, _INBOX_KEYS)
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
                _PgSets.add_inbox_and_lock,
                (
                    [row["source"] for row in rows],
                    keys_stored,
                    [row["ticket_id"] for row in rows],
                    [row["at"] for row in rows],
                    [_json_text(row["event"]) for row in rows],
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
            _INBOX_KEYS,
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
                _PgSets.open_targets, ([s for s, _ in ordered], [t for _, t in ordered])
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
        self._run("save_ticket", row, _TICKET_KEYS)

    def add_timeline(
        self, source: str, ticket_id: str, *, at: float, kind: str, detail: dict[str, Any]
    ) -> None:
        self.add_timeline_many([(source, ticket_id, at, kind, detail)])

    def add_timeline_many(
        self, entries: Sequence[tuple[str, str, float, str, dict[str, Any] | RawJSON]]
    ) -> None:
        """Append ``(source, ticket_id, at, kind, detail)`` entries in one statement."""
        if entries and self._pg:
            self._sets(_PgSets.add_timeline, _pg_timeline_params(entries))
        elif entries:
            self._run_many(
                "add_timeline",
                [
                    {"source": s, "ticket_id": t, "at": at, "kind": k, "detail": d}
                    for s, t, at, k, d in entries
                ],
                _TIMELINE_KEYS,
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
            returned = self._sets(_PgSets.insert_effects, _pg_effect_params(values))
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
            parts.append((_PgSets.save_tickets, _pg_ticket_params(states, at)))
        parts.extend(_pg_timer_parts(timer_changes, at))
        if timeline:
            parts.append((_PgSets.add_timeline, _pg_timeline_params(timeline)))
        values = _effect_values(effects, lease, skipped)
        main, params = (
            (_PgSets.insert_effects, _pg_effect_params(values)) if values else (_NOTHING, ())
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
            for sql, params in _pg_timer_parts(changes, at):
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
            self._sets(_PgSets.save_tickets, _pg_ticket_params(states, at))
        elif states:
            rows = [
                {"source": s, "ticket_id": t, "state": st, "updated_at": at} for s, t, st in states
            ]
            self._insert_rows("save_ticket", rows, _TICKET_KEYS)  # one multi-row upsert

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
            _timers_with_states(outer=not self._pg)
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
            _timers_with_states(outer=True)
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


def _driver_execute(conn: Connection, sql: str) -> None:
    """``sql`` on ``conn``'s driver connection (SQLAlchemy's own execute costs more than a
    statement such as BEGIN); a driver error is raised as ``execute`` would raise it
    (``sa.exc.OperationalError``..., the connection invalidated if it is broken)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    try:
        dbapi.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        conn._handle_dbapi_exception(exc, sql, (), None, None)


class Store:
    """Schema management, units of work, outbox claims and read models."""

    def __init__(
        self, url: str, *, sqlite_synchronous: str = "FULL", stall_seconds: float = 15.0
    ) -> None:
        self.url = normalise_url(url)
        parsed = sa.make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # A SQLite file (not in memory): its connections may move between threads.
        self.is_sqlite_file = self.is_sqlite and parsed.database not in (None, "", ":memory:")
        # Store calls the app may run at once: one writer on SQLite; on PostgreSQL as many
        # as the pool holds (a few more connections are left for calls made outside).
        self.max_concurrency = 1 if self.is_sqlite else PG_CONCURRENCY
        options: dict[str, Any] = {"pool_pre_ping": False, "json_serializer": json_dumps}
        self._nowait: tuple[Engine, Engine] | None = None
        if not self.is_sqlite:
            options["pool_size"] = PG_CONCURRENCY
            options["max_overflow"] = 4
            # The most recently used connection first: a light load keeps reusing a few warm
            # connections (psycopg prepares a statement on a connection after its 5th run)
            # instead of rotating through all 16 cold ones.
            options["pool_use_lifo"] = True
            # Defaults a URL's own query (``?connect_timeout=3``) overrides: an unreachable
            # server fails a call in seconds instead of hanging it, and the connections
            # show up in pg_stat_activity under our name.
            # A replica that stalls inside a transaction (paused, swapped out, partitioned)
            # loses it after ``stall_seconds`` idle: the server rolls it back and frees its row
            # locks (the timers it was firing), so another replica takes over and the stalled
            # one's late COMMIT fails instead of writing.
            stall_ms = max(1000, int(stall_seconds * 1000))
            defaults = {
                "connect_timeout": 10,
                # A connection fails once what it sent stays unacknowledged this long (a dead
                # server or a partition), rather than waiting indefinitely.
                "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
                "application_name": "ticketbridge",
                "options": f"-c idle_in_transaction_session_timeout={stall_ms}",
            }
            options["connect_args"] = {k: v for k, v in defaults.items() if k not in parsed.query}
        else:
            options["connect_args"] = {"cached_statements": SQLITE_CACHED_STATEMENTS}
        self.engine: Engine = sa.create_engine(self.url, **options)
        # PostgreSQL: the server processes behind this store's connections, so that a
        # replica can tell its own NOTIFYs from the others'.
        self._backend_pids: set[int] = set()
        if not self.is_sqlite:
            pids = self._backend_pids

            @sa.event.listens_for(self.engine, "connect")
            def _on_pg_connect(dbapi_conn: Any, record: Any) -> None:
                record.info["backend_pid"] = pid = dbapi_conn.info.backend_pid
                pids.add(pid)

            @sa.event.listens_for(self.engine, "close")
            def _on_pg_close(_dbapi_conn: Any, record: Any) -> None:
                pids.discard(record.info.get("backend_pid"))

            self._configure_pg_nowait()
        if self.is_sqlite:
            mode = sqlite_synchronous.upper()
            if mode not in SQLITE_SYNCHRONOUS:
                raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNCHRONOUS}")
            self._configure_sqlite(mode)

    def _configure_pg_nowait(self) -> None:
        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("nowait"):
                # This transaction's lock waits end after PG_NOWAIT_LOCK_MS (``StoreBusy``).
                _driver_execute(conn, f"SET LOCAL lock_timeout = {PG_NOWAIT_LOCK_MS}")

    def _configure_sqlite(self, synchronous: str) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if not conn.get_execution_options().get("nowait"):
                _driver_execute(conn, "BEGIN IMMEDIATE")
                return
            # Take the write lock now or fail at once (``StoreBusy``), not after waiting.
            _driver_execute(conn, "PRAGMA busy_timeout=0")
            try:
                _driver_execute(conn, "BEGIN IMMEDIATE")
            except sa.exc.OperationalError as exc:
                if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                    raise StoreBusy("the database file is locked by another process") from exc
                raise
            finally:
                _driver_execute(conn, f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")

    def database_time(self) -> float:
        """The database server's clock, as epoch seconds (this host's clock on SQLite, whose
        database lives on this host)."""
        if self.is_sqlite:
            return time.time()
        with self.reading() as conn:
            value = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
        if value is None:  # pragma: no cover - the server always answers a row
            raise StoreUnavailable("the database did not tell its time")
        return float(value)

    def is_own_backend(self, pid: int) -> bool:
        """Whether the PostgreSQL server process ``pid`` serves one of this store's
        connections (a NOTIFY it sent came from this replica)."""
        return pid in self._backend_pids

    def listen_conninfo(self) -> str | None:
        """A libpq connection string for LISTEN (PostgreSQL only; None on SQLite)."""
        if self.is_sqlite:
            return None
        url = sa.make_url(self.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def supports_nowait(self) -> bool:
        """Whether ``unit_of_work(nowait=True)`` is bounded: a SQLite file or PostgreSQL."""
        return self.is_sqlite_file or not self.is_sqlite

    @property
    def _nowait_engine(self) -> Engine:
        """``engine`` with the option its BEGIN reads (see ``_configure_sqlite`` and
        ``_configure_pg_nowait``)."""
        if self._nowait is None or self._nowait[0] is not self.engine:
            self._nowait = (self.engine, self.engine.execution_options(nowait=True))
        return self._nowait[1]

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads, its transaction ended by COMMIT rather than the ROLLBACK
        that closing it would send. For a read both end the same, but psycopg drops every
        statement it prepared on a connection at each ROLLBACK (``DEALLOCATE ALL``): the
        scheduler's and dispatcher's periodic next-due reads stripped the warm connection of
        its prepared hot-path statements about once a second, which PostgreSQL then parsed
        and planned afresh."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self, *, nowait: bool = False) -> Iterator[Connection]:
        """A transaction, committed when the block ends normally. ``nowait``: it does not wait
        on another transaction's locks (on SQLite the file's write lock at BEGIN; on
        PostgreSQL any lock for more than ``PG_NOWAIT_LOCK_MS``) but raises ``StoreBusy``,
        having changed nothing."""
        engine = self._nowait_engine if nowait else self.engine
        try:
            with engine.begin() as conn:
                yield conn
        except StoreBusy:
            raise
        except sa.exc.OperationalError as exc:
            if nowait and getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise StoreBusy("a lock is held by another transaction") from exc
            raise StoreUnavailable(type(exc.orig).__name__ if exc.orig else "database") from exc

    @contextlib.contextmanager
    def unit_of_work(self, *, nowait: bool = False) -> Iterator[UnitOfWork]:
        """A transaction: committed when the block ends normally, rolled back otherwise
        (``nowait``: see ``transaction``)."""
        with self.transaction(nowait=nowait) as conn:
            uow = UnitOfWork(conn)
            try:
                yield uow
            finally:
                uow.close()

    # --- schema ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises it
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
            command.upgrade(_alembic_config(conn), "head")

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(current, head) revision ids; equal when the schema is current."""
        with self.reading() as conn:
            config = _alembic_config(conn)
            head = ScriptDirectory.from_config(config).get_current_head()
            current = MigrationContext.configure(conn).get_current_revision()
        return current, head

    def ping(self) -> None:
        with self.reading() as conn:
            conn.execute(sa.text("SELECT 1"))

    # --- outbox ---------------------------------------------------------------------------
    def claim_due(
        self, *, now: float, owner: str, limit: int, lease_seconds: float
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due effects to ``owner``; each claim bumps its fencing token."""
        with self.transaction() as conn:
            due = (
                sa.select(outbox.c.id)
                .where(
                    outbox.c.status.in_(OPEN_STATES),
                    outbox.c.next_attempt_at <= now,
                    sa.or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
                    ~_blocked(),
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

    def renew_lease(self, row: OutboxRow, *, owner: str, expires_at: float) -> bool:
        """Extend ``owner``'s lease on the open effect ``row`` to ``expires_at``; False (nothing
        written) if its fencing token moved on: another claim took it."""
        with self.transaction() as conn:
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

    def finish(self, row: OutboxRow, **outcome: Any) -> bool:
        """``UnitOfWork.finish_effect`` in a transaction of its own."""
        with self.unit_of_work() as uow:
            return uow.finish_effect(row, **outcome)

    def effect_status(self, key: str) -> str | None:
        """The status of the effect with ``key`` (None if there is none)."""
        with self.reading() as conn:
            value = conn.execute(sa.select(outbox.c.status).where(outbox.c.key == key)).scalar()
        return str(value) if value is not None else None

    def effect_delivery(self, key: str) -> tuple[str, bool] | None:
        """The status of the effect with ``key`` and whether a delivery of it may have
        reached its target: an attempt was counted (a timeout or a 5xx may still have
        landed), or it was leased more than once (a process killed mid-delivery counts no
        attempt; its lease is handed on, to the next claim). None if there is no such effect."""
        with self.reading() as conn:
            row = conn.execute(
                sa.select(outbox.c.status, outbox.c.attempts, outbox.c.lease_token).where(
                    outbox.c.key == key
                )
            ).one_or_none()
        if row is None:
            return None
        status, attempts, leases = row
        return str(status), attempts > 0 or leases > 1

    def ticket_state(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        """The stored state of one ticket (None if ticketbridge never saw it)."""
        with self.unit_of_work() as uow:
            return uow.load_ticket(source, ticket_id)

    def effect_results(self, keys: Sequence[str]) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """``key -> (status, result)`` for the effects with these keys (absent: none)."""
        if not keys:
            return {}
        with self.reading() as conn:
            rows = conn.execute(
                sa.select(outbox.c.key, outbox.c.status, outbox.c.result).where(
                    outbox.c.key.in_(list(keys))
                )
            )
            return {r.key: (str(r.status), r.result) for r in rows}

    def next_timer_due(self) -> float | None:
        """When the earliest pending timer comes due (None if there is none)."""
        with self.reading() as conn:
            value = conn.execute(
                sa.select(sa.func.min(timers.c.due_at)).where(timers.c.status == TIMER_PENDING)
            ).scalar()
        return float(value) if value is not None else None

    def next_due_at(self, *, now: float) -> float | None:
        """When an open effect can next be claimed: its due time, or its lease's end while
        one is held. Effects waiting behind an earlier one of their ticket don't count: they
        become claimable when that one finishes, which wakes the dispatcher anyway."""
        when = sa.case(
            (outbox.c.lease_expires_at > now, outbox.c.lease_expires_at),
            else_=outbox.c.next_attempt_at,
        )
        with self.reading() as conn:
            value = conn.execute(
                sa.select(sa.func.min(when)).where(outbox.c.status.in_(OPEN_STATES), ~_blocked())
            ).scalar()
        return float(value) if value is not None else None

    def release_leases(self, owner: str | None = None) -> int:
        """Drop leases (all, or one owner's) so open effects are claimable at once."""
        with self.transaction() as conn:
            stmt = sa.update(outbox).where(outbox.c.lease_owner.is_not(None))
            if owner is not None:
                stmt = stmt.where(outbox.c.lease_owner == owner)
            result = conn.execute(stmt.values(lease_owner=None, lease_expires_at=None))
        return result.rowcount

    # --- read models ----------------------------------------------------------------------
    def ticket_view(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        """The ticket's state, timeline and effects, or None if ticketbridge never saw it."""
        with self.reading() as conn:
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
            effects = conn.execute(
                sa.select(outbox)
                .where(outbox.c.source == source, outbox.c.ticket_id == ticket_id)
                .order_by(outbox.c.id)
            ).all()
            armed = conn.execute(
                sa.select(timers)
                .where(timers.c.source == source, timers.c.ticket_id == ticket_id)
                .order_by(timers.c.due_at)
            ).all()
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
            (e.created_at, 3, "decided", {"effect": e.key, "target": e.target, "reason": e.reason})
            for e in effects
        )
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        return {
            "state": state,
            "updated_at": row.updated_at,
            "timeline": [{"at": at, "kind": kind, "detail": d} for at, _, kind, d in entries],
            "effects": [dict(e._mapping) for e in effects],
            "timers": [dict(t._mapping) for t in armed],
        }

    def count(self, table: str) -> int:
        """Rows in one of our tables (tests and operations)."""
        target = {
            "inbox": inbox,
            "tickets": tickets,
            "timeline": timeline,
            "outbox": outbox,
            "timers": timers,
        }[table]
        with self.reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(target)).scalar_one())

    def outbox_stats(self) -> OutboxStats:
        """Open and dead effects in one grouped query on the status index (for metrics)."""
        with self.reading() as conn:
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
