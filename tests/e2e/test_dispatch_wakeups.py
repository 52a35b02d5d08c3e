"""When the background dispatcher looks for work after a delivery ends: only when the delivery
left something to claim (an effect queued behind it), never for a lone page (on SQLite, where
the finishing transaction sees every write; on PostgreSQL it always looks again)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import freshdesk_body

# A poll far longer than any wait below: what the tests see comes from wake-ups alone.
SLOW_POLL = {"poll_seconds": 30.0, "backoff_initial": 1.0, "backoff_max": 60.0}


async def _until(condition: Any, what: str, seconds: float = 5.0) -> None:
    """Poll ``condition`` (a function, maybe async) until it holds, for at most ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        held = condition()
        if held if not inspect.isawaitable(held) else await held:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"still waiting after {seconds} s for {what}")


async def test_a_recovery_queued_behind_an_in_flight_page_leaves_when_the_page_does(
    harness_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    messages: list[str] = []
    posted = False  # the RECOVERY's webhook was answered
    # (claim began after that, rows claimed)
    claims: list[tuple[bool, list[Any]]] = []

    async def victorops(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        messages.append("RECOVERY" if "RECOVERY" in body else "CRITICAL")
        if "CRITICAL" in body:
            await release.wait()  # the page is in flight until the test lets it answer
        return httpx.Response(200, json={"result": "success"})

    with respx.mock() as mock:
        mock.post(host="vo.test").mock(side_effect=victorops)
        async with harness_factory(start_workers=True, fast_path=True, dispatch=SLOW_POLL) as h:
            store = h.services.store
            claim_due = store.claim_due

            def counted(**kwargs: Any) -> Any:
                late = posted
                rows = claim_due(**kwargs)
                claims.append((late, rows))
                return rows

            monkeypatch.setattr(store, "claim_due", counted)
            await h.post_freshdesk(freshdesk_body(90))

            async def page_in_flight() -> bool:
                return messages == ["CRITICAL"]

            await _until(page_in_flight, "the page to be on its way")
            resolved = freshdesk_body(90, status="Resolved", triggered="{status:{from:2,to:4}}")
            assert (await h.post_freshdesk(resolved)).status_code == 202
            posted = True

            async def looked() -> bool:  # the webhook left the RECOVERY to a claim: one came
                return any(late for late, _ in claims)

            await _until(looked, "the dispatcher to look for the RECOVERY")
            assert [rows for late, rows in claims if late] == [[]]  # held behind its page
            assert messages == ["CRITICAL"]
            release.set()

            async def recovered() -> bool:
                effects = (await h.ticket(90))["effects"]
                return [e["status"] for e in effects if e["target"] == "victorops"] == [
                    "sent",
                    "sent",
                ]

            await _until(recovered, "the RECOVERY to follow its page (not the 30 s poll)")
    assert messages == ["CRITICAL", "RECOVERY"]


async def test_the_end_of_a_lone_page_costs_no_claim(
    harness_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[float] = []
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with harness_factory(start_workers=True, fast_path=True, dispatch=SLOW_POLL) as h:
            store = h.services.store
            claim_due = store.claim_due

            def counted(**kwargs: Any) -> Any:
                claims.append(kwargs["now"])
                return claim_due(**kwargs)

            monkeypatch.setattr(store, "claim_due", counted)
            dispatcher = h.dispatcher
            wake = dispatcher.wake
            woken: list[bool] = []

            def recorded_wake() -> None:
                woken.append(True)
                wake()

            monkeypatch.setattr(dispatcher, "wake", recorded_wake)
            # The loop's start-up claim (and, on PostgreSQL, the one on LISTEN) is behind it:
            # a claim asked for now is the next one the loop makes.
            dispatcher.wake()
            await _until(lambda: bool(claims), "the dispatcher's first claim")
            before = len(claims)
            await h.post_freshdesk(freshdesk_body(91))

            async def delivered() -> bool:  # sent, and the delivery's task has ended
                return (
                    bool(route.call_count)
                    and (await h.ticket(91))["effects"][0]["status"] == "sent"
                    and not dispatcher._in_flight
                )

            await _until(delivered, "the page to be sent and its delivery to end")
            if store.is_sqlite:
                # The delivery's end would have woken the loop at once; a claim follows any
                # wake within milliseconds, so 0.2 s of none after the end means none comes.
                await asyncio.sleep(0.2)
                assert len(claims) == before  # sent from the request's task: no claim after
            else:  # another replica may be queueing behind it unseen: always look again
                await _until(lambda: len(claims) > before, "a claim after the delivery's end")
    assert woken == [True]  # the webhook woke nobody: its page was leased, not claimed
