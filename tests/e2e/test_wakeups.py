"""Several replicas on PostgreSQL: a commit on one wakes the workers of the others (NOTIFY)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import AppHarness, freshdesk_body, make_settings
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import Announcement
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.http.app import create_app
from ticketbridge.app.services.ingest import (
    ANNOUNCE_TIMERS_WITHIN,
    Incoming,
    PolicyBook,
    ingest_many,
)
from ticketbridge.app.workers.dispatcher import Dispatcher
from ticketbridge.app.workers.wakeups import PgWakeups
from ticketbridge.rules import EventKind, Priority, Status, TicketEvent


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_commit_on_one_replica_wakes_the_dispatcher_of_another(
    store: Store, clock: Any, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both replicas poll only every 30 s: within this test only a NOTIFY can wake replica B.
    settings = make_settings(dispatch={"poll_seconds": 30.0}, scheduler={"poll_seconds": 30.0})
    replica_a = Services(settings=settings, store=store, policy=policy, clock=clock)
    replica_a.fast_path = False  # A leaves the page to whichever replica claims it first
    replica_b = Services(settings=settings, store=Store(store.url), policy=policy, clock=clock)
    # What B's dispatcher does, in order: "heard" (another replica's NOTIFY), "claim" and
    # "claimed <n>" (a claim begun and its rows), "idle" (the next-due query before it waits).
    done: list[str] = []
    store_b = replica_b.store
    claim_due, next_due_at = store_b.claim_due, store_b.next_due_at
    heard_others = Dispatcher.heard_others

    def claim(**kwargs: Any) -> Any:
        done.append("claim")
        rows = claim_due(**kwargs)
        done.append(f"claimed {len(rows)}")
        return rows

    def next_due(**kwargs: Any) -> Any:
        due = next_due_at(**kwargs)
        done.append("idle")
        return due

    def heard(dispatcher: Dispatcher) -> None:
        done.append("heard")
        heard_others(dispatcher)

    monkeypatch.setattr(store_b, "claim_due", claim)
    monkeypatch.setattr(store_b, "next_due_at", next_due)
    monkeypatch.setattr(Dispatcher, "heard_others", heard)
    app_a = create_app(settings, services=replica_a, start_workers=False)
    app_b = create_app(settings, services=replica_b, start_workers=True)
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with app_a.router.lifespan_context(app_a), app_b.router.lifespan_context(app_b):

            def b_idle_after_listening() -> bool:
                # B's LISTEN is up, the "look now" it hears on connecting was claimed for, and
                # B is waiting again: from here only a NOTIFY (or a 30 s poll) wakes it.
                if "heard" not in done or done[-1] != "idle":
                    return False
                return "claim" in done[len(done) - done[::-1].index("heard") :]

            for _ in range(200):  # bounded wait
                if b_idle_after_listening():
                    break
                await asyncio.sleep(0.05)
            assert b_idle_after_listening(), done
            transport = httpx.ASGITransport(app=app_a)
            async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as c:
                h = AppHarness(c, replica_a, app_a)
                done.append("commit")
                assert (await h.post_freshdesk(freshdesk_body(90))).status_code == 202
                for _ in range(200):  # bounded: 10 s, against the 30 s poll
                    if route.call_count:
                        break
                    await asyncio.sleep(0.05)
    replica_b.store.close()
    assert route.call_count == 1
    after = done[done.index("commit") :]
    assert after[:4] == ["commit", "heard", "claim", "claimed 1"], done


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_replica_hears_the_others_announcements_and_not_its_own(store: Store) -> None:
    """What a commit announces reaches the other replicas' listeners, decoded; the
    announcing replica's own listener ignores it (its workers were woken directly)."""
    other = Store(store.url)
    heard: list[Announcement] = []
    loop = asyncio.get_running_loop()
    listener = PgWakeups(store.listen_conninfo() or "", heard.append, loop, store.is_own_backend)
    listener.start()
    try:
        await _listening(listener, heard)
        assert heard == [Announcement()]  # on (re)connecting: "look now"
        heard.clear()
        with store.unit_of_work() as uow:  # this replica: not heard by its own listener
            uow.announce(timer=100.0, effects=0)
        with other.unit_of_work() as uow:  # another replica: heard
            uow.announce(timer=1795.5, effects=3)
        with other.unit_of_work() as uow:
            uow.announce()
        await _hear_all(heard, other)
    finally:
        await asyncio.to_thread(listener.stop)
        other.close()
    assert heard == [Announcement(timer=1795.5, effects=3), Announcement()]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_ingest_announces_claimable_effects_and_near_timers_only(
    store: Store, policy: Any
) -> None:
    """A webhook whose effects all went out from its replica (leased) or were skipped, and
    whose timers are due in half an hour, announces nothing (polls find such timers, and a
    NOTIFY serialises commits); an effect left for any replica's claim, or a timer due
    within ``ANNOUNCE_TIMERS_WITHIN``, is announced."""
    other = Store(store.url)
    heard: list[Announcement] = []
    loop = asyncio.get_running_loop()
    listener = PgWakeups(store.listen_conninfo() or "", heard.append, loop, store.is_own_backend)
    listener.start()
    book = PolicyBook(policy)
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def created(ticket: str, opened: datetime | None = None) -> Incoming:
        event = TicketEvent(
            source="freshdesk",
            ticket_id=ticket,
            kind=EventKind.CREATED,
            priority=Priority.URGENT,
            status=Status.OPEN,
            status_label="Open",
            occurred_at=opened,
        )
        return Incoming(event, ticket, now, ("replica-a", now.timestamp() + 60))

    try:
        await _listening(listener, heard)
        heard.clear()
        with other.unit_of_work() as uow:  # leased page, skipped elsewhere: silent
            ingest_many(uow, [created("quiet-1")], policies=book)
        with other.unit_of_work() as uow:
            ingest_many(uow, [created("quiet-2")], policies=book, configured=set())
        with other.unit_of_work() as uow:  # the page left for a claim: announced
            item = created("claim-1")
            unleased = Incoming(item.event, item.dedup_key, item.now)
            ingest_many(uow, [unleased], policies=book)
        with other.unit_of_work() as uow:  # opened 29.5 min ago: Tier-One due in 30 s
            ingest_many(uow, [created("near-1", now - timedelta(minutes=29.5))], policies=book)
        await _hear_all(heard, other)
    finally:
        await asyncio.to_thread(listener.stop)
        other.close()
    # Urgent: its Tier-One deadline is 30 min out, beyond ANNOUNCE_TIMERS_WITHIN.
    assert ANNOUNCE_TIMERS_WITHIN < 30 * 60
    assert heard == [
        Announcement(timer=None, effects=1),
        Announcement(timer=now.timestamp() + 30, effects=0),
    ]


# Announced last by a test: PostgreSQL delivers notifications in commit order, so once it is
# heard, every announcement committed before it has been heard too.
LAST = Announcement(timer=1.0, effects=-1)


async def _listening(listener: PgWakeups, heard: list[Announcement]) -> None:
    """Wait (bounded) until ``listener``'s LISTEN connection is up and has said "look now"."""
    for _ in range(200):
        if listener.listening.is_set() and heard:
            break
        await asyncio.sleep(0.05)
    assert listener.listening.is_set()


async def _hear_all(heard: list[Announcement], other: Store) -> None:
    """Announce LAST from ``other`` and wait (bounded) until it is heard; then ``heard``
    holds everything announced before it, and LAST is taken off its end."""
    with other.unit_of_work() as uow:
        uow.announce(timer=LAST.timer, effects=LAST.effects)
    for _ in range(200):
        if LAST in heard:
            break
        await asyncio.sleep(0.05)
    assert heard[-1:] == [LAST], heard
    heard.pop()


def test_an_announcement_survives_the_wire_and_garbage_says_nothing() -> None:
    for said in (Announcement(), Announcement(12.5, 0), Announcement(None, 4)):
        assert Announcement.decode(said.encode()) == said
    for garbage in ("", "{", "[1, 2]", '{"timer": "soon", "effects": 1.5}', "null"):
        assert Announcement.decode(garbage) == Announcement()
