"""What an incident leaves behind, on a virtual clock: the post-event write-up, follow-up issues
and the status page — through the app, against stateful GitHub and Statuspage fakes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import respx

from tests.conftest import ADMIN_TOKEN, freshdesk_body
from tests.scenarios.followup_vendors import (
    GITHUB_API,
    GITHUB_TOKEN,
    PAGE_ID,
    REPO,
    STATUSPAGE_API,
    STATUSPAGE_KEY,
    FakeGitHub,
    FakeStatuspage,
)
from tests.scenarios.harness import FD, VO_API, Scenario

M = timedelta(minutes=1)
H = timedelta(hours=1)
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class World:
    def __init__(self, scenario: Scenario, github: FakeGitHub, statuspage: FakeStatuspage):
        self.s = scenario
        self.github = github
        self.statuspage = statuspage


@pytest.fixture
async def world(harness_factory: Any, clock: Any) -> AsyncIterator[World]:
    github, statuspage = FakeGitHub(), FakeStatuspage()
    with respx.mock(assert_all_called=False) as mock:
        github.install(mock)
        statuspage.install(mock)
        async with harness_factory(
            freshdesk={"webhook_secrets": ["fd-secret-do-not-log"], "api_url": FD, "api_key": "k"},
            victorops={
                "rest_url": "https://vo.test/integrations/generic/20131114/alert/K/RK",
                "api_url": VO_API,
                "api_id": "id",
                "api_key": "key",
                "tier_two_policy": "team-tier-two",
            },
            github={"token": GITHUB_TOKEN, "repository": REPO, "api_url": GITHUB_API},
            statuspage={
                "api_key": STATUSPAGE_KEY,
                "page_id": PAGE_ID,
                "api_url": STATUSPAGE_API,
                "components": {"api": "cmp-api", "checkout": "cmp-checkout"},
            },
        ) as h:
            yield World(Scenario(h, clock, mock), github, statuspage)


async def test_system_wide_urgent_ticket_keeps_one_status_page_incident_in_step(
    world: World,
) -> None:
    s, page = world.s, world.statuspage
    await s.webhook(1, "Urgent", ticket_tags="system-wide, component:api")
    assert [c[0] for c in page.calls] == ["open"]
    opened = page.calls[0][1]
    assert opened["status"] == "investigating"
    assert opened["impact_override"] == "critical"  # policy: Urgent → critical
    assert opened["components"] == {"cmp-api": "major_outage"}  # name mapped to its id
    assert "freshdesk #1" in opened["name"]

    await s.run_until(31 * M)  # Tier-One window (30 min) expires: bridge → Tier Two has it
    assert [c[0] for c in page.calls] == ["open", "identified"]

    await s.webhook(1, "Urgent", "Pending", triggered="{status:{from:2,to:3}}")
    await s.webhook(1, "Urgent", "Resolved", triggered="{status:{from:3,to:4}}")
    assert [c[0] for c in page.calls] == ["open", "identified", "monitoring", "resolved"]
    assert page.calls[-1][1]["components"] == {"cmp-api": "operational"}  # restored
    assert len(page.incidents) == 1  # one incident per ticket, whatever happened
    assert page.incidents[0]["status"] == "resolved"

    view = await s.h.ticket(1)
    statuses = {e["key"]: e["status"] for e in view["effects"] if e["target"] == "statuspage"}
    assert set(statuses.values()) == {"sent"}
    assert len(statuses) == 4


async def test_declared_through_the_admin_api_with_components(world: World) -> None:
    s, page = world.s, world.statuspage
    await s.webhook(2, "High")
    assert page.calls == []
    headers = {**ADMIN, "Idempotency-Key": "declare-2"}
    for _ in range(2):  # a repeated call with the same key acts once
        response = await s.h.client.post(
            "/v1/tickets/freshdesk/2/status-page",
            json={"components": ["checkout"]},
            headers=headers,
        )
        assert response.status_code == 202, response.text
    await s.settle()
    assert [c[0] for c in page.calls] == ["open"]
    assert page.calls[0][1]["components"] == {"cmp-checkout": "partial_outage"}  # High
    assert page.calls[0][1]["impact_override"] == "major"
    # A second declaration (another key) adds a component to the same incident.
    response = await s.h.client.post(
        "/v1/tickets/freshdesk/2/status-page", json={"components": ["api"]}, headers=ADMIN
    )
    assert response.status_code == 202
    await s.settle()
    assert [c[0] for c in page.calls] == ["open", "investigating"]
    assert set(page.calls[1][1]["components"]) == {"cmp-checkout", "cmp-api"}
    assert len(page.incidents) == 1


async def test_resolution_opens_the_write_up_with_the_timeline_and_reminds_once(
    world: World,
) -> None:
    s, github = world.s, world.github
    await s.webhook(3, "Urgent")
    await s.run_until(20 * M)
    await s.webhook(3, "Urgent", triggered="{note_type:public}", ticketbridge_event="agent_reply")
    await s.run_until(31 * M)  # Tier-One expires: bridge
    await s.webhook(3, "Urgent", "Resolved", triggered="{status:{from:2,to:4}}")
    assert github.creates == 1
    issue = github.issues[0]
    assert issue["title"].startswith("Post-event write-up: [Urgent] Freshdesk #3")
    assert [label["name"] for label in issue["labels"]] == ["post-event", "priority:urgent"]
    body = issue["body"]
    start = s.start
    for when, what in [
        (start, "Opened as Urgent (Open)"),
        (start, "Paged VictorOps (CRITICAL)"),
        (start + 20 * M, "Engaged: first public agent reply"),
        (start + 20 * M, "Customer updated (public agent reply)"),
        (start + 30 * M, "Tier-One window expired: VictorOps bridge for Tier Two"),
        (start + 31 * M, "Status Open → Resolved"),
    ]:
        assert f"| {when:%Y-%m-%d %H:%M:%S} UTC | {what} |" in body, what
    assert "https://acme.freshdesk.com/helpdesk/tickets/3" in body
    for section in ("## Summary", "## Solution", "## Lessons learned"):
        assert section in body
    assert "<!-- ticketbridge:" in body  # the marker the retry looks for

    await s.run_until(31 * M + 23 * H)
    assert github.comments == {}  # not due yet
    await s.run_until(31 * M + 24 * H + M)
    assert [c["body"].split(":")[0] for c in github.comments[1]] == ["Reminder"]
    view = await s.h.ticket(3)
    overdue = [e for e in view["effects"] if e["key"].endswith("note:write-up-overdue")]
    assert [e["status"] for e in overdue] == ["sent"]  # recorded on the ticket too
    metrics = (await s.h.client.get("/metrics")).text
    assert (
        'ticketbridge_commitment_breaches_total{kind="write_up",priority="urgent"} 1.0' in metrics
    )
    await s.run_until(31 * M + 72 * H)
    assert len(github.comments[1]) == 1  # once
    assert github.creates == 1


async def test_no_reminder_when_the_write_up_was_closed_in_time(world: World) -> None:
    s, github = world.s, world.github
    await s.webhook(4, "Medium")
    await s.webhook(4, "Medium", "Resolved", triggered="{status:{from:2,to:4}}")
    assert [label["name"] for label in github.issues[0]["labels"]] == [
        "post-event",
        "priority:medium",
    ]
    github.close(1)
    await s.run_until(48 * H)
    assert github.comments.get(1, []) == []
    view = await s.h.ticket(4)
    reminder = next(e for e in view["effects"] if e["kind"] == "write_up_reminder")
    assert reminder["status"] == "sent"
    assert reminder["result"] == {"skipped": "issue closed"}
    assert not any(e["key"].endswith("note:write-up-overdue") for e in view["effects"])


async def test_an_ambiguous_timeout_on_create_makes_exactly_one_issue(world: World) -> None:
    s, github = world.s, world.github
    github.lose_next_create_reply = True  # GitHub creates it, the reply never arrives
    await s.webhook(5, "High")
    await s.webhook(5, "High", "Resolved", triggered="{status:{from:2,to:4}}")
    view = await s.h.ticket(5)
    write_up = next(e for e in view["effects"] if e["kind"] == "write_up")
    assert write_up["status"] == "retrying"
    s.clock.advance(120)
    await s.settle()
    view = await s.h.ticket(5)
    write_up = next(e for e in view["effects"] if e["kind"] == "write_up")
    assert write_up["status"] == "sent"
    assert write_up["result"]["existing"] is True
    assert write_up["result"]["issue_number"] == 1
    assert github.creates == 1
    assert len(github.issues) == 1
    print("\nambiguous GitHub create: issues created 1, duplicates 0")


async def test_follow_up_issue_once_per_tag_occurrence_and_per_admin_call(world: World) -> None:
    s, github = world.s, world.github
    await s.webhook(6, "Low", ticket_tags="github-followup")
    await s.webhook(6, "Low", triggered="{note_type:public}", ticket_tags="github-followup, vip")
    assert github.creates == 1  # the tag stayed on: no second issue
    await s.webhook(6, "Low", triggered="{priority:{from:1,to:1}}", ticket_tags="vip")
    await s.webhook(6, "Low", triggered="{note_type:private}", ticket_tags="vip,github-followup")
    assert github.creates == 2  # removed and added again: a new occurrence
    assert github.issues[0]["title"] == "Follow-up: [Low] Freshdesk #6: Checkout fails"
    assert [label["name"] for label in github.issues[0]["labels"]] == ["follow-up"]

    headers = {**ADMIN, "Idempotency-Key": "fu-1"}
    for _ in range(2):
        response = await s.h.client.post(
            "/v1/tickets/freshdesk/6/followups",
            json={"title": "Add a checkout health check", "body": "See the bridge notes."},
            headers=headers,
        )
        assert response.status_code == 202
    await s.settle()
    assert github.creates == 3
    assert github.issues[2]["title"] == "Add a checkout health check"
    assert "See the bridge notes." in github.issues[2]["body"]
    assert "https://acme.freshdesk.com/helpdesk/tickets/6" in github.issues[2]["body"]


async def test_admin_endpoints_refuse_bad_requests_and_store_nothing(world: World) -> None:
    s = world.s
    await s.webhook(7, "Urgent")
    for path in ("followups", "status-page"):
        url = f"/v1/tickets/freshdesk/7/{path}"
        assert (await s.h.client.post(url, json={})).status_code == 401
        wrong = {"authorization": "Bearer fd-secret-do-not-log"}  # a webhook secret
        assert (await s.h.client.post(url, json={}, headers=wrong)).status_code == 401
        missing = await s.h.client.post(f"/v1/tickets/freshdesk/999/{path}", headers=ADMIN)
        assert missing.status_code == 404
    bad = await s.h.client.post(
        "/v1/tickets/freshdesk/7/status-page", json={"components": "api"}, headers=ADMIN
    )
    assert bad.status_code == 422
    bad = await s.h.client.post(
        "/v1/tickets/freshdesk/7/followups", json={"title": "x" * 500}, headers=ADMIN
    )
    assert bad.status_code == 422
    await s.settle()
    view = await s.h.ticket(7)
    assert [e["target"] for e in view["effects"]] == ["victorops"]  # only the page


async def test_without_github_or_statuspage_settings_these_effects_are_skipped(
    harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").respond(200, json={"result": "success"})
        async with harness_factory() as h:
            body = {"ticket_tags": "system-wide,github-followup"}
            await h.post_freshdesk(freshdesk_body(8, **body))
            await h.post_freshdesk(
                freshdesk_body(8, status="Resolved", triggered="{status:{from:2,to:4}}", **body)
            )
            await h.dispatcher.drain()
            view = await h.ticket(8)
    status = {(e["target"], e["kind"]): e["status"] for e in view["effects"]}
    assert status[("github", "followup")] == "skipped"
    assert status[("github", "write_up")] == "skipped"
    assert status[("statuspage", "open")] == "skipped"
    assert status[("victorops", "page")] == "sent"


async def test_no_github_or_statuspage_secret_in_logs_or_the_api(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    s = world.s
    world.github.lose_next_create_reply = True
    await s.webhook(9, "Urgent", ticket_tags="system-wide")
    await s.webhook(9, "Urgent", "Resolved", triggered="{status:{from:2,to:4}}")
    s.clock.advance(120)
    await s.settle()
    view = (await s.h.client.get("/v1/tickets/freshdesk/9", headers=ADMIN)).text
    effects = (await s.h.client.get("/v1/effects", headers=ADMIN)).text
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (GITHUB_TOKEN, STATUSPAGE_KEY):
        assert secret not in view
        assert secret not in effects
        assert secret not in logged
