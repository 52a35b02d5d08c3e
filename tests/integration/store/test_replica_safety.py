"""What keeps replicas on one PostgreSQL from stepping on each other: one clock (the
database's) and a stalled transaction losing its locks (docs/reliability.md)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.bootstrap import build_services
from ticketbridge.app.clock import DatabaseClock, SystemClock
from ticketbridge.app.services.ingest import PolicyBook, ingest
from ticketbridge.app.settings import Settings
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent


def test_the_database_clock_is_local_time_plus_the_measured_offset() -> None:
    local = iter([1000.0, 1000.2, 1000.5, 2000.0])
    clock = DatabaseClock(lambda: 1100.1, local=lambda: next(local))
    assert clock.offset == 0.0
    assert clock.sync() == pytest.approx(100.0)  # server 1100.1 at the midpoint 1000.1
    assert clock.round_trip == pytest.approx(0.2)
    assert clock.now() == datetime.fromtimestamp(1100.5, UTC)
    assert clock.now() == datetime.fromtimestamp(2100.0, UTC)


def test_a_failed_sync_keeps_the_last_offset() -> None:
    answers = iter([1050.0])

    def read() -> float:
        try:
            return next(answers)
        except StopIteration:
            raise StoreUnavailable("down") from None

    clock = DatabaseClock(read, local=lambda: 1000.0)
    assert clock.sync() == 50.0
    with pytest.raises(StoreUnavailable):
        clock.sync()
    assert clock.offset == 50.0
    assert clock.now() == datetime.fromtimestamp(1050.0, UTC)


def test_database_time_is_the_servers_own(store: Store) -> None:
    assert abs(store.database_time() - time.time()) < 2.0  # same host: the same clock


@pytest.mark.parametrize(
    ("backend", "clock", "expected"),
    [
        ("sqlite", "auto", SystemClock),
        ("postgresql", "auto", DatabaseClock),
        ("postgresql", "system", SystemClock),
        ("sqlite", "database", DatabaseClock),
    ],
    indirect=["backend"],
)
def test_replicas_on_postgresql_use_the_database_clock(
    store: Store, policy: Policy, clock: str, expected: type
) -> None:
    settings = Settings.model_validate({"database_url": store.url, "clock": clock})
    services = build_services(settings, store=store, policy=policy)
    assert isinstance(services.clock, expected)


def _urgent(ticket: str) -> TicketEvent:
    return TicketEvent(
        source="freshdesk",
        ticket_id=ticket,
        kind=EventKind.CREATED,
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_label="Open",
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_replica_stalled_inside_a_transaction_loses_it_and_its_timers(
    store: Store, policy: Policy
) -> None:
    """A replica paused while firing timers holds their row locks; after ``stall_seconds``
    the server ends its transaction, another replica takes the timers, and the paused one's
    late writes fail: nothing is fired twice."""
    opened = datetime.now(UTC) - timedelta(hours=3)  # every Urgent timer is due
    ingest(store, event=_urgent("1"), dedup_key="d1", now=opened, policies=PolicyBook(policy))
    stalled = Store(store.url, stall_seconds=1.0)
    other = Store(store.url, stall_seconds=1.0)
    now = time.time()
    taken: list[int] = []
    late_write: list[BaseException] = []
    try:
        with stalled.unit_of_work() as uow:
            held, _ = uow.due_timers_with_states(now=now, limit=100)  # FOR UPDATE SKIP LOCKED
            assert held, "no due timers to hold"
            with other.unit_of_work() as uow2:  # while held, another replica sees none
                assert uow2.due_timers_with_states(now=now, limit=100) == ([], {})

            def take_over() -> None:
                with other.unit_of_work() as uow3:
                    rows, _ = uow3.due_timers_with_states(now=now, limit=100)
                    uow3.mark_timers_fired([(t.id, 0.0) for t in rows], at=now)
                    taken.extend(t.id for t in rows)

            time.sleep(1.8)  # the pause: past stall_seconds, idle inside the transaction
            worker = threading.Thread(target=take_over)
            worker.start()
            worker.join(timeout=10)
            try:
                uow.mark_timers_fired([(t.id, 99.0) for t in held], at=now)
            except StoreUnavailable as exc:  # the connection was ended by the server
                late_write.append(exc)
    except StoreUnavailable as exc:  # or the COMMIT failed
        late_write.append(exc)
    finally:
        stalled.close()
        other.close()
    assert sorted(taken) == sorted(t.id for t in held), "the other replica took them over"
    assert late_write, "the stalled replica's write went through"
    view = store.ticket_view("freshdesk", "1")
    assert view is not None
    lateness = [t["lateness"] for t in view["timers"] if t["status"] == "fired"]
    assert lateness
    assert all(late == 0.0 for late in lateness), "a stale write landed"
