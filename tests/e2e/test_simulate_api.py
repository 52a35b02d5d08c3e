"""``POST /v1/simulate`` and ``GET /v1/tickets/{source}/{id}/explain`` through the ASGI app."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import ADMIN_TOKEN, freshdesk_body
from ticketbridge.adapters.store.engine import Store

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
TABLES = ("inbox", "tickets", "timeline", "outbox", "timers")
EXAMPLE: dict[str, Any] = {
    "events": [
        {"at": "0m", "event": "created", "priority": "urgent", "status": "open"},
        {"at": "20m", "event": "agent_reply"},
        {"at": "2h", "status": "pending"},
    ]
}
SHORTER_TIER_ONE = """\
version: shorter-tier-one
calendars:
  always: {timezone: UTC}
  weekdays: {timezone: UTC, days: [mon, tue, wed, thu, fri]}
priorities:
  urgent: {page: true, engagement: {within: 60m, calendar: always},
           tier_one: {within: 15m, then: bridge}, customer_updates: {every: 1h},
           write_up: {within: 24h}}
  high:   {page: true, engagement: {within: 2h, calendar: weekdays},
           tier_one: {within: 1h, then: bridge}, customer_updates: {every: 2h},
           write_up: {within: 24h}}
  medium: {page: false, engagement: {within: 8h, calendar: weekdays},
           tier_one: {within: 2h, then: reassign}, write_up: {within: 24h}}
  low:    {page: false, engagement: {within: 8h, calendar: weekdays},
           tier_one: {within: 4h, then: reassign}, write_up: {within: 24h}}
pending: {auto_close_after: 72h}
escalation: {reassign_group: DDEV Live Support}
"""


def counts(store: Store) -> dict[str, int]:
    return {table: store.count(table) for table in TABLES}


async def simulate(h: Any, body: Any, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", AUTH)
    response: httpx.Response = await h.client.post(
        "/v1/simulate", json=body, headers=headers, **kwargs
    )
    return response


async def test_simulate_returns_the_effects_in_order_and_stores_nothing(
    harness_factory: Any,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        vo = mock.post(host="vo.test").mock(return_value=httpx.Response(200))
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(5, priority="Low"))  # the store is not empty
            before = counts(h.services.store)
            response = await simulate(h, EXAMPLE)
            after = counts(h.services.store)
    assert response.status_code == 200, response.text
    assert before == after
    assert before["tickets"] == 1
    assert vo.call_count == 0  # nothing is sent
    result = response.json()
    assert [(e["offset"], e["target"], e["kind"]) for e in result["effects"]] == [
        ("0m", "victorops", "page"),
        ("30m", "victorops_bridge", "bridge"),
        ("1h20m", "simulated", "note"),
        ("1h20m", "victorops", "info"),
        ("3d2h", "simulated", "note"),
        ("3d2h", "simulated", "close"),
    ]
    bridge = result["effects"][1]
    assert bridge["reason"] == (
        "Tier-One window for Urgent is 30m, then bridge; unresolved at 2026-01-05T09:30:00+00:00"
    )
    assert bridge["at"] == "2026-01-05T09:30:00+00:00"
    assert bridge["cause"] == "timer tier_one"
    assert result["effects"][0]["cause"] == "event 1 (created)"
    assert result["policy"] == h.services.policy.fingerprint
    assert result["stopped"] == "quiet"
    assert [e["outcome"] for e in result["events"]] == ["accepted"] * 3
    assert any(n["note"].startswith("tier_one fired") for n in result["notes"])


async def test_simulate_takes_a_policy_as_yaml_text_or_as_an_object(
    harness_factory: Any,
) -> None:
    import yaml

    async with harness_factory() as h:
        as_text = await simulate(h, {**EXAMPLE, "policy": SHORTER_TIER_ONE})
        as_object = await simulate(h, {**EXAMPLE, "policy": yaml.safe_load(SHORTER_TIER_ONE)})
    for response in (as_text, as_object):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["policy"].startswith("shorter-tier-one@")
        [bridge] = [e for e in result["effects"] if e["kind"] == "bridge"]
        assert bridge["offset"] == "15m"
    assert as_text.json() == as_object.json()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"events": [{"at": "soon", "priority": "urgent"}]}, "events[1].at: invalid offset"),
        ({"events": [{"at": "0m", "priority": "critical"}]}, "events[1].priority"),
        ({"events": [{"at": "0m"}]}, "events[1].priority: the first event must give"),
        (
            {"events": [{"at": "1h", "priority": "low"}, {"at": "5m", "status": "pending"}]},
            "events[2].at: events must be in order",
        ),
        ({"events": [{"at": "0m", "priority": "low", "colour": "red"}]}, "colour: unknown"),
        ({"events": []}, "events: "),
        ({"evnts": []}, "evnts: unknown field"),
        (
            {"events": [{"at": "0m", "priority": "low"}, {"at": "1m", "repeat": 3}]},
            "events[2].repeat: must name an earlier event",
        ),
        ({**EXAMPLE, "start": "2026-01-05T09:00:00"}, "start: start needs a time zone"),
        ({**EXAMPLE, "policy": "version: 1\npriorities: {}\n"}, "invalid policy"),
        ({**EXAMPLE, "policy": "version: 1\nfoo: [\n"}, "policy:"),
        ({**EXAMPLE, "policy": {"version": 1, "wrong": True}}, "policy:?: wrong: unknown key"),
        ({**EXAMPLE, "policy": 42}, "give the policy as YAML text or an object"),
        ([1, 2], "body"),
        ("not an object", "body"),
    ],
    ids=[
        "bad-offset",
        "bad-priority",
        "no-priority",
        "out-of-order",
        "unknown-event-field",
        "no-events",
        "unknown-field",
        "bad-repeat",
        "naive-start",
        "bad-policy",
        "policy-syntax",
        "policy-object",
        "policy-type",
        "list-body",
        "string-body",
    ],
)
async def test_a_bad_timeline_or_policy_is_422_naming_the_problem(
    harness_factory: Any, body: Any, named: str
) -> None:
    async with harness_factory() as h:
        before = counts(h.services.store)
        response = await simulate(h, body)
        after = counts(h.services.store)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]
    assert before == after


async def test_invalid_json_is_422_not_500(harness_factory: Any) -> None:
    async with harness_factory() as h:
        response = await h.client.post(
            "/v1/simulate",
            content=b"{not json",
            headers={**AUTH, "content-type": "application/json"},
        )
    assert response.status_code == 422, response.text


async def test_simulate_needs_the_admin_token(harness_factory: Any) -> None:
    async with harness_factory() as h:
        missing = await simulate(h, EXAMPLE, headers={})
        wrong = await simulate(h, EXAMPLE, headers={"authorization": "Bearer nope"})
    assert (missing.status_code, wrong.status_code) == (401, 401)


async def explain(h: Any, source: str, ticket_id: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", AUTH)
    response: httpx.Response = await h.client.get(
        f"/v1/tickets/{source}/{ticket_id}/explain", headers=headers, **kwargs
    )
    return response


def by_kind(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in body["commitments"]}


async def test_explain_shows_every_commitment_of_a_live_ticket(
    harness_factory: Any, clock: Any
) -> None:
    start: datetime = clock.now()
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(9, priority="Urgent"))
        clock.advance(timedelta(minutes=20))
        await h.post_freshdesk(
            freshdesk_body(9, priority="Urgent", triggered="", ticketbridge_event="agent_reply")
        )
        clock.advance(timedelta(minutes=11))
        await h.app.state.scheduler.run_once()  # the Tier-One window ends: a bridge
        early = await explain(h, "freshdesk", "9")
        clock.advance(timedelta(minutes=30))
        await h.post_freshdesk(
            freshdesk_body(9, priority="Urgent", status="Resolved", triggered="{status:{to:4}}")
        )
        resolved = await explain(h, "freshdesk", "9")
    assert early.status_code == 200, early.text
    body = early.json()
    fingerprint = h.services.policy.fingerprint
    assert (body["source"], body["ticket_id"], body["priority"], body["status"]) == (
        "freshdesk",
        "9",
        "urgent",
        "Open",
    )
    assert body["policy"] == fingerprint
    assert body["policy_version"] == "1"
    assert body["policy_note"] is None
    assert [c["name"] for c in body["commitments"]] == [
        "Initial engagement",
        "Next customer update",
        "Tier-One deadline",
        "Auto-close",
        "Post-event write-up",
    ]
    c = by_kind(body)

    def iso(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    assert (c["engagement"]["state"], c["engagement"]["at"]) == ("met", iso(20))
    assert c["engagement"]["due_at"] == iso(60)
    assert c["engagement"]["rule"] == "initial engagement for Urgent within 1h (always calendar)"
    assert (c["customer_update"]["state"], c["customer_update"]["due_at"]) == ("pending", iso(80))
    assert c["customer_update"]["rule"] == "customer update for Urgent every 1h"
    assert (c["tier_one"]["state"], c["tier_one"]["due_at"]) == ("fired", iso(30))
    assert c["tier_one"]["at"] == iso(31)
    assert c["tier_one"]["rule"] == "Tier-One window for Urgent is 30m, then bridge"
    assert (c["auto_close"]["state"], c["auto_close"]["due_at"]) == ("not_applicable", None)
    assert c["auto_close"]["rule"] == "Pending for 3d with no customer reply closes the ticket"
    assert c["write_up"]["state"] == "not_applicable"
    assert all(x["policy"] == fingerprint for x in body["commitments"])

    assert resolved.status_code == 200, resolved.text
    c = by_kind(resolved.json())
    assert c["customer_update"]["state"] == "cancelled"
    assert (c["write_up"]["state"], c["write_up"]["due_at"]) == ("pending", iso(61 + 24 * 60))
    assert c["write_up"]["rule"] == "post-event write-up for Urgent due within 1d of resolution"


async def test_explain_reports_a_missed_engagement_and_a_pending_auto_close(
    harness_factory: Any, clock: Any
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(12, priority="Medium"))
        clock.advance(timedelta(minutes=10))
        await h.post_freshdesk(
            freshdesk_body(12, priority="Medium", status="Pending", triggered="{status:{to:3}}")
        )
        clock.advance(timedelta(hours=9))
        await h.app.state.scheduler.run_once()
        response = await explain(h, "freshdesk", "12")
    c = by_kind(response.json())
    assert c["engagement"]["state"] == "breached"
    assert c["tier_one"]["state"] == "fired"
    assert "reassign" in c["tier_one"]["detail"]
    assert c["customer_update"]["state"] == "not_applicable"
    assert c["customer_update"]["rule"] == "no customer-update cadence for Medium"
    assert c["auto_close"]["state"] == "pending"


async def test_explain_is_404_for_an_unknown_ticket_and_401_without_the_token(
    harness_factory: Any,
) -> None:
    async with harness_factory() as h:
        unknown = await explain(h, "freshdesk", "404")
        await h.post_freshdesk(freshdesk_body(3, priority="Low"))
        anonymous = await explain(h, "freshdesk", "3", headers={})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no ticket freshdesk/404"})
    assert anonymous.status_code == 401
