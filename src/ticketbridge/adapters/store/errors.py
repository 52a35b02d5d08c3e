"""The store's errors: what a caller of the store may catch.

``StoreError`` is the root: the store raises nothing else of its own, and never lets a
SQLAlchemy or driver exception out (``Store.transaction`` and ``Store.reading`` translate
them, the original as ``__cause__``). A caller that retries catches ``StoreUnavailable``;
anything else under ``StoreError`` is a statement the database refused (a broken constraint:
a bug, not a condition to wait out).
"""

from __future__ import annotations


class StoreError(Exception):
    """The store failed to do what was asked; nothing the transaction wrote is kept."""

    @property
    def reason(self) -> str:
        """The driver's own first line about it (host and port, never a password), else
        this error's message."""
        cause = self.__cause__
        text = str(getattr(cause, "orig", None) or cause or "").strip()
        return text.splitlines()[0] if text else str(self)


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the transaction."""


class StoreBusy(StoreUnavailable):
    """A transaction asked not to wait (``Store.unit_of_work(nowait=True)``) found a lock
    held by another transaction: on SQLite the file's write lock at BEGIN, on PostgreSQL a
    row or key lock held longer than ``PG_NOWAIT_LOCK_MS``. Nothing it did is kept."""
