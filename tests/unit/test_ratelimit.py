"""RollingWindowLimiter: never more than max_rate calls in any window of time_period."""

from __future__ import annotations

import asyncio

import pytest
from aiolimiter import AsyncLimiter

from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter

PERIOD = 0.2
RATE = 5
CALLS = 15


def peak(times: list[float], period: float) -> int:
    """The most calls that fell in any window of ``period`` seconds."""
    return max(sum(1 for t in times if start <= t < start + period) for start in times)


async def stamped(limiter: RollingWindowLimiter | AsyncLimiter, calls: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        async with limiter:
            times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(calls)))
    return times


async def test_never_more_than_the_budget_in_any_window() -> None:
    times = await stamped(RollingWindowLimiter(RATE, PERIOD), CALLS)
    assert len(times) == CALLS
    assert peak(times, PERIOD) == RATE
    # and no slower than the budget allows: 15 calls at 5 per 0.2 s take two windows
    assert max(times) - min(times) == pytest.approx(2 * PERIOD, abs=0.1)


async def test_a_leaky_bucket_would_exceed_it_after_a_backlog() -> None:
    """Why not aiolimiter: a full bucket goes at once, then refills within the same window."""
    times = await stamped(AsyncLimiter(RATE, PERIOD), CALLS)
    assert peak(times, PERIOD) > RATE


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    limiter = RollingWindowLimiter(1, PERIOD)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not limiter.has_capacity()  # still only the first call in the window
    await asyncio.sleep(PERIOD + 0.02)
    assert limiter.has_capacity()


@pytest.mark.parametrize(("rate", "period"), [(0, 60.0), (1, 0.0)])
def test_bad_budgets_are_refused(rate: int, period: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RollingWindowLimiter(rate, period)
