"""The console served for real: uvicorn in a background thread on 127.0.0.1 (an ephemeral
port), the injected clock, a fake VictorOps, and Debian's Chromium driven by Playwright.

``make test`` installs ``chromium`` with apt when it is missing (the ``console-browser``
prerequisite); a missing browser fails these tests, it never skips them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_settings
from tests.console.server import CHROMIUM, chromium, serving, wait_until
from tests.fakes.victorops import FakeVictorOps
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.rules import Policy

VIEWER_TOKEN = "viewer-token-do-not-log"


class Served:
    """One app served on loopback: its base URL, services, and the fake VictorOps."""

    def __init__(self, url: str, services: Services, vo: FakeVictorOps, app: Any) -> None:
        self.url = url
        self.services = services
        self.vo = vo
        self.app = app

    def post_freshdesk(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/webhooks/freshdesk", json=body, auth=("freshdesk", WEBHOOK_SECRET)
        )


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds (a bounded loop)."""
    try:
        wait_until(condition, timeout=timeout, what=what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def console_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'console.db'}", sqlite_synchronous="OFF")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def serve(
    console_store: Store, clock: FakeClock, policy: Policy
) -> Iterator[Callable[..., Served]]:
    """``serve(**settings)``: the app with its workers on, served until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> Served:
            vo = stack.enter_context(FakeVictorOps())
            values: dict[str, Any] = {
                "viewer_token": VIEWER_TOKEN,
                "victorops": {"rest_url": vo.rest_url()},
                "dispatch": {"backoff_initial": 1.0, "backoff_max": 2.0, "max_attempts": 3},
            }
            values.update(overrides)
            settings = make_settings(**values)
            services = Services(settings=settings, store=console_store, policy=policy, clock=clock)
            app = create_app(settings, services=services, start_workers=True)
            url = stack.enter_context(serving(app))
            return Served(url, services, vo, app)

        yield start


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module-scoped: Playwright's sync API holds an event loop on this thread while the
    # browser is open, which pytest-asyncio's tests elsewhere must not meet.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Any, served: Served, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{served.url}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/ui/")
