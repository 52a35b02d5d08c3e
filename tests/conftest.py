"""Shared fixtures: a policy, a fake clock, a migrated SQLite store, the app with its lifespan."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from ticketbridge.adapters.store.sql import Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.main import create_app
from ticketbridge.app.policy import load_policy
from ticketbridge.app.settings import Settings
from ticketbridge.rules import Policy

# The machine is shared and noisy: no per-example deadline, a fixed example budget.
hypothesis_settings.register_profile("ticketbridge", deadline=None, max_examples=200)
hypothesis_settings.load_profile("ticketbridge")

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "fd-secret-do-not-log"
ADMIN_TOKEN = "admin-token-do-not-log"
VO_API_KEY = "vo-api-key-do-not-log"
VO_ROUTING_KEY = "vo-routing-key-do-not-log"
VO_URL = f"https://vo.test/integrations/generic/20131114/alert/{VO_API_KEY}/{VO_ROUTING_KEY}"


@pytest.fixture
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'tb.db'}", sqlite_synchronous="NORMAL")
    s.migrate()
    yield s
    s.close()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite:///unused.db",
        "admin_token": ADMIN_TOKEN,
        "freshdesk": {"webhook_secrets": [WEBHOOK_SECRET, "rotated-second-secret"]},
        "victorops": {"rest_url": VO_URL},
        "dispatch": {"backoff_initial": 1.0, "backoff_max": 60.0, "max_attempts": 4},
    }
    values.update(overrides)
    return Settings.model_validate(values)


def freshdesk_body(
    ticket_id: str | int = 11,
    *,
    priority: str = "Urgent",
    status: str = "Open",
    triggered: str = "{ticket_action:created}",
    **extra: str,
) -> dict[str, Any]:
    inner = {
        "triggered_event": triggered,
        "ticket_id": str(ticket_id),
        "ticket_url": f"https://acme.freshdesk.com/helpdesk/tickets/{ticket_id}",
        "ticket_type": "Incident",
        "ticket_subject": "Checkout fails",
        "ticket_status": status,
        "ticket_priority": priority,
        **extra,
    }
    return {"freshdesk_webhook": inner}


class AppHarness:
    """The app running with its lifespan, an ASGI client, and the services behind it."""

    def __init__(self, client: httpx.AsyncClient, services: Services, app: Any) -> None:
        self.client = client
        self.services = services
        self.app = app

    @property
    def dispatcher(self) -> Any:
        return self.app.state.dispatcher

    async def post_freshdesk(
        self, body: Any, *, secret: str = WEBHOOK_SECRET, **kwargs: Any
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return await self.client.post(
            "/webhooks/freshdesk",
            content=content,
            headers=headers,
            auth=("freshdesk", secret),
            **kwargs,
        )

    async def ticket(self, ticket_id: str | int, source: str = "freshdesk") -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/tickets/{source}/{ticket_id}",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
def harness_factory(store: Store, clock: FakeClock, policy: Policy) -> Callable[..., Any]:
    """``async with harness_factory(**settings) as h``: app + lifespan, workers off."""
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(
        *, start_workers: bool = False, fast_path: bool = False, **overrides: Any
    ) -> AsyncIterator[AppHarness]:
        settings = make_settings(**overrides)
        services = Services(settings=settings, store=store, policy=policy, clock=clock)
        services.fast_path = fast_path  # off: tests drive the dispatcher step by step
        app = create_app(settings, services=services, start_workers=start_workers)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as client:
                yield AppHarness(client, services, app)

    return factory
