"""The store's errors: what a caller of the store may catch."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the transaction."""


class StoreBusy(StoreUnavailable):
    """A transaction asked not to wait (``Store.unit_of_work(nowait=True)``) found a lock
    held by another transaction: on SQLite the file's write lock at BEGIN, on PostgreSQL a
    row or key lock held longer than ``PG_NOWAIT_LOCK_MS``. Nothing it did is kept."""
