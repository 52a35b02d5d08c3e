"""A ticket keeps the policy it opened under; a changed policy file governs new tickets only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import respx

from tests.conftest import AppHarness, make_settings
from tests.scenarios.harness import Scenario
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.http.app import create_app
from ticketbridge.app.policy import default_policy_text, parse_policy


async def test_policy_reload_with_timers_pending_re_plans_nothing(store: Any, clock: Any) -> None:
    v1 = parse_policy(default_policy_text())
    v2 = parse_policy(
        default_policy_text()
        .replace("version: 1", "version: 2")
        .replace(
            "tier_one: {within: 2h, then: reassign}", "tier_one: {within: 30m, then: reassign}"
        )
    )
    settings = make_settings(
        freshdesk={
            "webhook_secrets": ["fd-secret-do-not-log"],
            "api_url": "https://acme.freshdesk.com",
            "api_key": "k",
        },
    )

    async def run(policy: Any) -> Any:
        services = Services(settings=settings, store=store, policy=policy, clock=clock)
        app = create_app(settings, services=services, start_workers=False)
        return app

    with respx.mock(assert_all_called=False) as mock:
        app = await run(v1)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as client:
                s = Scenario(AppHarness(client, app.state.services, app), clock, mock)
                await s.webhook(1, "Medium")  # opens under version 1: Tier One at 2 h
        clock.advance(timedelta(minutes=10))
        app = await run(v2)  # the file changed; the service restarts with version 2
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as client:
                h = AppHarness(client, app.state.services, app)
                s2 = Scenario(h, clock, mock)
                s2.start = s.start
                await s2.webhook(2, "Medium")  # opens under version 2: Tier One at 30 min
                await s2.webhook(1, "Medium", ticketbridge_event="customer_reply")
                await s2.run_until(timedelta(hours=3))
                first, second = await h.ticket(1), await h.ticket(2)
    assert first["state"]["policy"] == v1.fingerprint
    assert second["state"]["policy"] == v2.fingerprint
    assert [c for c in s2.calls if c[1].startswith("PUT")] == [
        ("40m", 'PUT /tickets/2 {"group_id": 99, "responder_id": null}'),
        ("120m", 'PUT /tickets/1 {"group_id": 99, "responder_id": null}'),
    ]
    sent = [e["key"] for e in first["effects"]]
    assert len(sent) == len(set(sent))
