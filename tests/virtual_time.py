"""An event loop whose clock is virtual: when nothing is ready to run and a timer is pending,
it jumps to that timer instead of sleeping. Code that times itself with the loop's clock
(``loop.time()``, ``asyncio.sleep``) then runs on an injected clock: exact and instant.

Work in threads still takes real time, but the virtual clock does not move for it unless a
timer is pending meanwhile; tests using threads keep timers out of those spans.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:  # no timer pending: wait for I/O or a thread, in real time
            return super().select(None)
        ready = super().select(0)
        if not ready:
            self._loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def on_virtual_time(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a new VirtualTimeLoop."""

    async def run() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(run())
