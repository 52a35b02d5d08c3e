"""Event-loop helpers for rate-limiter tests: no test waits on the wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


async def settle() -> None:
    """Let every ready task run (a yield to the event loop; no wall-clock wait)."""
    for _ in range(50):
        await asyncio.sleep(0)


@contextmanager
def loop_clock_advanced(seconds: float) -> Iterator[None]:
    """Move the running loop's clock (what limiters and call_at read) forward, instantly."""
    loop = asyncio.get_running_loop()
    real_time = loop.time
    loop.time = lambda: real_time() + seconds  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.time
