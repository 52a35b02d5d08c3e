"""The background workers of one process, started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ticketbridge.app.clock import DatabaseClock
from ticketbridge.app.workers.dispatcher import Dispatcher
from ticketbridge.app.workers.group_commit import GroupCommit
from ticketbridge.app.workers.guard import EffectGuard
from ticketbridge.app.workers.scheduler import Scheduler
from ticketbridge.app.workers.wakeups import PgWakeups

log = structlog.get_logger("ticketbridge")

CLOCK_SYNC_SECONDS = 30.0


@dataclass
class Workers:
    """What runs beside the routes, wired by ``bootstrap.build_workers``. With ``run`` false
    the dispatcher and scheduler are there for the routes but never loop (tests drive them
    step by step)."""

    guard: EffectGuard
    dispatcher: Dispatcher
    scheduler: Scheduler
    writer: GroupCommit
    wakeups: PgWakeups | None  # PostgreSQL with the workers running: other replicas' commits
    db_clock: DatabaseClock | None  # re-measured every CLOCK_SYNC_SECONDS while running
    run_db: Callable[..., Awaitable[Any]]
    run: bool = True
    close_http: Callable[[], Awaitable[None]] | None = None  # a client made for the workers
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _clock_sync: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the worker loops, the database clock's re-sync and the wake-ups."""
        if self.run:
            self._loops = [
                asyncio.create_task(self.dispatcher.run()),
                asyncio.create_task(self.scheduler.run()),
            ]
        if self.db_clock is not None:
            # Runs until cancelled at shutdown (awaiting it with the loops would never end).
            self._clock_sync = asyncio.create_task(_keep_in_sync(self.db_clock, self.run_db))
        if self.wakeups is not None:
            self.wakeups.start()

    async def stop(self) -> None:
        """Stop what ``start`` started (deliveries in flight may finish), close the writer."""
        if self._clock_sync is not None:
            self._clock_sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_sync
        if self.wakeups is not None:
            await asyncio.to_thread(self.wakeups.stop)
        if self._loops:
            self.scheduler.stop()
            await self.dispatcher.stop()
            await asyncio.gather(*self._loops)
        await self.writer.close()
        if self.close_http is not None:
            await self.close_http()


async def _keep_in_sync(clock: DatabaseClock, run_db: Callable[..., Awaitable[Any]]) -> None:
    """Re-measure the database clock's offset every CLOCK_SYNC_SECONDS (until cancelled)."""
    while True:
        await asyncio.sleep(CLOCK_SYNC_SECONDS)
        try:
            await run_db(clock.sync)
        except Exception as exc:  # keep the last offset; the store's own errors show elsewhere
            log.warning("clock.sync_failed", error=type(exc).__name__)
