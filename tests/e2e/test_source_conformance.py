"""One scenario table, every source adapter: the same canonical effects.

Each scenario is a ticket's history in canonical terms (event, priority, status, when it was
updated). It is sent through ``POST /webhooks/freshdesk`` (Basic auth, Freshdesk labels and
``triggered_event``), ``POST /webhooks/zendesk`` (HMAC-signed, Zendesk's low/normal/high/urgent
and new/open/pending/hold/solved/closed) and ``POST /webhooks/generic`` (Standard Webhooks, the
canonical body), and each must give the same answers, the same effects in the same order and
the same VictorOps messages; entity ids and effect keys differ only in the source name.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import WEBHOOK_SECRET, AppHarness, freshdesk_body
from tests.e2e.test_signed_sources import (
    SIGNED,
    generic_body,
    standard_headers,
    zendesk_body,
    zendesk_headers,
)
from ticketbridge.app.clock import FakeClock

TICKET = "4242"
UPDATED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # the ticket's first update; "now" is 12:00


@dataclass(frozen=True)
class Step:
    """One webhook: the ticket as it is after ``event``, updated ``minute`` after 10:00."""

    event: str  # created | priority_changed | status_changed
    priority: str  # urgent | high | medium | low
    status: str  # open | pending | resolved | closed
    minute: int
    hold: bool = False  # Zendesk's "hold" (pending elsewhere)


@dataclass(frozen=True)
class Again:
    """The delivery of step ``index`` sent again, the same bytes and delivery id."""

    index: int


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step | Again, ...]
    outcomes: tuple[str, ...]  # the webhook answers' ``outcome``, one per step
    effects: tuple[tuple[str, str, str], ...]  # the ticket's effects in order: target, kind, status
    pages: tuple[str, ...]  # VictorOps message types sent, in order


PAGE = ("victorops", "page", "sent")
RECOVER = ("victorops", "recover", "sent")
WRITE_UP = ("github", "write_up", "skipped")  # the post-incident issue (GitHub not configured)


def created(priority: str, minute: int = 0) -> Step:
    return Step("created", priority, "open", minute)


SCENARIOS = {
    "urgent-created-pages": Scenario(
        steps=(created("urgent"),),
        outcomes=("accepted",),
        effects=(PAGE,),
        pages=("CRITICAL",),
    ),
    "upgrade-medium-to-high-pages": Scenario(
        steps=(created("medium"), Step("priority_changed", "high", "open", 5)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE,),
        pages=("CRITICAL",),
    ),
    "downgrade-recovers": Scenario(
        steps=(created("urgent"), Step("priority_changed", "medium", "open", 5)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE, RECOVER),
        pages=("CRITICAL", "RECOVERY"),
    ),
    "downgrade-then-upgrade-pages-again": Scenario(
        steps=(
            created("urgent"),
            Step("priority_changed", "low", "open", 5),
            Step("priority_changed", "high", "open", 10),
        ),
        outcomes=("accepted", "accepted", "accepted"),
        effects=(PAGE, RECOVER, PAGE),
        pages=("CRITICAL", "RECOVERY", "CRITICAL"),
    ),
    "resolved-recovers": Scenario(
        steps=(created("urgent"), Step("status_changed", "urgent", "resolved", 30)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE, RECOVER, WRITE_UP),
        pages=("CRITICAL", "RECOVERY"),
    ),
    "closed-recovers": Scenario(
        steps=(created("high"), Step("status_changed", "high", "closed", 30)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE, RECOVER, WRITE_UP),
        pages=("CRITICAL", "RECOVERY"),
    ),
    "pending-keeps-the-incident": Scenario(
        steps=(created("urgent"), Step("status_changed", "urgent", "pending", 10)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE,),
        pages=("CRITICAL",),
    ),
    "on-hold-keeps-the-incident": Scenario(
        steps=(created("urgent"), Step("status_changed", "urgent", "pending", 10, hold=True)),
        outcomes=("accepted", "accepted"),
        effects=(PAGE,),
        pages=("CRITICAL",),
    ),
    "duplicate-delivery-no-second-effect": Scenario(
        steps=(created("urgent"), Again(0)),
        outcomes=("accepted", "duplicate"),
        effects=(PAGE,),
        pages=("CRITICAL",),
    ),
    "stale-event-changes-nothing": Scenario(
        steps=(
            created("urgent"),
            Step("status_changed", "urgent", "resolved", 30),
            # An update made at 10:10 (Urgent, Open) delivered after the 10:30 resolution.
            Step("priority_changed", "urgent", "open", 10),
        ),
        outcomes=("accepted", "accepted", "stale"),
        effects=(PAGE, RECOVER, WRITE_UP),
        pages=("CRITICAL", "RECOVERY"),
    ),
    "late-redelivery-changes-nothing": Scenario(
        steps=(created("urgent"), Step("status_changed", "urgent", "resolved", 30), Again(0)),
        outcomes=("accepted", "accepted", "duplicate"),
        effects=(PAGE, RECOVER, WRITE_UP),
        pages=("CRITICAL", "RECOVERY"),
    ),
}


# --- the sources: a canonical step as each helpdesk sends it -------------------------------


def updated_at(step: Step) -> str:
    return (UPDATED + timedelta(minutes=step.minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Source:
    """Sends steps to one webhook route; remembers each delivery so it can be redelivered."""

    name: str  # the ticket's source, as in entity ids and effect keys
    route: str

    def __init__(self, h: AppHarness, clock: FakeClock) -> None:
        self.h = h
        self.clock = clock
        self.sent: list[tuple[bytes, str]] = []  # (body, delivery id) per step
        self.last: Step | None = None

    def body(self, step: Step) -> dict[str, Any]:
        raise NotImplementedError

    def headers(self, raw: bytes, delivery_id: str) -> dict[str, str]:
        raise NotImplementedError

    async def send(self, item: Step | Again) -> httpx.Response:
        if isinstance(item, Again):
            raw, delivery_id = self.sent[item.index]
        else:
            raw, delivery_id = json.dumps(self.body(item)).encode(), f"delivery-{len(self.sent)}"
            self.last = item
        self.sent.append((raw, delivery_id))
        self.clock.advance(60)  # each delivery a minute after the last, signed when sent
        return await self.h.client.post(
            self.route, content=raw, headers=self.headers(raw, delivery_id)
        )


class Freshdesk(Source):
    name, route = "freshdesk", "/webhooks/freshdesk"
    PRIORITIES = {"low": "Low", "medium": "Medium", "high": "High", "urgent": "Urgent"}
    STATUSES = {"open": "Open", "pending": "Pending", "resolved": "Resolved", "closed": "Closed"}
    # triggered_event names a change by Freshdesk's numeric codes.
    PRIORITY_CODES = {"low": 1, "medium": 2, "high": 3, "urgent": 4}
    STATUS_CODES = {"open": 2, "pending": 3, "resolved": 4, "closed": 5}

    def body(self, step: Step) -> dict[str, Any]:
        if step.event == "created" or self.last is None:
            triggered = "{ticket_action:created}"
        elif step.event == "priority_changed":
            was, now = self.PRIORITY_CODES[self.last.priority], self.PRIORITY_CODES[step.priority]
            triggered = f"{{priority:{{from:{was},to:{now}}}}}"
        else:
            was, now = self.STATUS_CODES[self.last.status], self.STATUS_CODES[step.status]
            triggered = f"{{status:{{from:{was},to:{now}}}}}"
        return freshdesk_body(
            TICKET,
            priority=self.PRIORITIES[step.priority],
            status=self.STATUSES[step.status],
            triggered=triggered,
            ticket_updated_at=updated_at(step),
        )

    def headers(self, raw: bytes, delivery_id: str) -> dict[str, str]:
        # Freshdesk signs nothing and sends no delivery id: a redelivery is the same body.
        credentials = base64.b64encode(f"freshdesk:{WEBHOOK_SECRET}".encode()).decode()
        return {"content-type": "application/json", "authorization": f"Basic {credentials}"}


class Zendesk(Source):
    name, route = "zendesk", "/webhooks/zendesk"
    PRIORITIES = {"low": "low", "medium": "normal", "high": "high", "urgent": "urgent"}
    STATUSES = {"open": "open", "pending": "pending", "resolved": "solved", "closed": "closed"}

    def body(self, step: Step) -> dict[str, Any]:
        status = self.STATUSES[step.status]
        if step.event == "created":
            status = "new"
        elif step.hold:
            status = "hold"
        body = zendesk_body(
            int(TICKET), priority=self.PRIORITIES[step.priority], status=status, event=step.event
        )
        body["zendesk_webhook"]["ticket_updated_at"] = updated_at(step)
        return body

    def headers(self, raw: bytes, delivery_id: str) -> dict[str, str]:
        return {
            **zendesk_headers(raw, self.clock),
            "x-zendesk-webhook-invocation-id": delivery_id,
        }


class Generic(Source):
    name, route = "acme-desk", "/webhooks/generic"

    def body(self, step: Step) -> dict[str, Any]:
        return generic_body(
            TICKET,
            priority=step.priority,
            status=step.status,
            event=step.event,
            updated_at=updated_at(step),
        )

    def headers(self, raw: bytes, delivery_id: str) -> dict[str, str]:
        return standard_headers(raw, self.clock, delivery_id)


SOURCES = {"freshdesk": Freshdesk, "zendesk": Zendesk, "generic": Generic}


@pytest.fixture
def vo() -> Iterator[respx.MockRouter]:
    # Any other outbound request fails the test (respx refuses unmocked hosts).
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        yield mock


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_source_gives_the_canonical_effects(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter, source: str, scenario: str
) -> None:
    expected = SCENARIOS[scenario]
    async with harness_factory(**SIGNED) as h:
        sender = SOURCES[source](h, clock)
        answers = []
        for step in expected.steps:
            response = await sender.send(step)
            answers.append((response.status_code, response.json()))
            await h.dispatcher.drain()
        view = await h.ticket(TICKET, source=sender.name)

    outcomes = tuple(body["outcome"] for _, body in answers)
    assert outcomes == expected.outcomes
    assert [code for code, _ in answers] == [200 if o == "duplicate" else 202 for o in outcomes]
    assert {body["ticket_id"] for _, body in answers} == {TICKET}

    effects = tuple((e["target"], e["kind"], e["status"]) for e in view["effects"])
    assert effects == expected.effects
    numbers: Counter[tuple[str, str]] = Counter()
    for effect in view["effects"]:  # "victorops:zendesk/4242:page:1": only the source differs
        target, kind = effect["target"], effect["kind"]
        numbers[target, kind] += 1
        assert effect["key"] == f"{target}:{sender.name}/{TICKET}:{kind}:{numbers[target, kind]}"

    messages = [json.loads(call.request.content) for call in vo.calls]
    assert tuple(m["message_type"] for m in messages) == expected.pages
    assert {m["entity_id"] for m in messages} == {f"{sender.name}/acme/ticket/{TICKET}"}


@pytest.mark.parametrize("source", list(SOURCES))
async def test_every_source_refuses_an_update_time_the_rules_cannot_plan_from(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter, source: str
) -> None:
    """The last minute datetime holds: the response windows added to it overflowed (a 500)."""
    last_minute = (datetime.max.replace(tzinfo=UTC) - UPDATED) // timedelta(minutes=1)
    async with harness_factory(**SIGNED) as h:
        response = await SOURCES[source](h, clock).send(created("urgent", last_minute))
        assert response.status_code == 422
        assert response.json()["error"].endswith("must be a time from 2000 to 2099")
        assert h.services.store.count("inbox") == 0
    assert not vo.calls
