"""The outbox dispatcher: claim due effects and deliver each (``delivery.Courier``).

Each effect is its own task, bounded per target, so one that keeps failing never holds up
the others. The dispatcher decides when to claim: after a webhook commits, when a delivery
leaves something new to claim, when another replica announces work, or at the next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.adapters.store.rows import OutboxRow
from ticketbridge.app.clock import Clock
from ticketbridge.app.settings import DispatchSettings
from ticketbridge.app.workers.delivery import Courier, Guard, Sender
from ticketbridge.app.workers.group_commit import GroupCommit

log = structlog.get_logger("ticketbridge.dispatcher")

MIN_IDLE = 0.05


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        senders: Mapping[str, Sender],
        clock: Clock,
        settings: DispatchSettings,
        run_db: Callable[..., Awaitable[Any]],
        guard: Guard | None = None,
        writer: GroupCommit | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
        on_breach: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._run_db = run_db
        self._owner = f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._courier = Courier(
            owner=self._owner,
            store=store,
            senders=senders,
            clock=clock,
            settings=settings,
            run_db=run_db,
            guard=guard,
            writer=writer,
            on_outcome=on_outcome,
            on_breach=on_breach,
        )
        self._deliver = self._courier.deliver
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: set[asyncio.Task[bool]] = set()
        # The last claim filled every free slot: more may be due as soon as a slot frees.
        self._starved = False
        # SQLite: one process writes, one transaction at a time, so a finishing effect sees
        # every effect queued behind it. Elsewhere another replica may be committing one
        # concurrently: every delivery's end then looks again (see ``_done``).
        self._sees_all_writes = store.is_sqlite
        # PostgreSQL: while the others' commits are heard (LISTEN), effects they leave for a
        # claim announce themselves (``heard_others``) and a delivery's end need not look.
        self._hears_others: Callable[[], bool] = lambda: False
        self._recheck = False

    @property
    def owner(self) -> str:
        return self._owner

    def wake(self) -> None:
        """Look for due effects now (called after a webhook commits)."""
        self._wake.set()

    def listen(self, hearing: Callable[[], bool]) -> None:
        """``hearing()`` tells whether other replicas' announcements reach ``heard_others``
        (the LISTEN connection is up)."""
        self._hears_others = hearing

    def heard_others(self) -> None:
        """Another replica committed effects for anyone to claim: look now, and again as each
        delivery in flight here ends (one of them may be what holds those effects back)."""
        self._recheck = True
        self._wake.set()

    def lease(self, now: float) -> tuple[str, float]:
        """The lease a committing webhook gives its new effects so they skip the claim."""
        return self._owner, now + self._settings.lease_seconds

    def deliver_now(self, rows: Sequence[OutboxRow]) -> None:
        """Send effects already leased to this dispatcher (just committed by a webhook)."""
        if self._stopping:
            return  # their lease expires (or is released on start) and a claim picks them up
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    async def run_once(self) -> int:
        """Claim what is due now and deliver it all; return how many were handled."""
        rows = await self._claim(self._settings.batch_size)
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def drain(self, *, max_rounds: int = 100) -> int:
        """run_once until nothing is due (tests and shutdown)."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            total += handled
            if handled == 0:
                break
        return total

    async def _claim(self, limit: int) -> list[OutboxRow]:
        now = self._clock.now().timestamp()
        rows: list[OutboxRow] = await self._run_db(
            lambda: self._store.claim_due(
                now=now,
                owner=self._owner,
                limit=limit,
                lease_seconds=self._settings.lease_seconds,
            )
        )
        return rows

    async def run(self) -> None:
        """The background loop; returns after ``stop()``."""
        log.info("dispatcher.started", owner=self._owner)
        capacity = self._settings.batch_size
        while not self._stopping:
            self._wake.clear()
            free = capacity - len(self._in_flight)
            rows: list[OutboxRow] = []
            if free > 0:
                try:
                    rows = await self._claim(free)
                except StoreUnavailable as exc:
                    log.warning("dispatcher.store_unavailable", error=str(exc))
            self._starved = free <= 0 or len(rows) == free
            for row in rows:
                task = asyncio.create_task(self._deliver(row))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if rows and len(rows) == free:
                continue
            if self._wake.is_set():
                # Woken while claiming (a delivery finished, a webhook committed): claim again
                # now; the next-due query would only decide how long not to wait.
                continue
            timeout = await self._idle_timeout()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        log.info("dispatcher.stopped", owner=self._owner)

    def _done(self, task: asyncio.Task[bool]) -> None:
        """A delivery ended: look for due effects again unless it provably left nothing new
        to claim: its effect final, no follow-ups, no other open effect of its ticket on its
        target waiting behind it, a free slot at the last claim, and no effect committed
        elsewhere meanwhile (SQLite: there is no elsewhere; PostgreSQL: while the other
        replicas are heard, none announced one since the deliveries in flight began). A
        webhook's page ending thus costs no claim and no next-due query."""
        self._in_flight.discard(task)
        again = True
        if not task.cancelled():
            if task.exception() is not None:
                log.error("dispatcher.task_failed", error=repr(task.exception()))
            else:
                quiet = self._sees_all_writes or (self._hears_others() and not self._recheck)
                again = task.result() or self._starved or not quiet
        if not self._in_flight:
            self._recheck = False
        if again:
            self._wake.set()

    async def _idle_timeout(self) -> float:
        poll = self._settings.poll_seconds
        now = self._clock.now().timestamp()
        try:
            due: float | None = await self._run_db(lambda: self._store.next_due_at(now=now))
        except StoreUnavailable:
            return poll
        if due is None:
            return poll
        # Never spin: something due "now" that the claim did not return is held by another
        # worker or is in flight here; its end wakes us.
        return max(MIN_IDLE, min(poll, due - now))

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight deliveries finish (up to ``grace`` s), free leases."""
        self._stopping = True
        self._wake.set()
        if self._in_flight:
            _done, pending = await asyncio.wait(self._in_flight, timeout=grace)
            for task in pending:
                task.cancel()
        with contextlib.suppress(StoreUnavailable):
            await self._run_db(lambda: self._store.release_leases(self._owner))
