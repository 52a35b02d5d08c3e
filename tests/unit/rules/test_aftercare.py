"""rules.aftercare through decide()/on_timer(): write-ups, follow-ups, status page, timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ticketbridge.app.policy_file import load_policy
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules.aftercare import _stamp
from ticketbridge.rules.model import Decision, TimerKind
from ticketbridge.rules.timers import on_timer, plan_timers

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


def ev(
    priority: Priority = Priority.URGENT,
    status: Status = Status.OPEN,
    kind: EventKind = EventKind.UPDATED,
    **extra: Any,
) -> TicketEvent:
    return TicketEvent(
        source="freshdesk",
        ticket_id="42",
        kind=kind,
        priority=priority,
        status=status,
        status_label=status.value.capitalize(),
        domain="acme",
        url="https://acme.freshdesk.com/a/tickets/42",
        subject="Checkout fails",
        **extra,
    )


def step(state: TicketState | None, event: TicketEvent, at: datetime, policy: Policy) -> Decision:
    return decide(state, event, now=at, policy=policy)


def targets(decision: Decision) -> list[str]:
    return [f"{e.target}:{e.kind}" for e in decision.effects]


def test_resolution_opens_one_write_up_and_arms_its_reminder(policy: Policy) -> None:
    d = step(None, ev(kind=EventKind.CREATED), T0, policy)
    d = step(d.state, ev(status=Status.RESOLVED), T0 + 40 * M, policy)
    assert targets(d) == ["victorops:recover", "github:write_up"]
    write_up = d.effects[1]
    assert write_up.key == "github:freshdesk/42:write_up:1"
    assert write_up.payload["marker"] == write_up.key
    assert write_up.payload["labels"] == ["post-event", "priority:urgent"]
    assert d.state.write_up_due == T0 + 40 * M + 24 * H
    assert plan_timers(d.state, policy)[TimerKind.WRITE_UP][0] == T0 + 40 * M + 24 * H
    # Closed after resolved, reopened and resolved again: still the one write-up.
    d = step(d.state, ev(status=Status.CLOSED), T0 + 50 * M, policy)
    d = step(d.state, ev(status=Status.OPEN), T0 + 60 * M, policy)
    d = step(d.state, ev(status=Status.RESOLVED), T0 + 70 * M, policy)
    assert "github:write_up" not in targets(d)


def test_write_up_reminder_comments_once_then_nothing(policy: Policy) -> None:
    d = step(None, ev(Priority.LOW, kind=EventKind.CREATED), T0, policy)
    d = step(d.state, ev(Priority.LOW, Status.RESOLVED), T0 + H, policy)
    due = d.state.write_up_due
    assert due is not None
    fired = on_timer(d.state, TimerKind.WRITE_UP, due=due, now=due, policy=policy)
    assert targets(fired) == ["github:write_up_reminder"]
    reminder = fired.effects[0].payload
    assert reminder["uses"] == {"issue": "github:freshdesk/42:write_up:1"}
    assert reminder["only_if_open"] is True
    assert [t["kind"] for t in reminder["then"]] == ["write_up_note"]
    again = on_timer(fired.state, TimerKind.WRITE_UP, due=due, now=due + H, policy=policy)
    assert again.effects == ()
    assert plan_timers(fired.state, policy)[TimerKind.WRITE_UP][0] is None


def test_a_priority_without_write_up_in_policy_gets_none(policy: Policy) -> None:
    document = policy.model_dump(mode="json")
    document["priorities"]["low"].pop("write_up")
    no_low = Policy.model_validate(document)
    d = step(None, ev(Priority.LOW, kind=EventKind.CREATED), T0, no_low)
    d = step(d.state, ev(Priority.LOW, Status.RESOLVED), T0 + H, no_low)
    assert targets(d) == []
    assert d.state.write_up_due is None


def test_first_seen_already_resolved_has_no_write_up(policy: Policy) -> None:
    d = step(None, ev(status=Status.RESOLVED, kind=EventKind.CREATED), T0, policy)
    assert targets(d) == []


def test_the_timeline_records_what_happened_with_times(policy: Policy) -> None:
    d = step(None, ev(kind=EventKind.CREATED), T0, policy)
    d = step(d.state, ev(kind=EventKind.AGENT_REPLY), T0 + 10 * M, policy)
    d = step(d.state, ev(Priority.MEDIUM, kind=EventKind.PRIORITY_CHANGED), T0 + 20 * M, policy)
    d = step(d.state, ev(Priority.MEDIUM, Status.PENDING), T0 + 30 * M, policy)
    d = step(d.state, ev(Priority.MEDIUM, kind=EventKind.CUSTOMER_REPLY), T0 + 40 * M, policy)
    history = [(m.at - T0, m.what) for m in d.state.history]
    assert history == [
        (0 * M, "Opened as Urgent (Open)"),
        (0 * M, "Paged VictorOps (CRITICAL)"),
        (10 * M, "Engaged: first public agent reply"),
        (10 * M, "Customer updated (public agent reply)"),
        (20 * M, "Priority changed Urgent → Medium"),
        (20 * M, "VictorOps incident resolved (RECOVERY)"),
        (30 * M, "Status Open → Pending"),
        (40 * M, "Status Pending → Open"),
        (40 * M, "Customer replied"),
    ]


def test_the_timeline_is_bounded(policy: Policy) -> None:
    d = step(None, ev(kind=EventKind.CREATED), T0, policy)
    state = d.state
    for i in range(300):
        state = step(state, ev(kind=EventKind.AGENT_REPLY), T0 + i * M, policy).state
    assert len(state.history) == 200
    assert state.history[-1].at == T0 + 299 * M  # the newest entry is always kept


def test_follow_up_tag_counts_occurrences_and_unknown_tags_change_nothing(
    policy: Policy,
) -> None:
    d = step(None, ev(kind=EventKind.CREATED, tags=("github-followup",)), T0, policy)
    assert targets(d) == ["victorops:page", "github:followup"]
    assert d.effects[1].key == "github:freshdesk/42:followup:1"
    d = step(d.state, ev(tags=None), T0 + M, policy)  # the webhook did not report tags
    assert targets(d) == []
    assert d.state.tags == ("github-followup",)
    d = step(d.state, ev(tags=("GitHub-Followup", "vip")), T0 + 2 * M, policy)
    assert targets(d) == []  # still on (tags compare case-insensitively)
    d = step(d.state, ev(tags=()), T0 + 3 * M, policy)
    d = step(d.state, ev(tags=("github-followup",)), T0 + 4 * M, policy)
    assert targets(d) == ["github:followup"]
    assert d.effects[0].key == "github:freshdesk/42:followup:2"


def test_admin_follow_up_needs_a_known_ticket_and_changes_no_snapshot(policy: Policy) -> None:
    request = ev(Priority.LOW, Status.CLOSED, EventKind.FOLLOWUP_REQUESTED, change={"title": "T"})
    with pytest.raises(ValueError, match="already knows"):
        step(None, request, T0, policy)
    d = step(None, ev(kind=EventKind.CREATED), T0, policy)
    after = step(d.state, request, T0 + M, policy)
    assert targets(after) == ["github:followup"]
    assert after.effects[0].payload["title"] == "T"
    # Priority, status and last_event_at stay what the helpdesk last said.
    assert after.state.priority is Priority.URGENT
    assert after.state.status is Status.OPEN
    assert after.state.last_event_at == d.state.last_event_at
    assert after.timers == ()


def test_status_page_follows_the_ticket(policy: Policy) -> None:
    d = step(None, ev(kind=EventKind.CREATED, tags=("system-wide", "component:API")), T0, policy)
    opened = next(e for e in d.effects if e.target == "statuspage")
    assert opened.payload["components"] == ["API"]
    assert opened.payload["status"] == "investigating"
    assert opened.payload["impact"] == "critical"
    assert opened.payload["component_status"] == "major_outage"
    assert opened.key == "statuspage:freshdesk/42:open:1"
    due = T0 + 30 * M
    d = on_timer(d.state, TimerKind.TIER_ONE, due=due, now=due, policy=policy)
    update = next(e for e in d.effects if e.target == "statuspage")
    assert update.payload["status"] == "identified"
    assert update.payload["uses"] == {"incident": "statuspage:freshdesk/42:open:1"}
    d = step(d.state, ev(status=Status.PENDING), T0 + 40 * M, policy)
    assert [e.payload["status"] for e in d.effects if e.target == "statuspage"] == ["monitoring"]
    d = step(d.state, ev(status=Status.PENDING), T0 + 41 * M, policy)
    assert [e for e in d.effects if e.target == "statuspage"] == []  # nothing changed
    d = step(d.state, ev(status=Status.RESOLVED), T0 + 50 * M, policy)
    resolve = [e for e in d.effects if e.target == "statuspage"]
    assert [e.kind for e in resolve] == ["resolve"]
    assert resolve[0].payload["components"] == ["API"]
    d = step(d.state, ev(status=Status.OPEN, tags=("system-wide",)), T0 + 60 * M, policy)
    assert [e for e in d.effects if e.target == "statuspage"] == []  # one incident per ticket


def test_a_custom_field_or_resolved_ticket(policy: Policy) -> None:
    d = step(None, ev(Priority.MEDIUM, kind=EventKind.CREATED, system_wide=True), T0, policy)
    opened = next(e for e in d.effects if e.target == "statuspage")
    assert opened.payload["impact"] == "minor"
    assert opened.payload["components"] == []
    d = step(None, ev(status=Status.RESOLVED, tags=("system-wide",)), T0, policy)
    assert [e for e in d.effects if e.target == "statuspage"] == []


@pytest.mark.parametrize(
    ("labels", "ok"),
    [
        (["post-event", "priority:{priority}"], True),
        (["sev-{severity}"], False),
        (["{priority"], False),
        ([""], False),
        (["x" * 51], False),
    ],
)
def test_policy_labels_allow_only_the_priority_placeholder(
    policy: Policy, labels: list[str], ok: bool
) -> None:
    document = policy.model_dump(mode="json")
    document["priorities"]["urgent"]["write_up"]["labels"] = labels
    if ok:
        Policy.model_validate(document)
    else:
        with pytest.raises(ValidationError, match="placeholder"):
            Policy.model_validate(document)


def test_status_page_policy_needs_every_priority(policy: Policy) -> None:
    document = policy.model_dump(mode="json")
    document["status_page"]["impact"].pop("low")
    with pytest.raises(ValidationError, match=r"status_page\.impact: missing low"):
        Policy.model_validate(document)


def test_a_time_from_the_future_never_pushes_deadlines_out_of_reach(policy: Policy) -> None:
    ahead = T0 + timedelta(days=365 * 70)  # a helpdesk clock far ahead, or a forged time
    d = step(None, ev(kind=EventKind.CREATED, occurred_at=ahead), T0, policy)
    assert d.state.opened_at == T0  # deadlines anchor on our clock
    assert plan_timers(d.state, policy)[TimerKind.TIER_ONE][0] == T0 + 30 * M
    assert d.state.last_event_at == ahead  # ordering still follows the helpdesk's times
    older = step(d.state, ev(status=Status.RESOLVED, occurred_at=ahead - M), T0 + M, policy)
    assert older.stale


@given(
    st.datetimes(
        timezones=st.one_of(st.none(), st.just(UTC), st.timezones()),
        allow_imaginary=True,
    )
)
def test_timeline_stamps_are_strftimes(at: datetime) -> None:
    """The write-up's stamps are formatted without strftime; they read the same."""
    assert _stamp(at) == at.strftime("%Y-%m-%d %H:%M:%S UTC")
