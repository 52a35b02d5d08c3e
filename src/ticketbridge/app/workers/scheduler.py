"""The timer scheduler: fires due timers from the store, in batches, exactly once each."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.clock import Clock
from ticketbridge.app.services.ingest import PolicyBook
from ticketbridge.app.services.timers import (
    PreparedTimer,
    TimerRun,
    fire_due_timers,
    prepare_timers,
    read_upcoming,
)

log = structlog.get_logger("ticketbridge.scheduler")

# While a backlog lasts (each batch came back full), further batches follow in the same
# database call, without queueing again behind other store calls, for up to this long; then
# the writer is handed over (webhooks, the dispatcher) before the next round.
HOLD_SECONDS = 0.5
# While nothing is due, the firing of the timers due within PREPARE_SECONDS is worked out
# ahead, PREPARE_CHUNK timers at a time (``services.timers.prepare_timers``, outside the store's
# slot): when they come due, only what depends on the time is left to do. At most
# PREPARE_MAX are held (a few kilobytes of text and tuples each): the bound on its memory.
PREPARE_SECONDS = 10.0
PREPARE_CHUNK = 200
PREPARE_MAX = 10_000


@dataclass(frozen=True)
class _Round:
    """What one database call of the scheduler did: its batches, whether timers are still
    due (the last batch was full), and the next due time when none is."""

    runs: tuple[TimerRun, ...]
    backlog: bool
    next_due: float | None = None
    error: StoreUnavailable | None = None  # raised after the committed batches are counted


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
        hold_seconds: float = HOLD_SECONDS,
        prepare_seconds: float = PREPARE_SECONDS,
        prepare_max: int = PREPARE_MAX,
    ) -> None:
        self._store = store
        self._on_fired = on_fired  # each committed batch (metrics: lateness, breaches)
        self._policies = policies
        self._clock = clock
        self._run_db = run_db
        self._on_effects = on_effects
        self._batch = batch_size
        self._poll = poll_seconds
        self._hold = hold_seconds
        self._prepare_seconds = prepare_seconds
        self._prepare_max = prepare_max
        self._prepared: dict[int, PreparedTimer] = {}  # by timer id; firing takes them out
        self._prepared_to = (0.0, 0)  # (due_at, id) of the last timer looked at ahead
        self._chunk_seconds = 0.05  # how long the last chunk took (a guess before the first)
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
        total, _ = await self._fire_due(look_ahead=False)
        return total

    async def _fire_due(self, *, look_ahead: bool) -> tuple[TimerRun, float | None]:
        """Fire every timer due now; with ``look_ahead`` also return when the next one is due
        (read in the database call that found nothing more due)."""
        fired = effects = 0
        late = 0.0
        while True:
            round_: _Round = await self._run_db(lambda: self._fire_round(look_ahead))
            for run in round_.runs:
                if self._on_fired is not None:
                    self._on_fired(run)
                if run.fired:
                    log.debug("timer.batch_committed", count=run.fired, effects=run.effects)
                fired += run.fired
                effects += run.effects
                late = max(late, run.max_lateness)
            if any(run.effects for run in round_.runs):
                self._on_effects()
            if round_.error is not None:
                raise round_.error
            if not round_.backlog:
                break
        if fired:
            log.info("timer.fired", count=fired, effects=effects, max_late_s=round(late, 3))
        return TimerRun(fired, effects, late), round_.next_due

    def _fire_round(self, look_ahead: bool) -> _Round:
        """Batches back to back (in the worker thread, holding the writer) while each comes
        back full, for up to ``hold_seconds``. Each batch reads the clock when it starts."""
        began = time.monotonic()
        runs: list[TimerRun] = []
        try:
            while True:
                run = fire_due_timers(
                    self._store,
                    now=self._clock.now(),
                    policies=self._policies,
                    limit=self._batch,
                    prepared=self._prepared,
                )
                runs.append(run)
                if run.fired < self._batch:
                    due = self._store.next_timer_due() if look_ahead else None
                    return _Round(tuple(runs), backlog=False, next_due=due)
                if time.monotonic() - began >= self._hold:
                    return _Round(tuple(runs), backlog=True)
        except StoreUnavailable as exc:
            if not runs:
                raise
            return _Round(tuple(runs), backlog=False, error=exc)

    async def run(self) -> None:
        log.info("scheduler.started")
        while not self._stopping:
            self._wake.clear()
            try:
                _, due = await self._fire_due(look_ahead=True)
            except StoreUnavailable as exc:
                log.warning("scheduler.store_unavailable", error=str(exc))
                due = None
            self._next_due = due
            await self._prepare_ahead(due)
            timeout = self._poll
            if due is not None:
                timeout = max(0.0, min(self._poll, due - self._clock.now().timestamp()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        log.info("scheduler.stopped")

    async def _prepare_ahead(self, due: float | None) -> None:
        """Work out ahead the timers due within ``prepare_seconds``, a chunk at a time, until
        all are, ``prepare_max`` are held, something wakes the scheduler, or the next chunk
        might still run when the timer awaited (at ``due``) comes due. Best effort: a
        failure leaves the timers to be worked out when they fire."""
        now = self._clock.now().timestamp()
        for timer_id in [i for i, p in self._prepared.items() if p.due_at < now - 60.0]:
            del self._prepared[timer_id]  # never fired here: moved, cancelled, or elsewhere
        while len(self._prepared) < self._prepare_max and not self._wake.is_set():
            now = self._clock.now().timestamp()
            if due is not None and now + 2 * self._chunk_seconds >= due:
                return
            began = time.monotonic()
            try:
                upcoming, reached = await self._run_db(
                    functools.partial(
                        read_upcoming,
                        self._store,
                        after=max(self._prepared_to, (now, 0)),
                        until=now + self._prepare_seconds,
                        policies=self._policies,
                        limit=min(PREPARE_CHUNK, self._prepare_max - len(self._prepared)),
                    )
                )
                found = await anyio.to_thread.run_sync(prepare_timers, upcoming)
            except StoreUnavailable:
                return  # the firing reports it
            except Exception as exc:  # an optimisation only: never fatal
                log.warning("scheduler.prepare_failed", error=repr(exc))
                return
            self._chunk_seconds = time.monotonic() - began
            self._prepared.update(found)
            if reached is None:
                return
            self._prepared_to = reached

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
