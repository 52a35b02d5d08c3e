"""Several replicas on PostgreSQL: a commit on one wakes the workers of the others (NOTIFY)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import AppHarness, freshdesk_body, make_settings
from ticketbridge.adapters.store.sql import Announcement, Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.main import create_app
from ticketbridge.app.wakeups import PgWakeups


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_commit_on_one_replica_wakes_the_dispatcher_of_another(
    store: Store, clock: Any, policy: Any
) -> None:
    # Both replicas poll only every 30 s: within this test only a NOTIFY can wake replica B.
    settings = make_settings(dispatch={"poll_seconds": 30.0}, scheduler={"poll_seconds": 30.0})
    replica_a = Services(settings=settings, store=store, policy=policy, clock=clock)
    replica_a.fast_path = False  # A leaves the page to whichever replica claims it first
    replica_b = Services(settings=settings, store=Store(store.url), policy=policy, clock=clock)
    app_a = create_app(settings, services=replica_a, start_workers=False)
    app_b = create_app(settings, services=replica_b, start_workers=True)
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with app_a.router.lifespan_context(app_a), app_b.router.lifespan_context(app_b):
            for _ in range(200):  # B's LISTEN connection is up (bounded wait)
                if app_b.state.wakeups.listening.is_set():
                    break
                await asyncio.sleep(0.05)
            assert app_b.state.wakeups.listening.is_set()
            await asyncio.sleep(0.2)  # B's dispatcher is now idle, waiting up to 30 s
            transport = httpx.ASGITransport(app=app_a)
            async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as c:
                h = AppHarness(c, replica_a, app_a)
                started = time.monotonic()
                assert (await h.post_freshdesk(freshdesk_body(90))).status_code == 202
                for _ in range(200):
                    if route.call_count:
                        break
                    await asyncio.sleep(0.05)
                woke_in = time.monotonic() - started
    replica_b.store.close()
    assert route.call_count == 1
    assert woke_in < 5.0, f"replica B sent the page {woke_in:.1f} s after the commit"


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
        for _ in range(200):
            if listener.listening.is_set():
                break
            await asyncio.sleep(0.05)
        assert listener.listening.is_set()
        await asyncio.sleep(0.1)
        assert heard == [Announcement()]  # on (re)connecting: "look now"
        heard.clear()
        with store.unit_of_work() as uow:  # this replica: not heard by its own listener
            uow.announce(timer=100.0, effects=0)
        with other.unit_of_work() as uow:  # another replica: heard
            uow.announce(timer=1795.5, effects=3)
        with other.unit_of_work() as uow:
            uow.announce()
        for _ in range(100):
            if len(heard) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and nothing else arrives
    finally:
        await asyncio.to_thread(listener.stop)
        other.close()
    assert heard == [Announcement(timer=1795.5, effects=3), Announcement()]


def test_an_announcement_survives_the_wire_and_garbage_says_nothing() -> None:
    for said in (Announcement(), Announcement(12.5, 0), Announcement(None, 4)):
        assert Announcement.decode(said.encode()) == said
    for garbage in ("", "{", "[1, 2]", '{"timer": "soon", "effects": 1.5}', "null"):
        assert Announcement.decode(garbage) == Announcement()
