"""Firing timers in batches: what a batch writes, and how the scheduler shares the writer."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import sqlalchemy as sa

import ticketbridge.app.workers.scheduler as scheduler_module
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.adapters.store.schema import timeline
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.services.ingest import PolicyBook, ingest
from ticketbridge.app.services.timers import (
    PreparedTimer,
    TimerRun,
    fire_due_timers,
    prepare_timers,
    read_upcoming,
)
from ticketbridge.app.workers.scheduler import Scheduler
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent

T = TypeVar("T")
OPENED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday


def _event(ticket: str, priority: Priority, **extra: Any) -> TicketEvent:
    return TicketEvent(
        source="freshdesk",
        ticket_id=ticket,
        kind=EventKind.CREATED,
        priority=priority,
        status=Status.OPEN,
        status_label="Open",
        domain="acme",
        url=f"https://acme.freshdesk.com/a/tickets/{ticket}",
        subject="Checkout fails",
        **extra,
    )


def _open_tickets(store: Store, policy: Policy, count: int = 12) -> None:
    """Tickets of every priority, some system-wide (their timers update the status page),
    opened a second apart."""
    book = PolicyBook(policy)
    priorities = list(Priority)
    for i in range(count):
        extra: dict[str, Any] = {"tags": ("system-wide",)} if i % 3 == 0 else {}
        event = _event(str(100 + i), priorities[i % len(priorities)], **extra)
        at = OPENED + timedelta(seconds=i)
        ingest(store, event=event, dedup_key=f"d{i}", now=at, policies=book)


def _tables(path: Path) -> dict[str, list[Any]]:
    """What the timers wrote, in a form two databases can be compared by (row ids aside)."""
    with sqlite3.connect(path) as db:
        tables = {
            "tickets": [
                (s, t, json.loads(state), at)
                for s, t, state, at in db.execute(
                    "SELECT source, ticket_id, state, updated_at FROM tickets ORDER BY 1, 2"
                )
            ],
            "outbox": db.execute(
                "SELECT key, target, kind, source, ticket_id, payload, reason, status, "
                "next_attempt_at, created_at FROM outbox ORDER BY key"
            ).fetchall(),
            "timeline": db.execute(
                "SELECT source, ticket_id, at, kind, detail FROM timeline ORDER BY 1, 2, 3, 5"
            ).fetchall(),
            "timers": db.execute(
                "SELECT source, ticket_id, kind, due_at, status, rule, updated_at, fired_at, "
                "lateness FROM timers ORDER BY 1, 2, 3"
            ).fetchall(),
        }
    db.close()
    return tables


def test_a_batch_writes_what_firing_its_timers_one_by_one_writes(
    tmp_path: Path, policy: Policy
) -> None:
    """Several timers of one ticket in a batch (Urgent: Tier-One, engagement and customer
    update all due) see each other's changes, and the batch writes exactly what one
    transaction per timer writes: states, effects, timeline, timers."""
    now = OPENED + timedelta(minutes=90)
    written = []
    for name, limit in (("batch", 1000), ("one-by-one", 1)):
        path = tmp_path / f"{name}.db"
        store = Store(f"sqlite:///{path}", sqlite_synchronous="OFF")
        try:
            store.migrate()
            _open_tickets(store, policy)
            book = PolicyBook(policy)
            fired = 0
            while run := fire_due_timers(store, now=now, policies=book, limit=limit).fired:
                fired += run
        finally:
            store.close()
        written.append((fired, _tables(path)))
    (batch_fired, batch), (single_fired, single) = written
    assert batch_fired == single_fired >= 12
    assert batch == single
    kinds = {(row[1], row[2]) for row in batch["outbox"]}
    assert ("victorops_bridge", "bridge") in kinds  # Urgent and High: the bridge
    assert ("statuspage", "update") in kinds  # system-wide: Tier Two engaged on the page
    # A fired timer stays fired (its own firing's re-plan does not cancel it) or, a customer
    # update, is armed again for the next one.
    assert sum(row[3] == "timer" for row in batch["timeline"]) == batch_fired
    assert {row[2]: row[4] for row in batch["timers"] if row[1] == "100"} == {
        "tier_one": "fired",
        "engagement": "fired",
        "customer_update": "pending",
    }
    assert not any(row[4] == "cancelled" for row in batch["timers"])


def test_payloads_and_details_are_stored_as_their_json_column_stores_them(
    tmp_path: Path, policy: Policy
) -> None:
    """Written as text ahead of the statement, they are byte for byte what the column's
    serialiser (``json.dumps``) makes of them."""
    path = tmp_path / "tb.db"
    store = Store(f"sqlite:///{path}", sqlite_synchronous="OFF")
    try:
        store.migrate()
        _open_tickets(store, policy)
        with sqlite3.connect(path) as db:
            before = db.execute("SELECT max(id) FROM outbox").fetchone()[0]
        db.close()
        run = fire_due_timers(
            store, now=OPENED + timedelta(hours=3), policies=PolicyBook(policy), limit=1000
        )
    finally:
        store.close()
    assert run.effects > 0
    with sqlite3.connect(path) as db:
        payloads = [p for (p,) in db.execute("SELECT payload FROM outbox WHERE id > ?", (before,))]
        details = [d for (d,) in db.execute("SELECT detail FROM timeline WHERE kind = 'timer'")]
    db.close()
    assert len(payloads) == run.effects
    assert details
    for text in payloads + details:
        assert text == json.dumps(json.loads(text))


def _prepare_all(store: Store, policies: PolicyBook, until: datetime) -> dict[int, PreparedTimer]:
    prepared: dict[int, PreparedTimer] = {}
    position: tuple[float, int] | None = (0.0, 0)
    while position is not None:
        upcoming, position = read_upcoming(
            store, after=position, until=until.timestamp(), policies=policies, limit=5
        )
        prepared.update(prepare_timers(upcoming))
    return prepared


@pytest.mark.parametrize("change", [None, "priority", "pending"])
def test_timers_worked_out_ahead_fire_as_if_worked_out_when_due(
    tmp_path: Path, policy: Policy, change: str | None
) -> None:
    """Worked out before they are due (all but the history entry and the lateness), timers
    write exactly what they write worked out when due; a timer whose ticket changed since
    (re-triaged, or Pending: new timers, new state) is worked out again when due."""
    now = OPENED + timedelta(minutes=90)
    written = []
    used: dict[str, int] = {}
    for name, ahead in (("when due", False), ("ahead", True)):
        path = tmp_path / f"{name}.db"
        store = Store(f"sqlite:///{path}", sqlite_synchronous="OFF")
        try:
            store.migrate()
            _open_tickets(store, policy)
            book = PolicyBook(policy)
            prepared = _prepare_all(store, book, now) if ahead else None
            if change is not None:  # after the timers were worked out ahead
                extra: dict[str, Any] = (
                    {"priority": Priority.LOW}
                    if change == "priority"
                    else {"status": Status.PENDING, "status_label": "Pending"}
                )
                event = _event("100", Priority.URGENT).model_copy(
                    update={"kind": EventKind.UPDATED, **extra}
                )
                at = OPENED + timedelta(minutes=20)
                ingest(store, event=event, dedup_key="change", now=at, policies=book)
            before = len(prepared or {})
            while fire_due_timers(store, now=now, policies=book, limit=4, prepared=prepared).fired:
                pass
            used[name] = before - len(prepared or {})
        finally:
            store.close()
        written.append(_tables(path))
    assert written[0] == written[1]
    assert used["ahead"] == (12 if change is None else 9 if change == "priority" else 11)


async def test_while_nothing_is_due_the_scheduler_works_out_the_next_timers(
    store: Store, policy: Policy
) -> None:
    """Up to ``prepare_max``, within ``prepare_seconds``; they are used when due."""
    _open_tickets(store, policy, count=6)
    first = store.next_timer_due()
    assert first is not None
    clock = FakeClock(datetime.fromtimestamp(first - 5, UTC))
    writer = _Writer()
    scheduler, _ = _scheduler(store, policy, clock, writer, prepare_seconds=3600 * 3, prepare_max=8)
    await scheduler._prepare_ahead(first)
    held = dict(scheduler._prepared)
    assert len(held) == 8
    assert all(p.due_at <= first + 3600 * 3 for p in held.values())
    clock.set(datetime.fromtimestamp(max(p.due_at for p in held.values()), UTC))
    total = await scheduler.run_once()
    assert total.fired >= 8
    assert not set(held) & set(scheduler._prepared)  # taken out as they fired


def _fired(store: Store) -> int:
    """Timers fired so far: one timeline entry each (a customer update is armed again)."""
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(timeline).where(timeline.c.kind == "timer")
        return int(conn.execute(query).scalar_one())


class _Writer:
    """``run_db`` as the app's: one store call at a time (SQLite's one writer), each in a
    worker thread; records what ran in which order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []

    async def run_db(self, fn: Callable[[], T]) -> T:
        def call() -> T:
            with self.lock:
                self.calls.append(getattr(fn, "__name__", "call"))
                return fn()

        return await anyio.to_thread.run_sync(call)


def _scheduler(
    store: Store, policy: Policy, clock: FakeClock, writer: _Writer, **options: Any
) -> tuple[Scheduler, list[TimerRun]]:
    runs: list[TimerRun] = []
    scheduler = Scheduler(
        store=store,
        policies=PolicyBook(policy),
        clock=clock,
        run_db=writer.run_db,
        on_effects=lambda: None,
        on_fired=runs.append,
        **options,
    )
    return scheduler, runs


async def test_a_backlog_is_fired_batch_after_batch_in_one_store_call(
    store: Store, policy: Policy
) -> None:
    """While batches come back full, the next follows in the same store call: nothing
    queued behind the scheduler gets in between (the writer is handed over after
    ``hold_seconds``). Every timer fires once."""
    _open_tickets(store, policy, count=8)
    clock = FakeClock(OPENED + timedelta(hours=3))
    writer = _Writer()
    scheduler, runs = _scheduler(store, policy, clock, writer, batch_size=3, hold_seconds=60)
    total = await scheduler.run_once()
    assert len(writer.calls) == 1
    assert len(runs) >= 4
    assert [run.fired for run in runs[:-1]] == [3] * (len(runs) - 1)
    assert runs[-1].fired < 3
    assert total.fired == sum(run.fired for run in runs) == _fired(store)
    assert (await scheduler.run_once()).fired == 0


async def test_after_hold_seconds_the_writer_is_handed_over_between_batches(
    store: Store, policy: Policy
) -> None:
    """With no hold, each batch is a store call of its own, so whatever queued for the
    writer meanwhile (a webhook, the dispatcher) runs between two batches."""
    _open_tickets(store, policy, count=8)
    clock = FakeClock(OPENED + timedelta(hours=3))
    writer = _Writer()
    scheduler, runs = _scheduler(store, policy, clock, writer, batch_size=3, hold_seconds=0)
    total = await scheduler.run_once()
    assert len(writer.calls) == len(runs) >= 4  # one call per batch
    assert total.fired == sum(run.fired for run in runs) == _fired(store)


async def test_the_next_due_time_is_read_in_the_call_that_found_nothing_more_due(
    store: Store, policy: Policy
) -> None:
    _open_tickets(store, policy, count=2)
    clock = FakeClock(OPENED)
    writer = _Writer()
    scheduler, _ = _scheduler(store, policy, clock, writer)
    total, due = await scheduler._fire_due(look_ahead=True)
    assert total.fired == 0
    assert len(writer.calls) == 1
    assert due == store.next_timer_due()
    assert due is not None
    assert due > OPENED.timestamp()


async def test_batches_committed_before_a_failure_are_still_counted(
    store: Store, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails in the middle of a backlog: the batches already committed reach the
    metrics (and wake the dispatcher) before the failure is raised."""
    _open_tickets(store, policy, count=8)
    clock = FakeClock(OPENED + timedelta(hours=3))
    calls = 0

    def failing_second(*args: Any, **kwargs: Any) -> TimerRun:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreUnavailable("lost")
        return fire_due_timers(*args, **kwargs)

    monkeypatch.setattr(scheduler_module, "fire_due_timers", failing_second)
    woken: list[bool] = []
    scheduler, runs = _scheduler(store, policy, clock, _Writer(), batch_size=3, hold_seconds=60)
    scheduler._on_effects = lambda: woken.append(True)
    with pytest.raises(StoreUnavailable):
        await scheduler.run_once()
    assert [run.fired for run in runs] == [3]
    assert woken == [True]
