"""The hot paths' statements compiled once by SQLAlchemy and run on the driver's cursor.

The only module that touches SQLAlchemy's private API (compiled bind and result processors,
``Connection._handle_dbapi_exception``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect

from ticketbridge.adapters.store.rows import RawJSON
from ticketbridge.adapters.store.statements import statements

_CALLER = object()  # in a FastStatement plan: the caller supplies this parameter's value


class FastStatement:
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


class FastStatements:
    """The ``FastStatement`` forms of the hot paths' statements for one dialect, compiled on first
    use: an INSERT compiles per set of columns given, as SQLAlchemy's would."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._sql = statements(dialect.name)
        self._compiled: dict[tuple[str, tuple[str, ...] | None], FastStatement] = {}

    def get(self, name: str, keys: Sequence[str] | None = None) -> FastStatement:
        key = (name, tuple(keys) if keys is not None else None)
        fast = self._compiled.get(key)
        if fast is None:
            fast = self._compiled[key] = FastStatement(
                getattr(self._sql, name), self._dialect, keys
            )
        return fast


_FAST: weakref.WeakKeyDictionary[Dialect, FastStatements] = weakref.WeakKeyDictionary()


def fast_statements(dialect: Dialect) -> FastStatements:
    found = _FAST.get(dialect)
    if found is None:
        found = _FAST[dialect] = FastStatements(dialect)
    return found


def driver_execute(conn: Connection, sql: str) -> None:
    """``sql`` on ``conn``'s driver connection (SQLAlchemy's own execute costs more than a
    statement such as BEGIN); a driver error is raised as ``execute`` would raise it
    (``sa.exc.OperationalError``..., the connection invalidated if it is broken)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    try:
        dbapi.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        conn._handle_dbapi_exception(exc, sql, (), None, None)


class Driver:
    """A unit of work's cursor on its connection's driver: runs the compiled hot-path
    statements (by name, see ``FastStatement``) and hand-written SQL. A driver error is raised
    as ``Connection.execute`` would raise it (``sa.exc.IntegrityError``...), a connection
    found broken invalidated; the store's transaction turns it into a ``StoreError``."""

    __slots__ = ("_conn", "_cursor", "_fast")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._fast = fast_statements(conn.dialect)
        self._cursor: Any = None

    def close(self) -> None:
        """Close the cursor, if one was opened."""
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def compiled(self, name: str, keys: Sequence[str] | None = None) -> FastStatement:
        """The compiled form of the statement ``name`` for the INSERT columns ``keys``."""
        return self._fast.get(name, keys)

    def _dbapi_cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def _failed(self, exc: Exception, sql: str, params: Any, cursor: Any) -> None:
        self._cursor = None
        self._conn._handle_dbapi_exception(exc, sql, params, cursor, None)

    def run(
        self, name: str, values: Mapping[str, Any], keys: Sequence[str] | None = None
    ) -> tuple[FastStatement, Any]:
        """Execute the statement ``name`` with ``values``; it and the cursor holding its rows."""
        fast = self._fast.get(name, keys)
        params = fast.params(values)
        cursor = self._dbapi_cursor()
        try:
            cursor.execute(fast.sql, params)
        except Exception as exc:
            self._failed(exc, fast.sql, params, cursor)
        return fast, cursor

    def fetch(
        self, name: str, values: Mapping[str, Any], keys: Sequence[str] | None = None
    ) -> list[tuple[Any, ...]]:
        """Execute the statement ``name`` with ``values``; the rows it returned, processed."""
        fast, cursor = self.run(name, values, keys)
        return fast.rows(cursor)

    def sets(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Execute hand-written ``sql`` (set-wise or multi-row); the rows it returned, as the
        driver gave them."""
        cursor = self._dbapi_cursor()
        try:
            cursor.execute(sql, params)
        except Exception as exc:
            self._failed(exc, sql, params, cursor)
        return cursor.fetchall() if cursor.description is not None else []

    def run_many(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> int:
        """Execute ``name`` once per row (``executemany``); the rows it changed (-1: the
        driver cannot tell)."""
        fast = self._fast.get(name, keys)
        params = [fast.params(row) for row in rows]
        cursor = self._dbapi_cursor()
        try:
            cursor.executemany(fast.sql, params)
        except Exception as exc:
            self._failed(exc, fast.sql, params, cursor)
        return int(cursor.rowcount)

    def run_pipelined(
        self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> list[list[tuple[Any, ...]]]:
        """Execute ``name`` once per row as one ``executemany(returning=True)`` (psycopg
        pipelines it: one round trip); what each execution returned, in order."""
        fast = self._fast.get(name, keys)
        params = [fast.params(row) for row in rows]
        cursor = self._dbapi_cursor()
        try:
            cursor.executemany(fast.sql, params, returning=True)
        except Exception as exc:
            self._failed(exc, fast.sql, params, cursor)
        found = [fast.rows(cursor)]
        while cursor.nextset():
            found.append(fast.rows(cursor))
        return found
