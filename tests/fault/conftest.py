"""Fixtures for real-process fault tests: a fake VictorOps and ticketbridge child processes.

Both are always stopped when the test ends, pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.victorops import FakeVictorOps
from tests.fault.process import TicketbridgeProcess, service_env


@pytest.fixture
def fake_victorops() -> Iterator[FakeVictorOps]:
    with FakeVictorOps() as vo:
        yield vo


@pytest.fixture
def ticketbridge_process(tmp_path: Path) -> Iterator[Callable[..., TicketbridgeProcess]]:
    """A factory: ``ticketbridge_process(DATABASE_URL=..., ...)`` (names without the
    ``TICKETBRIDGE_`` prefix) returns a stopped process; every one made is stopped at the end."""
    made: list[TicketbridgeProcess] = []

    def make(**settings: str) -> TicketbridgeProcess:
        proc = TicketbridgeProcess(
            env=service_env(tmp_path, **settings),
            log_path=tmp_path / f"ticketbridge-{len(made) + 1}.log",
        )
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()
