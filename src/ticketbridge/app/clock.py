"""The one source of time. Tests inject a FakeClock and step it; nothing sleeps for a timer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


class DatabaseClock:
    """The database server's clock, read through the local one: ``now()`` is local time plus
    the offset measured by the last ``sync()`` (a round trip to the server, halved).

    With several replicas on one PostgreSQL, every due time, retry time and lease expiry is
    then on one clock, the server's, however far the hosts' own clocks drift apart. ``now()``
    never blocks (the event loop calls it); ``sync()`` does I/O and runs in a worker thread,
    at start-up and then periodically. A failed sync keeps the last offset.
    """

    def __init__(
        self, read: Callable[[], float], *, local: Callable[[], float] = time.time
    ) -> None:
        self._read = read
        self._local = local
        self._offset = 0.0
        self._round_trip: float | None = None
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds the database's clock is ahead of this host's (negative: behind)."""
        return self._offset

    @property
    def round_trip(self) -> float | None:
        """The round trip of the last successful sync, in seconds (its error bound x2)."""
        return self._round_trip

    def sync(self) -> float:
        """Measure the offset now; return it. Raises whatever the read raises."""
        before = self._local()
        server = self._read()
        after = self._local()
        with self._lock:
            self._offset = server - (before + after) / 2
            self._round_trip = after - before
        return self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._local() + self._offset, UTC)
