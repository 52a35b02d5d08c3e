"""The timer scheduler: fires due timers from the store, in batches, exactly once each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ticketbridge.adapters.store.sql import Store, StoreUnavailable
from ticketbridge.app.clock import Clock
from ticketbridge.app.service import PolicyBook, TimerRun, fire_due_timers

log = structlog.get_logger("ticketbridge.scheduler")


class Scheduler:
    """Claims due timers (index on due time: cost follows what is due, not what is pending)."""

    def __init__(
        self,
        *,
        store: Store,
        policies: PolicyBook,
        clock: Clock,
        run_db: Callable[..., Awaitable[Any]],
        on_effects: Callable[[], None],
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        on_fired: Callable[[TimerRun], None] | None = None,
    ) -> None:
        self._store = store
        self._on_fired = on_fired  # each committed batch (metrics: lateness, breaches)
        self._policies = policies
        self._clock = clock
        self._run_db = run_db
        self._on_effects = on_effects
        self._batch = batch_size
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_due: float | None = None

    def wake(self) -> None:
        """Look for due timers now."""
        self._wake.set()

    def wake_if_earlier(self, due: float) -> None:
        """A timer was armed at ``due``: wake only if that is before the one awaited."""
        if self._next_due is None or due < self._next_due:
            self._next_due = due
            self._wake.set()

    async def run_once(self) -> TimerRun:
        """Fire every timer due now, batch by batch; return the totals."""
        fired = effects = 0
        late = 0.0
        while True:
            run: TimerRun = await self._run_db(self._fire_batch)
            if self._on_fired is not None:
                self._on_fired(run)
            if run.fired:
                log.debug("timer.batch_committed", count=run.fired, effects=run.effects)
            fired += run.fired
            effects += run.effects
            late = max(late, run.max_lateness)
            if run.effects:
                self._on_effects()
            if run.fired < self._batch:
                break
        if fired:
            log.info("timer.fired", count=fired, effects=effects, max_late_s=round(late, 3))
        return TimerRun(fired, effects, late)

    def _fire_batch(self) -> TimerRun:
        return fire_due_timers(
            self._store, now=self._clock.now(), policies=self._policies, limit=self._batch
        )

    async def run(self) -> None:
        log.info("scheduler.started")
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
                due = await self._run_db(self._store.next_timer_due)
            except StoreUnavailable as exc:
                log.warning("scheduler.store_unavailable", error=str(exc))
                due = None
            self._next_due = due
            timeout = self._poll
            if due is not None:
                timeout = max(0.0, min(self._poll, due - self._clock.now().timestamp()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        log.info("scheduler.stopped")

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
