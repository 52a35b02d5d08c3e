"""Whole ticket lives on a virtual clock: the exact, ordered calls to every vendor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
import sqlalchemy as sa

from tests.conftest import freshdesk_body
from tests.scenarios.harness import FD, VO_API, Scenario

M = timedelta(minutes=1)
H = timedelta(hours=1)
ENTITY = "freshdesk/acme/ticket/{}"


@pytest.fixture
async def scenario(harness_factory: Any, clock: Any) -> AsyncIterator[Scenario]:
    with respx.mock(assert_all_called=False) as mock:
        async with harness_factory(
            freshdesk={"webhook_secrets": ["fd-secret-do-not-log"], "api_url": FD, "api_key": "k"},
            victorops={
                "rest_url": "https://vo.test/integrations/generic/20131114/alert/K/RK",
                "api_url": VO_API,
                "api_id": "id",
                "api_key": "key",
                "tier_two_policy": "team-tier-two",
            },
        ) as h:
            yield Scenario(h, clock, mock)


async def test_urgent_unresolved_pages_breaches_reminds_bridges_then_recovers(
    scenario: Scenario,
) -> None:
    s = scenario
    await s.webhook(1, "Urgent")
    await s.run_until(90 * M)
    await s.webhook(1, "Urgent", "Resolved", triggered="{status:{from:2,to:4}}")
    await s.run_until(10 * H)
    e = ENTITY.format(1)
    assert s.calls == [
        ("0m", f"victorops CRITICAL {e}"),
        ("30m", "bridge team-tier-two"),
        ("30m", "note Tier-One window for Urgent expired unresolved"),
        ("60m", "note Initial engagement SLA missed"),
        ("60m", f"victorops INFO {e}"),
        ("60m", "note Customer update overdue"),
        ("60m", f"victorops INFO {e}"),
        ("90m", f"victorops RECOVERY {e}"),
    ]
    view = await s.h.ticket(1)
    bridge_note = next(e for e in view["effects"] if e["key"].endswith("note:bridge-open"))
    assert "incident number 1234" in bridge_note["payload"]["body"]
    # Resolution settled every commitment but the post-event write-up (due within 24 h).
    still_pending = {t["kind"] for t in view["timers"] if t["status"] == "pending"}
    assert still_pending == {"write_up"}
    assert {t["status"] for t in view["timers"]} <= {"fired", "cancelled", "pending"}


async def test_high_on_a_friday_evening_counts_engagement_on_weekdays_only(
    scenario: Scenario, clock: Any
) -> None:
    s = scenario
    clock.set(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))  # Friday 23:00 UTC
    s.start = clock.now()
    await s.webhook(2, "High")
    # Engagement: 1 h left on Friday, then Monday 00:00 + 1 h = Monday 01:00 (50 h later).
    await s.run_until(49 * H + 30 * M)  # Monday 00:30: an agent replies in time
    await s.webhook(2, "High", ticketbridge_event="agent_reply")
    await s.run_until(49 * H + 45 * M)
    await s.webhook(2, "High", "Resolved", triggered="{status:{from:2,to:4}}")
    await s.run_until(60 * H)
    e = ENTITY.format(2)
    reminders = [(at, what) for at, what in s.calls if what == "note Customer update overdue"]
    assert s.calls[:3] == [
        ("0m", f"victorops CRITICAL {e}"),
        ("60m", "bridge team-tier-two"),
        ("60m", "note Tier-One window for High expired unresolved"),
    ]
    # Customer updates run on the wall clock: every 2 h from Friday 23:00 until the reply.
    assert [at for at, _ in reminders] == [f"{120 * k}m" for k in range(1, 25)]
    assert not any("engagement" in what for _, what in s.calls)
    assert s.calls[-1] == ("2985m", f"victorops RECOVERY {e}")


async def test_medium_is_reassigned_to_live_support_at_two_hours(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(3, "Medium")
    await s.run_until(3 * H)
    assert s.calls == [
        ("120m", 'PUT /tickets/3 {"group_id": 99, "responder_id": null}'),
        ("120m", "note Tier-One window for Medium expired unresolved"),
    ]


async def test_pending_for_72_hours_is_closed(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(4, "Low", ticketbridge_event="agent_reply")
    await s.run_until(10 * M)
    await s.webhook(4, "Low", "Pending", triggered="{status:{from:2,to:3}}")
    await s.run_until(80 * H)
    assert s.calls == [
        # Pending is still unresolved: Tier One hands it over at 4 h like any Low ticket.
        ("240m", 'PUT /tickets/4 {"group_id": 99, "responder_id": null}'),
        ("240m", "note Tier-One window for Low expired unresolved"),
        ("4330m", "note Closed by ticketbridge"),
        ("4330m", 'PUT /tickets/4 {"status": 5}'),
    ]


async def test_a_customer_reply_cancels_the_auto_close(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(5, "Low", "Pending", ticketbridge_event="agent_reply")
    await s.run_until(24 * H)
    await s.webhook(5, "Low", "Pending", ticketbridge_event="customer_reply")
    await s.run_until(100 * H)
    assert s.calls == [
        ("240m", 'PUT /tickets/5 {"group_id": 99, "responder_id": null}'),
        ("240m", "note Tier-One window for Low expired unresolved"),
    ]
    view = await s.h.ticket(5)
    assert {t["kind"]: t["status"] for t in view["timers"]}["auto_close"] == "cancelled"


async def test_urgent_downgraded_to_medium_at_20_minutes(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(6, "Urgent")
    await s.run_until(20 * M)
    await s.webhook(6, "Medium", triggered="{priority:{from:4,to:2}}")
    await s.run_until(3 * H)
    e = ENTITY.format(6)
    assert s.calls == [
        ("0m", f"victorops CRITICAL {e}"),
        ("20m", f"victorops RECOVERY {e}"),
        ("120m", 'PUT /tickets/6 {"group_id": 99, "responder_id": null}'),
        ("120m", "note Tier-One window for Medium expired unresolved"),
    ]


async def test_a_re_triage_whose_new_deadline_is_past_fires_at_once(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(7, "Low")
    await s.run_until(3 * H)  # Low's Tier-One window is 4 h: nothing yet
    await s.webhook(7, "Medium", triggered="{priority:{from:1,to:2}}")  # Medium's 2 h is past
    await s.run_until(6 * H)
    assert s.calls == [
        ("180m", 'PUT /tickets/7 {"group_id": 99, "responder_id": null}'),
        ("180m", "note Tier-One window for Medium expired unresolved"),
    ]
    view = await s.h.ticket(7)
    tier_one = next(t for t in view["timers"] if t["kind"] == "tier_one")
    assert tier_one["late_seconds"] == 3600.0


async def test_a_payload_claiming_urgent_for_a_low_ticket_pages_nobody(scenario: Scenario) -> None:
    s = scenario
    s.helpdesk.set(9, "Low", "Open")
    response = await s.h.post_freshdesk(freshdesk_body(9, priority="Urgent"))
    assert response.status_code == 202
    await s.settle()
    await s.run_until(1 * H)
    assert s.calls == []
    view = await s.h.ticket(9)
    page = view["effects"][0]
    assert page["status"] == "skipped"
    assert "helpdesk API shows Low" in page["last_error"]
    assert view["state"]["priority"] == "low"


async def test_a_ticket_resolved_meanwhile_fires_nothing(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(10, "Medium")
    await s.webhook(10, "Medium", "Resolved", triggered="{status:{from:2,to:4}}")
    await s.run_until(10 * H)
    assert s.calls == []


async def test_ticketbridge_recognises_its_own_note_echoed_back(scenario: Scenario) -> None:
    s = scenario
    await s.webhook(11, "Medium")
    await s.run_until(3 * H)  # reassigned, with a private note
    before = (await s.h.ticket(11))["state"]
    await s.webhook(
        11,
        "Medium",
        triggered="{note_type:private}",
        ticket_latest_private_comment="[ticketbridge] Tier-One window for Medium expired ...",
    )
    view = await s.h.ticket(11)
    assert view["state"] == before
    assert any(
        entry["kind"] == "note" and "own note echoed back" in entry["detail"]["note"]
        for entry in view["timeline"]
    )


def _page_sent_but_not_recorded(s: Scenario, ticket: int) -> None:
    """The state a SIGKILL between the page's send and its record leaves, after the restart
    voided the dead process's lease: VictorOps has the incident, the outbox still says
    pending (no attempt counted)."""
    from ticketbridge.adapters.store.schema import outbox

    store = s.h.services.store
    with store.transaction() as conn:
        changed = conn.execute(
            sa.update(outbox)
            .where(outbox.c.key == f"victorops:freshdesk/{ticket}:page:1")
            .values(status="pending", attempts=0, last_code=None, lease_owner="dead-process")
        ).rowcount
    assert changed == 1
    store.release_leases()
    s.h.app.state.workers.guard._recent.clear()  # a new process: no re-reads


async def test_a_page_sent_before_a_crash_is_recovered_when_its_resend_is_skipped(
    scenario: Scenario,
) -> None:
    """The page went out, then the process died before recording it; meanwhile the ticket
    was resolved in the helpdesk. After the restart the page's resend is skipped on the
    re-read, and the RECOVERY the re-read decided still goes out: VictorOps holds the
    incident the first delivery opened."""
    s = scenario
    await s.webhook(1, "Urgent")
    _page_sent_but_not_recorded(s, 1)
    s.helpdesk.set(1, "Urgent", "Resolved")
    await s.settle()
    e = ENTITY.format(1)
    assert s.calls == [("0m", f"victorops CRITICAL {e}"), ("0m", f"victorops RECOVERY {e}")]
    view = await s.h.ticket(1)
    status = {x["kind"]: x["status"] for x in view["effects"]}
    assert (status["page"], status["recover"]) == ("skipped", "sent")


async def test_a_page_never_delivered_and_skipped_sends_no_recovery(scenario: Scenario) -> None:
    """Resolved in the helpdesk before its page's first delivery: the page is skipped on the
    re-read and VictorOps never hears of the ticket, not even a RECOVERY."""
    s = scenario
    s.helpdesk.set(1, "Urgent", "Resolved")
    body = freshdesk_body(1, priority="Urgent", status="Open")
    assert (await s.h.post_freshdesk(body)).status_code == 202
    await s.settle()
    assert not [call for call in s.calls if call[1].startswith("victorops")]
    view = await s.h.ticket(1)
    status = {x["kind"]: x["status"] for x in view["effects"]}
    assert (status["page"], status["recover"]) == ("skipped", "skipped")
