"""Through the ASGI app with its lifespan: webhook in, committed, VictorOps called (respx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import VO_URL, freshdesk_body


def sent_bodies(route: respx.Route) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in route.calls]


@pytest.fixture
def vo() -> respx.MockRouter:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        yield mock


async def test_urgent_ticket_pages_victorops_with_a_deterministic_entity_id(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        response = await h.post_freshdesk(freshdesk_body(11, priority="Urgent"))
        assert response.status_code == 202
        assert response.json() == {"outcome": "accepted", "ticket_id": "11", "effects": 1}
        assert await h.dispatcher.drain() == 1
    (body,) = sent_bodies(vo.routes[0])
    assert str(vo.routes[0].calls[0].request.url) == VO_URL
    assert body["message_type"] == "CRITICAL"
    assert body["entity_id"] == "freshdesk/acme/ticket/11"
    assert body["entity_display_name"] == "[Urgent] Freshdesk #11: Checkout fails"
    assert "https://acme.freshdesk.com/helpdesk/tickets/11" in body["state_message"]
    assert body["monitoring_tool"] == "ticketbridge"


@pytest.mark.parametrize("priority", ["Medium", "Low"])
async def test_medium_and_low_never_reach_victorops(
    harness_factory: Any, vo: respx.MockRouter, priority: str
) -> None:
    async with harness_factory() as h:
        for triggered, status in [
            ("{ticket_action:created}", "Open"),
            ("{status:{from:2,to:3}}", "Pending"),
            ("{note_type:public}", "Pending"),
            ("{status:{from:3,to:4}}", "Resolved"),
        ]:
            body = freshdesk_body(5, priority=priority, status=status, triggered=triggered)
            assert (await h.post_freshdesk(body)).status_code == 202
        await h.dispatcher.drain()
        view = await h.ticket(5)
    assert vo.calls.call_count == 0
    assert [e["target"] for e in view["effects"]] == ["github"]  # only the write-up issue


async def test_resolution_sends_recovery_on_the_same_entity_id(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(7, priority="High"))
        await h.post_freshdesk(
            freshdesk_body(
                7, priority="High", status="Resolved", triggered="{status:{from:2,to:4}}"
            )
        )
        await h.dispatcher.drain()
        view = await h.ticket(7)
    bodies = sent_bodies(vo.routes[0])
    assert [b["message_type"] for b in bodies] == ["CRITICAL", "RECOVERY"]
    assert {b["entity_id"] for b in bodies} == {"freshdesk/acme/ticket/7"}
    paging = [e for e in view["effects"] if e["target"] == "victorops"]
    assert [e["status"] for e in paging] == ["sent", "sent"]
    assert view["state"]["incident_open"] is False


async def test_downgrade_recovers_and_upgrade_pages_again(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(8, priority="Low"))
        await h.post_freshdesk(
            freshdesk_body(8, priority="Urgent", triggered="{priority:{from:1,to:4}}")
        )
        await h.post_freshdesk(
            freshdesk_body(8, priority="Medium", triggered="{priority:{from:4,to:2}}")
        )
        await h.post_freshdesk(
            freshdesk_body(8, priority="High", triggered="{priority:{from:2,to:3}}")
        )
        await h.dispatcher.drain()
        view = await h.ticket(8)
    assert [b["message_type"] for b in sent_bodies(vo.routes[0])] == [
        "CRITICAL",
        "RECOVERY",
        "CRITICAL",
    ]
    assert [e["key"] for e in view["effects"]] == [
        "victorops:freshdesk/8:page:1",
        "victorops:freshdesk/8:recover:1",
        "victorops:freshdesk/8:page:2",
    ]


async def test_redeliveries_answer_2xx_and_page_once(
    harness_factory: Any, vo: respx.MockRouter, clock: Any
) -> None:
    body = freshdesk_body(12, priority="Urgent")
    async with harness_factory() as h:
        first = await h.post_freshdesk(body)
        answers = []
        for minutes in (5, 30, 60):  # Freshdesk's +5 / +35 / +95 min redeliveries
            clock.advance(minutes * 60)
            answers.append(await h.post_freshdesk(body))
        await h.dispatcher.drain()
        view = await h.ticket(12)
    assert first.status_code == 202
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [(200, "duplicate")] * 3
    assert vo.calls.call_count == 1
    assert len(view["effects"]) == 1
    assert h.services.store.count("inbox") == 1


async def test_a_stale_event_changes_nothing(harness_factory: Any, vo: respx.MockRouter) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(9, ticket_updated_at="2026-11-26T10:00:00Z"))
        resolved = freshdesk_body(
            9,
            status="Resolved",
            triggered="{status:{from:2,to:4}}",
            ticket_updated_at="2026-11-26T10:30:00Z",
        )
        await h.post_freshdesk(resolved)
        # A deferred delivery of an earlier "Urgent, Open" update arrives last.
        stale = freshdesk_body(
            9, triggered="{priority:{from:3,to:4}}", ticket_updated_at="2026-11-26T10:10:00Z"
        )
        response = await h.post_freshdesk(stale)
        await h.dispatcher.drain()
        view = await h.ticket(9)
    assert response.status_code == 202
    assert response.json()["outcome"] == "stale"
    assert view["state"]["status"] == "resolved"
    assert [b["message_type"] for b in sent_bodies(vo.routes[0])] == ["CRITICAL", "RECOVERY"]
    assert any(entry["kind"] == "stale" for entry in view["timeline"])


async def test_without_a_victorops_url_effects_are_recorded_as_skipped(
    harness_factory: Any,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        async with harness_factory(victorops={}) as h:
            await h.post_freshdesk(freshdesk_body(3, priority="High"))
            await h.dispatcher.drain()
            view = await h.ticket(3)
        assert mock.calls.call_count == 0
    (effect,) = view["effects"]
    assert effect["status"] == "skipped"
    assert effect["last_error"] == "target not configured"


async def test_the_ticket_view_shows_timeline_policy_and_effect_status(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(21, priority="Urgent"))
        await h.dispatcher.drain()
        view = await h.ticket(21)
    assert view["state"]["priority"] == "urgent"
    assert view["state"]["status_label"] == "Open"
    kinds = [entry["kind"] for entry in view["timeline"]]
    assert kinds == ["received", "opened", "decided"]
    assert view["timeline"][1]["detail"]["policy"] == h.services.policy.fingerprint
    (effect,) = view["effects"]
    assert effect["status"] == "sent"
    assert effect["attempts"] == 1
    assert effect["last_response_code"] == 200
    assert effect["reason"] == "Urgent ticket opened: pages VictorOps"


async def test_custom_status_labels_are_kept(harness_factory: Any, vo: respx.MockRouter) -> None:
    async with harness_factory() as h:
        body = freshdesk_body(
            31, priority="High", status="Waiting on Customer", triggered="{status:{from:2,to:6}}"
        )
        await h.post_freshdesk(body)
        view = await h.ticket(31)
    assert view["state"]["status_label"] == "Waiting on Customer"
    assert view["state"]["status"] == "open"


async def test_the_same_webhook_five_times_at_once_is_stored_and_paged_once(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    import asyncio

    body = freshdesk_body(13, priority="Urgent")
    async with harness_factory() as h:
        answers = await asyncio.gather(*(h.post_freshdesk(body) for _ in range(5)))
        await h.dispatcher.drain()
        view = await h.ticket(13)
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["accepted"] + ["duplicate"] * 4
    assert all(a.status_code in (200, 202) for a in answers)
    assert h.services.store.count("inbox") == 1
    assert len(view["effects"]) == 1
    assert vo.calls.call_count == 1
