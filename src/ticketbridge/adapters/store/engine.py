"""The store: engines, connection settings, transactions, schema migrations, database time.

Every method is synchronous and short; the app runs them in worker threads. On SQLite all
write transactions begin IMMEDIATE (one writer, no lock upgrades that deadlock) and the app
serialises them, so ``SQLITE_BUSY`` does not happen in one process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from ticketbridge.adapters.store import outbox, postgres, queries, sqlite
from ticketbridge.adapters.store.compiled import Driver
from ticketbridge.adapters.store.errors import StoreBusy, StoreError, StoreUnavailable
from ticketbridge.adapters.store.rows import OutboxRow, OutboxStats, json_dumps
from ticketbridge.adapters.store.unit_of_work import DialectWrites, UnitOfWork
from ticketbridge.adapters.urls import normalise_url


def _translated(exc: sa.exc.SQLAlchemyError, *, nowait: bool = False) -> StoreError:
    """The store's error for a SQLAlchemy one: the database gone, a connection broken, the
    pool exhausted or a lock wait ended are ``StoreUnavailable`` (``StoreBusy`` for a lock a
    ``nowait`` transaction would not wait on); anything else a ``StoreError``."""
    orig = getattr(exc, "orig", None)
    if nowait and getattr(orig, "sqlstate", None) == postgres.LOCK_NOT_AVAILABLE:
        return StoreBusy("a lock is held by another transaction")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return StoreUnavailable(type(orig).__name__ if orig is not None else "database")
    return StoreError(f"{type(exc).__name__}: {orig if orig is not None else exc}")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(files("ticketbridge.adapters.store").joinpath("migrations"))
    )
    config.attributes["connection"] = connection
    return config


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
        self.max_concurrency = 1 if self.is_sqlite else postgres.PG_CONCURRENCY
        options: dict[str, Any] = {"pool_pre_ping": False, "json_serializer": json_dumps}
        if self.is_sqlite:
            options.update(sqlite.engine_options())
        else:
            options.update(postgres.engine_options(parsed, stall_seconds=stall_seconds))
        self.engine: Engine = sa.create_engine(self.url, **options)
        self._nowait: tuple[Engine, Engine] | None = None
        # PostgreSQL: the server processes behind this store's connections.
        self._backend_pids: set[int] = set()
        self._writes: Callable[[Driver], DialectWrites]
        if self.is_sqlite:
            sqlite.configure(self.engine, sqlite_synchronous)
            self._writes = sqlite.SqliteWrites
        else:
            postgres.configure(self.engine, self._backend_pids)
            self._writes = postgres.PostgresWrites

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
        """``engine`` with the option its BEGIN reads (see ``sqlite.configure`` and
        ``postgres.configure``)."""
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
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise _translated(exc) from exc

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
        except sa.exc.SQLAlchemyError as exc:
            raise _translated(exc, nowait=nowait) from exc

    @contextlib.contextmanager
    def unit_of_work(self, *, nowait: bool = False) -> Iterator[UnitOfWork]:
        """A transaction: committed when the block ends normally, rolled back otherwise
        (``nowait``: see ``transaction``)."""
        with self.transaction(nowait=nowait) as conn:
            uow = UnitOfWork(conn, self._writes)
            try:
                yield uow
            finally:
                uow.close()

    # --- schema ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        with self.transaction() as conn:
            if not self.is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises it
                lock = sa.func.pg_advisory_xact_lock(postgres.PG_MIGRATION_LOCK)
                conn.execute(sa.select(lock))
            command.upgrade(_alembic_config(conn), "head")

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(current, head) revision ids; equal when the schema is current."""
        with self.reading() as conn:
            config = _alembic_config(conn)
            head = ScriptDirectory.from_config(config).get_current_head()
            current = MigrationContext.configure(conn).get_current_revision()
        return current, head

    # --- outbox ---------------------------------------------------------------------------
    def claim_due(
        self, *, now: float, owner: str, limit: int, lease_seconds: float
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due effects to ``owner``; each claim bumps its fencing token."""
        with self.transaction() as conn:
            return outbox.claim_due(
                conn, now=now, owner=owner, limit=limit, lease_seconds=lease_seconds
            )

    def renew_lease(self, row: OutboxRow, *, owner: str, expires_at: float) -> bool:
        """Extend ``owner``'s lease on the open effect ``row`` to ``expires_at``; False (nothing
        written) if its fencing token moved on: another claim took it."""
        with self.transaction() as conn:
            return outbox.renew_lease(conn, row, owner=owner, expires_at=expires_at)

    def release_leases(self, owner: str | None = None) -> int:
        """Drop leases (all, or one owner's) so open effects are claimable at once."""
        with self.transaction() as conn:
            return outbox.release_leases(conn, owner)

    def next_due_at(self, *, now: float) -> float | None:
        """When an open effect can next be claimed (see ``outbox.next_due_at``)."""
        with self.reading() as conn:
            return outbox.next_due_at(conn, now=now)

    def next_timer_due(self) -> float | None:
        """When the earliest pending timer comes due (None if there is none)."""
        with self.reading() as conn:
            return outbox.next_timer_due(conn)

    # --- read models ----------------------------------------------------------------------
    def ticket_state(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        """The stored state of one ticket (None if ticketbridge never saw it)."""
        with self.unit_of_work() as uow:
            return uow.load_ticket(source, ticket_id)

    def effect_status(self, key: str) -> str | None:
        """The status of the effect with ``key`` (None if there is none)."""
        with self.reading() as conn:
            return queries.effect_status(conn, key)

    def effect_delivery(self, key: str) -> tuple[str, bool] | None:
        """The status of the effect with ``key`` and whether it may have reached its target
        (see ``queries.effect_delivery``)."""
        with self.reading() as conn:
            return queries.effect_delivery(conn, key)

    def effect_results(self, keys: Sequence[str]) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """``key -> (status, result)`` for the effects with these keys (absent: none)."""
        if not keys:
            return {}
        with self.reading() as conn:
            return queries.effect_results(conn, keys)

    def ticket_view(self, source: str, ticket_id: str) -> dict[str, Any] | None:
        """The ticket's state, timeline and effects, or None if ticketbridge never saw it."""
        with self.reading() as conn:
            return queries.ticket_view(conn, source, ticket_id)

    def count(self, table: str) -> int:
        """Rows in one of our tables (tests and operations)."""
        with self.reading() as conn:
            return queries.count(conn, table)

    def outbox_stats(self) -> OutboxStats:
        """Open and dead effects in one grouped query on the status index (for metrics)."""
        with self.reading() as conn:
            return queries.outbox_stats(conn)
