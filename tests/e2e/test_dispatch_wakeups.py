"""When the background dispatcher looks for work after a delivery ends: only when the delivery
left something to claim (an effect queued behind it), never for a lone page (on SQLite, where
the finishing transaction sees every write; on PostgreSQL it always looks again)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import freshdesk_body

# A poll far longer than any wait below: what the tests see comes from wake-ups alone.
SLOW_POLL = {"poll_seconds": 30.0, "backoff_initial": 1.0, "backoff_max": 60.0}


async def _until(condition: Any, what: str, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"still waiting after {seconds} s for {what}")


async def test_a_recovery_queued_behind_an_in_flight_page_leaves_when_the_page_does(
    harness_factory: Any,
) -> None:
    release = asyncio.Event()
    messages: list[str] = []

    async def victorops(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        messages.append("RECOVERY" if "RECOVERY" in body else "CRITICAL")
        if "CRITICAL" in body:
            await release.wait()  # the page is in flight until the test lets it answer
        return httpx.Response(200, json={"result": "success"})

    with respx.mock() as mock:
        mock.post(host="vo.test").mock(side_effect=victorops)
        async with harness_factory(start_workers=True, fast_path=True, dispatch=SLOW_POLL) as h:
            await h.post_freshdesk(freshdesk_body(90))

            async def page_in_flight() -> bool:
                return messages == ["CRITICAL"]

            await _until(page_in_flight, "the page to be on its way")
            resolved = freshdesk_body(90, status="Resolved", triggered="{status:{from:2,to:4}}")
            assert (await h.post_freshdesk(resolved)).status_code == 202
            await asyncio.sleep(0.2)
            assert messages == ["CRITICAL"]  # the RECOVERY waits behind its page
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
            await asyncio.sleep(0.1)  # the loop's first claim (at start) is behind it
            before = len(claims)
            await h.post_freshdesk(freshdesk_body(91))

            async def sent() -> bool:
                return (
                    bool(route.call_count)
                    and (await h.ticket(91))["effects"][0]["status"] == "sent"
                )

            await _until(sent, "the page to be sent")
            await asyncio.sleep(0.2)
            if store.is_sqlite:
                assert len(claims) == before  # sent from the request's task: no claim after
            else:  # another replica may be queueing behind it unseen: always look again
                assert len(claims) > before
