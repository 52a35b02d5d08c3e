"""RollingWindowLimiter: never more than max_rate calls in any window of time_period.

Every test runs on a virtual-time loop (the limiter's clock is the loop's): each call's time
is exact and a test takes no wall-clock time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.virtual_time import on_virtual_time
from ticketbridge.adapters.outbound.ratelimit import MARGIN, RollingWindowLimiter

PERIOD = 0.2
HOLD = PERIOD * (1 + MARGIN)  # how long one call holds its slot
RATE = 5
CALLS = 15


def peak(times: list[float], period: float) -> int:
    """The most calls that fell in any window of ``period`` seconds."""
    return max(sum(1 for t in times if start <= t < start + period) for start in times)


async def stamped(limiter: RollingWindowLimiter, calls: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        async with limiter:
            times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(calls)))
    return times


def test_never_more_than_the_budget_in_any_window_and_no_slower_than_it_allows() -> None:
    times = on_virtual_time(lambda: stamped(RollingWindowLimiter(RATE, PERIOD), CALLS))
    assert peak(times, PERIOD) == RATE
    # 15 calls at 5 per window: five at once, five when the first slots free, five more after
    assert times == pytest.approx([0.0] * RATE + [HOLD] * RATE + [2 * HOLD] * RATE)


def test_after_a_backlog_the_next_window_still_gets_only_the_budget() -> None:
    """What a leaky bucket gets wrong: its refilled bucket goes within the same window."""

    async def main() -> list[float]:
        limiter = RollingWindowLimiter(RATE, PERIOD)
        await stamped(limiter, RATE)  # a full window at t=0
        await asyncio.sleep(PERIOD / 2)
        return await stamped(limiter, 2 * RATE)  # the backlog arrives mid-window

    times = on_virtual_time(main)
    assert times == pytest.approx([HOLD] * RATE + [2 * HOLD] * RATE)


def test_a_slot_frees_one_window_plus_the_margin_after_its_call() -> None:
    async def main() -> list[bool]:
        limiter = RollingWindowLimiter(1, PERIOD)
        await limiter.acquire()
        seen = [limiter.has_capacity()]
        await asyncio.sleep(PERIOD)  # one window: the vendor may not have counted it out yet
        seen.append(limiter.has_capacity())
        await asyncio.sleep(HOLD - PERIOD)
        seen.append(limiter.has_capacity())
        return seen

    assert on_virtual_time(main) == [False, False, True]


def test_waiters_are_served_in_arrival_order() -> None:
    async def main() -> list[int]:
        limiter = RollingWindowLimiter(1, PERIOD)
        order: list[int] = []

        async def one(n: int) -> None:
            async with limiter:
                order.append(n)

        await asyncio.gather(*(one(n) for n in range(6)))
        return order

    assert on_virtual_time(main) == list(range(6))


def test_a_cancelled_waiter_takes_no_slot() -> None:
    async def main() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        limiter = RollingWindowLimiter(1, PERIOD)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        after_cancel = limiter.has_capacity()  # still only the first call in the window
        await asyncio.sleep(HOLD)
        freed = limiter.has_capacity()
        await limiter.acquire()  # the freed slot is the next caller's, at once
        return after_cancel, freed, loop.time()

    assert on_virtual_time(main) == (False, True, pytest.approx(HOLD))


@pytest.mark.parametrize(("rate", "period"), [(0, 60.0), (1, 0.0)])
def test_bad_budgets_are_refused(rate: int, period: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RollingWindowLimiter(rate, period)
