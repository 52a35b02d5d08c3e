"""The simulation and the running service agree: the same ticket life, once as webhooks through
the ASGI app with its scheduler on a stepped clock, once as a timeline, gives the same effects
at the same times for the same reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import freshdesk_body
from ticketbridge.app.simulation.simulate import simulate, summarise
from ticketbridge.app.simulation.timeline import Timeline, format_offset

URL = "https://acme.freshdesk.com/helpdesk/tickets/11"
STEPS = 1000  # due times ``run_until`` steps through before it fails


async def run_until(h: Any, clock: Any, end: datetime) -> None:
    """Fire every timer due up to ``end``, stepping the clock from due time to due time."""
    store = h.services.store
    for _ in range(STEPS):
        due = store.next_timer_due()
        if due is None or due > end.timestamp():
            break
        clock.set(max(clock.now(), datetime.fromtimestamp(due, UTC)))
        await h.app.state.scheduler.run_once()
    else:
        pytest.fail(f"more than {STEPS} due times before {end}")
    clock.set(end)


async def test_the_simulation_matches_the_service_effect_for_effect(
    harness_factory: Any, clock: Any
) -> None:
    start: datetime = clock.now()

    def at(minutes: int) -> datetime:
        return start + timedelta(minutes=minutes)

    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(11, priority="Urgent"))
        await run_until(h, clock, at(20))
        await h.post_freshdesk(
            freshdesk_body(11, priority="Urgent", triggered="", ticketbridge_event="agent_reply")
        )
        await run_until(h, clock, at(120))
        await h.post_freshdesk(
            freshdesk_body(11, priority="Urgent", status="Pending", triggered="{status:{to:3}}")
        )
        await run_until(h, clock, at(5 * 24 * 60))
        served = (await h.ticket(11))["effects"]
    timeline = Timeline.model_validate(
        {
            "source": "freshdesk",
            "ticket_id": "11",
            "url": URL,
            "domain": "acme",
            "subject": "Checkout fails",
            "start": start,
            "events": [
                {"at": "0m", "event": "created", "priority": "urgent", "status": "open"},
                {"at": "20m", "event": "agent_reply"},
                {"at": "2h", "status": "pending"},
            ],
        }
    )
    simulated = simulate(timeline, h.services.policy)
    assert simulated.stopped == "quiet"
    expected = [
        (
            format_offset(datetime.fromisoformat(e["created_at"]) - start),
            e["target"],
            e["kind"],
            e["key"],
            e["reason"],
            summarise(e["payload"]),
        )
        for e in served
    ]
    actual = [(e.offset, e.target, e.kind, e.key, e.reason, e.summary) for e in simulated.effects]
    assert actual == expected
    assert [x[:3] for x in actual] == [
        ("0m", "victorops", "page"),
        ("30m", "victorops_bridge", "bridge"),
        ("1h20m", "freshdesk", "note"),
        ("1h20m", "victorops", "info"),
        ("3d2h", "freshdesk", "note"),
        ("3d2h", "freshdesk", "close"),
    ]
