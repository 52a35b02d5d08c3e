"""A backlog left by an outage drains within the target's rate budget.

Freshdesk is down (503) while 60 private notes come due: each is tried once and waits to
retry. Freshdesk comes back; the dispatcher drains the backlog through the Freshdesk API's
rolling-window budget, scaled down from 20 calls a minute to 20 calls a second so the test
takes seconds, not minutes. Figure: ``backlog: 60 notes drained in <s> s, peak rate <p> per
window (budget 20)``. Every note is delivered once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import respx

from ticketbridge.adapters.outbound.freshdesk import FreshdeskApi

FD = "https://acme.freshdesk.com"
BUDGET = 20
WINDOW = 1.0
BACKLOG = 60


def peak(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


async def test_a_backlog_drains_within_the_rate_budget(
    harness_factory: Any, clock: Any, store: Any
) -> None:
    arrivals: list[tuple[float, str]] = []
    up = False

    def freshdesk(request: httpx.Request) -> httpx.Response:
        if not up:
            return httpx.Response(503)
        arrivals.append((time.monotonic(), request.url.path))
        return httpx.Response(201, json={"id": len(arrivals)})

    with respx.mock() as mock:
        mock.post(host="acme.freshdesk.com").mock(side_effect=freshdesk)
        async with httpx.AsyncClient() as client:
            api = FreshdeskApi(
                api_url=FD,
                api_key="k",
                client=client,
                calls_per_minute=BUDGET,
                budget_window=WINDOW,
            )
            async with harness_factory(
                dispatch={"batch_size": 100, "concurrency_per_target": 8, "max_attempts": 5}
            ) as h:
                h.services.senders["freshdesk"] = api
                with store.unit_of_work() as uow:
                    uow.enqueue(
                        [
                            {
                                "key": f"freshdesk:freshdesk/{n}:note:backlog",
                                "target": "freshdesk",
                                "kind": "note",
                                "source": "freshdesk",
                                "ticket_id": str(n),
                                "payload": {"action": "note", "ticket_id": str(n), "body": "x"},
                                "reason": "backlog test",
                            }
                            for n in range(1, BACKLOG + 1)
                        ],
                        at=clock.now().timestamp(),
                    )
                assert await h.dispatcher.run_once() == BACKLOG  # the outage: all retrying
                assert arrivals == []
                up = True
                clock.advance(600)  # past every backoff
                started = time.monotonic()
                for _ in range(5):
                    if await h.dispatcher.drain() == 0:
                        break
                drained = time.monotonic() - started
    times = [at for at, _ in arrivals]
    delivered = Counter(path for _, path in arrivals)
    worst = peak(times, WINDOW)
    print(
        f"\nbacklog: {len(delivered)} notes drained in {drained:.2f} s, "
        f"peak rate {worst} per {WINDOW:g} s window (budget {BUDGET})"
    )
    assert len(delivered) == BACKLOG
    assert set(delivered.values()) == {1}  # each once
    assert worst <= BUDGET
    # The budget is what paces it: 60 calls at 20 per window need two windows more.
    assert drained >= 2 * WINDOW - 0.1
