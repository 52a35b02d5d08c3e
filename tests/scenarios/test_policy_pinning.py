"""A ticket keeps the policy it opened under; a changed policy file governs new tickets only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import respx

from tests.conftest import AppHarness, make_settings
from tests.scenarios.harness import Scenario
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.http.app import create_app
from ticketbridge.app.policy_file import default_policy_text, parse_policy
from ticketbridge.rules import Policy

SETTINGS = make_settings(
    freshdesk={
        "webhook_secrets": ["fd-secret-do-not-log"],
        "api_url": "https://acme.freshdesk.com",
        "api_key": "k",
    },
)


def version_two(old: str, new: str) -> Policy:
    """The built-in policy as version 2, with one line of it changed."""
    text = default_policy_text()
    assert old in text
    return parse_policy(text.replace("version: 1", "version: 2").replace(old, new))


@asynccontextmanager
async def serving(store: Any, clock: Any, policy: Policy) -> AsyncIterator[AppHarness]:
    """The service started on ``store`` with ``policy`` in force, as after a restart."""
    services = Services(settings=SETTINGS, store=store, policy=policy, clock=clock)
    app = create_app(SETTINGS, services=services, start_workers=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as client:
            yield AppHarness(client, app.state.services, app)


def reassignments(s: Scenario) -> list[tuple[str, str]]:
    return [c for c in s.calls if c[1].startswith("PUT")]


async def test_policy_reload_with_timers_pending_re_plans_nothing(store: Any, clock: Any) -> None:
    v1 = parse_policy(default_policy_text())
    v2 = version_two(
        "tier_one: {within: 2h, then: reassign}", "tier_one: {within: 30m, then: reassign}"
    )
    with respx.mock(assert_all_called=False) as mock:
        async with serving(store, clock, v1) as h:
            s = Scenario(h, clock, mock)
            await s.webhook(1, "Medium")  # opens under version 1: Tier One at 2 h
        clock.advance(timedelta(minutes=10))
        async with serving(store, clock, v2) as h:  # the file changed; restarted with v2
            s2 = Scenario(h, clock, mock)
            s2.start = s.start
            await s2.webhook(2, "Medium")  # opens under version 2: Tier One at 30 min
            await s2.webhook(1, "Medium", ticketbridge_event="customer_reply")
            await s2.run_until(timedelta(hours=3))
            first, second = await h.ticket(1), await h.ticket(2)
    assert first["state"]["policy"] == v1.fingerprint
    assert second["state"]["policy"] == v2.fingerprint
    assert reassignments(s2) == [
        ("40m", 'PUT /tickets/2 {"group_id": 99, "responder_id": null}'),
        ("120m", 'PUT /tickets/1 {"group_id": 99, "responder_id": null}'),
    ]
    sent = [e["key"] for e in first["effects"]]
    assert len(sent) == len(set(sent))


async def test_a_pinned_ticket_re_triaged_after_a_reload_gets_its_old_policys_windows(
    store: Any, clock: Any
) -> None:
    # Version 2 shortens Low's Tier-One window from 4 h to 15 min. Ticket 1 opened Medium under
    # version 1 and becomes Low after the reload: its timers are re-planned, and must be planned
    # with version 1's Low window (reassign at 4 h), not version 2's (15 min, already past).
    v1 = parse_policy(default_policy_text())
    v2 = version_two(
        "tier_one: {within: 4h, then: reassign}", "tier_one: {within: 15m, then: reassign}"
    )
    with respx.mock(assert_all_called=False) as mock:
        async with serving(store, clock, v1) as h:
            s = Scenario(h, clock, mock)
            await s.webhook(1, "Medium")
        clock.advance(timedelta(minutes=10))
        async with serving(store, clock, v2) as h:
            s2 = Scenario(h, clock, mock)
            s2.start = s.start
            await s2.webhook(1, "Low")  # re-triaged after the reload: still version 1
            await s2.webhook(2, "Low")  # a new ticket: version 2, Tier One at 15 min
            await s2.run_until(timedelta(hours=5))
            first, second = await h.ticket(1), await h.ticket(2)
    assert first["state"]["policy"] == v1.fingerprint
    assert first["state"]["priority"] == second["state"]["priority"]
    assert second["state"]["policy"] == v2.fingerprint
    assert reassignments(s2) == [
        ("25m", 'PUT /tickets/2 {"group_id": 99, "responder_id": null}'),
        ("240m", 'PUT /tickets/1 {"group_id": 99, "responder_id": null}'),
    ]
