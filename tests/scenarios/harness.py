"""A whole ticket life through the app on a virtual clock, with every vendor call recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import AppHarness, freshdesk_body

FD = "https://acme.freshdesk.com"
VO_API = "https://vo-api.test"
PRIORITY_CODES = {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}
STATUS_CODES = {"Open": 2, "Pending": 3, "Resolved": 4, "Closed": 5}
ROUNDS = 20  # of firing and sending at one instant, before ``settle`` fails
STEPS = 10_000  # due times ``run_until`` steps through before it fails


@dataclass
class Helpdesk:
    """A fake Freshdesk: the API answers with the ticket as the scenario last set it."""

    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, ticket_id: int, priority: str, status: str) -> None:
        self.tickets[str(ticket_id)] = {
            "id": ticket_id,
            "priority": PRIORITY_CODES[priority],
            "status": STATUS_CODES[status],
            "group_id": 7,
            "responder_id": 42,
            "updated_at": "2026-11-26T12:00:00Z",
            "subject": "Checkout fails",
        }


class Scenario:
    def __init__(self, h: AppHarness, clock: Any, mock: respx.MockRouter) -> None:
        self.h = h
        self.clock = clock
        self.start: datetime = clock.now()
        self.helpdesk = Helpdesk()
        self.calls: list[tuple[str, str]] = []
        mock.route(host="vo.test").mock(side_effect=self._vo)
        mock.post(f"{VO_API}/api-public/v1/incidents").mock(side_effect=self._vo_api)
        mock.route(host="acme.freshdesk.com").mock(side_effect=self._freshdesk)

    def _at(self) -> str:
        minutes = (self.clock.now() - self.start) / timedelta(minutes=1)
        return f"{minutes:g}m"

    def _vo(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((self._at(), f"victorops {body['message_type']} {body['entity_id']}"))
        return httpx.Response(200, json={"result": "success"})

    def _vo_api(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((self._at(), f"bridge {body['targets'][0]['slug']}"))
        return httpx.Response(200, json={"incidentNumber": "1234", "entityId": "x"})

    def _freshdesk(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v2")
        if request.method == "GET" and path.startswith("/tickets/"):
            ticket = self.helpdesk.tickets[path.split("/")[2]]
            return httpx.Response(200, json=ticket)
        if request.method == "GET" and path == "/groups":
            return httpx.Response(200, json=[{"id": 99, "name": "DDEV Live Support"}])
        body = json.loads(request.content)
        if path.endswith("/notes"):
            text = body["body"].removeprefix("<p>[ticketbridge] ").split(":")[0]
            self.calls.append((self._at(), f"note {text}"))
            return httpx.Response(201, json={"id": 1, "body": body["body"], "private": True})
        self.calls.append(
            (self._at(), f"{request.method} {path} {json.dumps(body, sort_keys=True)}")
        )
        return httpx.Response(200, json={"id": int(path.split("/")[2])})

    async def webhook(
        self, ticket_id: int, priority: str, status: str = "Open", **extra: str
    ) -> None:
        self.helpdesk.set(ticket_id, priority, status)
        body = freshdesk_body(ticket_id, priority=priority, status=status, **extra)
        response = await self.h.post_freshdesk(body)
        assert response.status_code in (200, 202), response.text
        await self.settle()

    async def settle(self) -> None:
        """Fire what is due now and deliver every effect that results; fail if that never
        ends (a timer that keeps re-arming itself for now, an effect that keeps coming)."""
        for _ in range(ROUNDS):
            run = await self.h.app.state.scheduler.run_once()
            sent = await self.h.dispatcher.drain()
            if not run.fired and not sent:
                return
        pytest.fail(f"still firing or sending after {ROUNDS} rounds at {self._at()}")

    async def run_until(self, offset: timedelta) -> None:
        """Step the clock from due time to due time up to ``start + offset``; fail if the
        due times do not reach it within STEPS (timers armed ever closer together)."""
        end = self.start + offset
        store = self.h.services.store
        for _ in range(STEPS):
            await self.settle()
            due = store.next_timer_due()
            if due is None or due > end.timestamp():
                break
            self.clock.set(max(self.clock.now(), datetime.fromtimestamp(due, end.tzinfo)))
        else:
            pytest.fail(f"more than {STEPS} due times before {offset}")
        self.clock.set(end)
        await self.settle()
