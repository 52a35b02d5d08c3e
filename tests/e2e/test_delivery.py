"""Retries, Retry-After, dead letters and restarts, stepping the injected clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from tests.conftest import freshdesk_body


async def test_5xx_then_success_retries_with_backoff_and_ends_sent(
    harness_factory: Any, clock: Any
) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(
            side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(200)]
        )
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(40))
            assert await h.dispatcher.run_once() == 1
            effect = (await h.ticket(40))["effects"][0]
            assert (effect["status"], effect["attempts"], effect["last_response_code"]) == (
                "retrying",
                1,
                503,
            )
            assert await h.dispatcher.run_once() == 0  # not due yet: backoff holds it
            clock.advance(5)
            await h.dispatcher.run_once()
            clock.advance(10)
            await h.dispatcher.run_once()
            effect = (await h.ticket(40))["effects"][0]
    assert route.call_count == 3
    assert (effect["status"], effect["attempts"], effect["last_response_code"]) == ("sent", 3, 200)


@pytest.mark.parametrize(
    "retry_after", ["120", "Thu, 26 Nov 2026 12:02:00 GMT"], ids=["seconds", "http-date"]
)
async def test_429_is_never_retried_before_retry_after(
    harness_factory: Any, clock: Any, retry_after: str
) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(
            side_effect=[
                httpx.Response(
                    429,
                    headers={"Retry-After": retry_after, "Date": "Thu, 26 Nov 2026 12:00:00 GMT"},
                ),
                httpx.Response(200),
            ]
        )
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(41))
            await h.dispatcher.run_once()
            clock.advance(119)
            assert await h.dispatcher.run_once() == 0
            clock.advance(1)
            assert await h.dispatcher.run_once() == 1
            effect = (await h.ticket(41))["effects"][0]
    assert route.call_count == 2
    assert effect["status"] == "sent"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
async def test_final_4xx_goes_dead_at_once(harness_factory: Any, clock: Any, code: int) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(code))
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(42))
            await h.dispatcher.run_once()
            clock.advance(3600)
            assert await h.dispatcher.run_once() == 0
            effect = (await h.ticket(42))["effects"][0]
    assert route.call_count == 1
    assert (effect["status"], effect["attempts"], effect["last_response_code"]) == ("dead", 1, code)


async def test_after_the_retry_budget_the_effect_is_dead_and_visible(
    harness_factory: Any, clock: Any
) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(side_effect=httpx.ConnectError("refused"))
        async with harness_factory() as h:  # max_attempts=4 in the test settings
            await h.post_freshdesk(freshdesk_body(43))
            for _ in range(10):
                await h.dispatcher.run_once()
                clock.advance(120)
            effect = (await h.ticket(43))["effects"][0]
    assert route.call_count == 4
    assert effect["status"] == "dead"
    assert effect["last_error"] == "victorops unreachable: ConnectError"


async def test_one_failing_effect_does_not_hold_up_the_others(
    harness_factory: Any, clock: Any
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if b"ticket/666" in request.content else 200)

    good = range(100, 200)
    with respx.mock() as mock:
        mock.post(host="vo.test").mock(side_effect=answer)
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(666))  # the poison goes first
            for tid in good:
                await h.post_freshdesk(freshdesk_body(tid))
            await h.dispatcher.drain()  # at one instant of the clock: nothing waits on it
            statuses = [(await h.ticket(t))["effects"][0]["status"] for t in good]
            poison = (await h.ticket(666))["effects"][0]["status"]
    on_time = statuses.count("sent")
    print(f"poison isolation: {on_time}/{len(good)} on time, the poison {poison}")
    assert on_time == len(good)
    assert poison == "retrying"


async def test_a_restart_resumes_pending_effects(harness_factory: Any) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(50))
            await h.post_freshdesk(freshdesk_body(51))
            # The process stops before the dispatcher runs (workers are off in this harness).
        assert route.call_count == 0
        async with harness_factory() as h:
            assert await h.dispatcher.drain() == 2
    assert route.call_count == 2


async def test_the_background_dispatcher_sends_without_being_asked(
    harness_factory: Any,
) -> None:
    import asyncio

    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with harness_factory(start_workers=True) as h:
            await h.post_freshdesk(freshdesk_body(60))
            for _ in range(200):  # woken by the commit; bounded wait for the call
                if route.call_count:
                    break
                await asyncio.sleep(0.01)
    assert route.call_count == 1


async def test_a_committed_page_leaves_at_once_without_a_claim(harness_factory: Any) -> None:
    import asyncio

    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with harness_factory(fast_path=True) as h:
            await h.post_freshdesk(freshdesk_body(70))
            for _ in range(200):  # the request's own task sends it; bounded wait
                if route.call_count:
                    break
                await asyncio.sleep(0.01)
            for _ in range(200):
                effect = (await h.ticket(70))["effects"][0]
                if effect["status"] == "sent":
                    break
                await asyncio.sleep(0.01)
            assert await h.dispatcher.run_once() == 0  # nothing left for a claim
    assert route.call_count == 1
    assert (effect["status"], effect["attempts"]) == ("sent", 1)


async def test_a_recovery_behind_an_open_page_is_not_fast_pathed(
    harness_factory: Any, clock: Any
) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(
            side_effect=[httpx.Response(503), httpx.Response(200), httpx.Response(200)]
        )
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(71))
            await h.dispatcher.run_once()  # the page fails once: retrying
        async with harness_factory(fast_path=True) as h:
            resolved = freshdesk_body(71, status="Resolved", triggered="{status:{from:2,to:4}}")
            response = await h.post_freshdesk(resolved)
            assert response.json()["effects"] == 2  # the RECOVERY and the write-up issue
            assert route.call_count == 1  # the RECOVERY waits behind the page
            clock.advance(60)
            await h.dispatcher.drain()
    bodies = [call.request.content for call in route.calls]
    assert [b"CRITICAL" in b for b in bodies] == [True, True, False]
    assert b"RECOVERY" in bodies[2]
