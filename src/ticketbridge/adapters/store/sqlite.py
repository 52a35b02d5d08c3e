"""SQLite: connection settings, BEGIN IMMEDIATE, and the multi-row statements' text."""

from __future__ import annotations

import functools

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# At most this many rows per multi-row INSERT on SQLite (``UnitOfWork._insert_rows``): its
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
