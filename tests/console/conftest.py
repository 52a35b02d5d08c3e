"""The console served for real: uvicorn in a background thread on 127.0.0.1 (an ephemeral
port), the injected clock, a fake VictorOps, and Debian's Chromium driven by Playwright.

``make test`` installs ``chromium`` with apt when it is missing (the ``console-browser``
prerequisite); a missing browser fails these tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_settings
from tests.fakes.victorops import FakeVictorOps
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.rules import Policy

VIEWER_TOKEN = "viewer-token-do-not-log"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


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
    running: list[tuple[uvicorn.Server, threading.Thread, FakeVictorOps]] = []

    def start(**overrides: Any) -> Served:
        vo = FakeVictorOps()
        vo.__enter__()
        values: dict[str, Any] = {
            "viewer_token": VIEWER_TOKEN,
            "victorops": {"rest_url": vo.rest_url()},
            "dispatch": {"backoff_initial": 1.0, "backoff_max": 2.0, "max_attempts": 3},
        }
        values.update(overrides)
        settings = make_settings(**values)
        services = Services(settings=settings, store=console_store, policy=policy, clock=clock)
        app = create_app(settings, services=services, start_workers=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
        )
        thread.start()
        running.append((server, thread, vo))
        wait_for(lambda: server.started, what="the server to start")
        return Served(f"http://127.0.0.1:{port}", services, vo, app)

    yield start
    for server, thread, vo in running:
        server.should_exit = True
        thread.join(timeout=30)
        vo.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # ``launch`` gives the browser a fresh, temporary user-data-dir of its own each time.
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


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
