"""The budget of unverified body bytes: signed webhooks' bodies held before their signature
is checked, over all requests at once."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import freshdesk_body
from tests.e2e.test_signed_sources import SIGNED, rows, zendesk_body, zendesk_headers
from ticketbridge.app.clock import FakeClock

BUDGET = 4096


def budget_used(h: Any) -> int:
    return int(h.app.state.body_budget.used)


async def test_a_body_over_the_unverified_budget_is_answered_503_and_the_budget_is_returned(
    harness_factory: Any, clock: FakeClock
) -> None:
    padded = zendesk_body(21)
    padded["zendesk_webhook"]["ticket_subject"] = "x" * BUDGET
    big = json.dumps(padded).encode()
    small = json.dumps(zendesk_body(22)).encode()
    async with harness_factory(http={"unverified_body_bytes": BUDGET}, **SIGNED) as h:
        before = rows(h)
        refused = await h.client.post(
            "/webhooks/zendesk", content=big, headers=zendesk_headers(big, clock)
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert rows(h) == before
        assert budget_used(h) == 0
        forged = await h.client.post(
            "/webhooks/zendesk", content=small, headers=zendesk_headers(small, clock, secret="no")
        )
        assert forged.status_code == 401
        assert budget_used(h) == 0
        accepted = await h.client.post(
            "/webhooks/zendesk", content=small, headers=zendesk_headers(small, clock)
        )
        assert accepted.status_code == 202, accepted.text
        assert budget_used(h) == 0


async def test_freshdesk_bodies_are_read_after_the_credential_and_outside_the_budget(
    harness_factory: Any,
) -> None:
    body = freshdesk_body(23, priority="Urgent")
    body["freshdesk_webhook"]["ticket_subject"] = "x" * BUDGET
    async with harness_factory(
        http={"unverified_body_bytes": BUDGET}, freshdesk={"webhook_secrets": ["s"]}
    ) as h:
        wrong = await h.client.post(
            "/webhooks/freshdesk", json=body, headers={"authorization": "Bearer nope"}
        )
        right = await h.client.post(
            "/webhooks/freshdesk", json=body, headers={"authorization": "Bearer s"}
        )
    assert [wrong.status_code, right.status_code] == [401, 202], right.text
