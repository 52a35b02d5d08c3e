"""The procedure's helpdesk actions on a Zendesk ticket go through the Zendesk API: the Tier-One
hand-over (group "DDEV Live Support", agent unassigned, one PUT), private notes, the re-read
before an action, and the Pending auto-close — on a virtual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.e2e.test_signed_sources import ZD_SECRET, zendesk_body, zendesk_headers
from tests.scenarios.harness import ROUNDS, STEPS

ZD = "https://acme.zendesk.com"
H = timedelta(hours=1)
STATUS = {"Open": "open", "Pending": "pending", "Solved": "solved"}


class ZendeskWorld:
    def __init__(self, h: Any, clock: Any) -> None:
        self.h = h
        self.clock = clock
        self.start = clock.now()
        self.tickets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def api(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/v2/groups"):
            return httpx.Response(
                200, json={"groups": [{"id": 77, "name": "DDEV Live Support"}], "next_page": None}
            )
        ticket_id = path.rsplit("/", 1)[1].removesuffix(".json")
        ticket = self.tickets[ticket_id]
        if request.method == "GET":
            return httpx.Response(200, json={"ticket": ticket})
        update = json.loads(request.content)["ticket"]
        self.calls.append((ticket_id, update))
        ticket.update({k: v for k, v in update.items() if k != "comment"})
        return httpx.Response(200, json={"ticket": ticket, "audit": {"id": 1}})

    async def webhook(self, ticket_id: int, priority: str, status: str, event: str) -> None:
        self.tickets[str(ticket_id)] = {
            "id": ticket_id,
            "priority": priority.lower(),
            "status": STATUS[status],
            "group_id": 5,
            "assignee_id": 9,
            "updated_at": "2026-11-26T12:00:00Z",
        }
        raw = json.dumps(
            zendesk_body(ticket_id, priority=priority, status=status, event=event)
        ).encode()
        response = await self.h.client.post(
            "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw, self.clock)
        )
        assert response.status_code == 202, response.text
        await self.settle()

    async def settle(self) -> None:
        for _ in range(ROUNDS):
            run = await self.h.app.state.scheduler.run_once()
            sent = await self.h.dispatcher.drain()
            if not run.fired and not sent:
                return
        pytest.fail(f"still firing or sending after {ROUNDS} rounds")

    async def run_until(self, offset: timedelta) -> None:
        end = self.start + offset
        store = self.h.services.store
        for _ in range(STEPS):
            await self.settle()
            due = store.next_timer_due()
            if due is None or due > end.timestamp():
                break
            self.clock.set(max(self.clock.now(), self.clock.now().fromtimestamp(due, end.tzinfo)))
        else:
            pytest.fail(f"more than {STEPS} due times before {offset}")
        self.clock.set(end)
        await self.settle()


@pytest.fixture
async def world(harness_factory: Any, clock: Any) -> AsyncIterator[ZendeskWorld]:
    with respx.mock(assert_all_called=False) as mock:
        async with harness_factory(
            zendesk={
                "webhook_secrets": [ZD_SECRET],
                "api_url": ZD,
                "api_email": "bot@acme.example",
                "api_token": "zd-token-do-not-log",
            },
        ) as h:
            w = ZendeskWorld(h, clock)
            mock.route(host="acme.zendesk.com").mock(side_effect=w.api)
            mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={}))
            yield w


async def test_tier_one_hands_a_low_zendesk_ticket_to_live_support(world: ZendeskWorld) -> None:
    await world.webhook(5, "Low", "Open", "created")
    await world.run_until(4 * H + timedelta(minutes=1))  # Low: Tier-One window 4 h
    updates = [u for t, u in world.calls if t == "5"]
    assert {"group_id": 77, "assignee_id": None} in updates  # one PUT: group and unassign
    notes = [u["comment"] for u in updates if "comment" in u]
    assert [n["public"] for n in notes] == [False]
    assert "DDEV Live Support" in notes[0]["html_body"]
    view = await world.h.ticket(5, source="zendesk")
    assert {e["kind"]: e["status"] for e in view["effects"]} == {
        "reassign": "sent",
        "note": "sent",
    }


async def test_a_pending_zendesk_ticket_is_solved_after_72_hours(world: ZendeskWorld) -> None:
    await world.webhook(6, "Normal", "Open", "created")
    await world.webhook(6, "Normal", "Pending", "status_changed")
    await world.run_until(73 * H)
    updates = [u for t, u in world.calls if t == "6"]
    assert {"status": "solved"} in updates  # Zendesk closes solved tickets itself
    assert world.tickets["6"]["status"] == "solved"


async def test_the_reread_stops_a_hand_over_the_zendesk_api_says_is_moot(
    world: ZendeskWorld,
) -> None:
    await world.webhook(7, "Low", "Open", "created")
    world.tickets["7"]["status"] = "solved"  # solved in Zendesk; the webhook never came
    await world.run_until(4 * H + timedelta(minutes=1))
    assert [u for t, u in world.calls if t == "7"] == []
    view = await world.h.ticket(7, source="zendesk")
    reassign = next(e for e in view["effects"] if e["kind"] == "reassign")
    assert reassign["status"] == "skipped"
    assert view["state"]["status"] == "resolved"  # the state follows the API
