"""A rolling-window rate budget: at most ``max_rate`` calls in ANY ``time_period`` seconds.

Vendors state their limits per window ("200 calls a minute", "80 creations a minute", "1
request a second on a 60 s rolling window"). A leaky bucket (aiolimiter) lets a full bucket
go at once and then refills, so right after a backlog it allows up to twice the budget within
one window; a vendor counting a rolling window answers that with 429s. This keeps a log of the
last ``max_rate`` call times instead, and a call waits until the oldest of them is
``time_period`` old. (The ``limits`` package has the same moving window, but only as a
non-blocking ``hit``; waiting for the next free slot is the point here.)

A call's slot is held for ``time_period`` plus a margin of 2 %: the vendor counts arrivals,
and two calls sent exactly one window apart can arrive less than a window apart when the
first was slower on the wire.

Same surface as ``aiolimiter.AsyncLimiter``: ``async with limiter: ...``, ``max_rate``,
``time_period``, ``has_capacity()``. Time is the running loop's clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

MARGIN = 0.02


class RollingWindowLimiter:
    """FIFO waiters; a cancelled waiter takes no slot."""

    def __init__(self, max_rate: int, time_period: float = 60.0) -> None:
        if max_rate < 1:
            raise ValueError("max_rate must be at least 1")
        if not time_period > 0:
            raise ValueError("time_period must be positive")
        self.max_rate = max_rate
        self.time_period = time_period
        self._hold = time_period * (1 + MARGIN)
        self._calls: deque[float] = deque()
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"RollingWindowLimiter({self.max_rate} per {self.time_period:g} s)"

    def _prune(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - self._hold:
            self._calls.popleft()

    def has_capacity(self) -> bool:
        """Whether a call could go now without waiting."""
        self._prune(asyncio.get_running_loop().time())
        return len(self._calls) < self.max_rate

    async def acquire(self) -> None:
        """Wait for a slot in the window and take it."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._lock:  # one waiter at a time, in arrival order
            while True:
                now = loop.time()
                self._prune(now)
                if len(self._calls) < self.max_rate:
                    self._calls.append(now)
                    return
                await asyncio.sleep(self._calls[0] + self._hold - now)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
