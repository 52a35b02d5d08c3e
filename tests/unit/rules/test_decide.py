"""decide(): every priority against every event kind and status, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules import fields as rules_fields
from ticketbridge.rules.model import (
    ADMIN_EVENTS,
    Decision,
    Effect,
    EffectBudget,
    Milestone,
    StatusPageState,
    TimerChange,
    TimerKind,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# What a helpdesk webhook can report (admin requests need a known ticket: test_aftercare.py).
HELPDESK_EVENTS = [kind for kind in EventKind if kind not in ADMIN_EVENTS]


def event(
    priority: Priority,
    status: Status = Status.OPEN,
    kind: EventKind = EventKind.CREATED,
    *,
    at: datetime | None = None,
    ticket: str = "11",
) -> TicketEvent:
    return TicketEvent(
        source="freshdesk",
        ticket_id=ticket,
        kind=kind,
        priority=priority,
        status=status,
        status_label=status.value.capitalize(),
        domain="acme",
        url=f"https://acme.freshdesk.com/a/tickets/{ticket}",
        subject="Checkout fails",
        occurred_at=at,
    )


def run(policy: Policy, *events: TicketEvent) -> tuple[TicketState, list[str]]:
    state: TicketState | None = None
    kinds: list[str] = []
    for i, ev in enumerate(events):
        decision = decide(state, ev, now=NOW + timedelta(minutes=i), policy=policy)
        state = decision.state
        kinds.extend(
            f"{e.kind}:{e.payload['message_type']}"
            for e in decision.effects
            if e.target == "victorops"
        )
    assert state is not None
    return state, kinds


PAGES = {Priority.URGENT: True, Priority.HIGH: True, Priority.MEDIUM: False, Priority.LOW: False}


@pytest.mark.parametrize("priority", list(Priority))
@pytest.mark.parametrize("kind", HELPDESK_EVENTS)
@pytest.mark.parametrize("status", list(Status))
def test_first_event_pages_only_open_urgent_and_high(
    policy: Policy, priority: Priority, kind: EventKind, status: Status
) -> None:
    _, effects = run(policy, event(priority, status, kind))
    expected = ["page:CRITICAL"] if PAGES[priority] and status.is_active else []
    assert effects == expected


@pytest.mark.parametrize("priority", [Priority.URGENT, Priority.HIGH])
@pytest.mark.parametrize("final", [Status.RESOLVED, Status.CLOSED])
def test_resolving_or_closing_a_paged_ticket_recovers_it(
    policy: Policy, priority: Priority, final: Status
) -> None:
    state, effects = run(policy, event(priority), event(priority, final, EventKind.STATUS_CHANGED))
    assert effects == ["page:CRITICAL", "recover:RECOVERY"]
    assert state.incident_open is False


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (Priority.URGENT, Priority.HIGH, []),
        (Priority.HIGH, Priority.URGENT, []),
        (Priority.URGENT, Priority.MEDIUM, ["recover:RECOVERY"]),
        (Priority.HIGH, Priority.LOW, ["recover:RECOVERY"]),
        (Priority.LOW, Priority.URGENT, ["page:CRITICAL"]),
        (Priority.MEDIUM, Priority.HIGH, ["page:CRITICAL"]),
        (Priority.MEDIUM, Priority.LOW, []),
    ],
)
def test_priority_changes(
    policy: Policy, before: Priority, after: Priority, expected: list[str]
) -> None:
    _, first = run(policy, event(before))
    _, effects = run(policy, event(before), event(after, kind=EventKind.PRIORITY_CHANGED))
    assert effects[len(first) :] == expected


def test_pending_keeps_the_incident_open(policy: Policy) -> None:
    state, effects = run(
        policy,
        event(Priority.URGENT),
        event(Priority.URGENT, Status.PENDING, EventKind.STATUS_CHANGED),
    )
    assert effects == ["page:CRITICAL"]
    assert state.incident_open


def test_a_reopened_ticket_pages_again_with_a_new_generation_and_the_same_entity(
    policy: Policy,
) -> None:
    state: TicketState | None = None
    keys, entities = [], set()
    for ev in (
        event(Priority.HIGH),
        event(Priority.HIGH, Status.RESOLVED, EventKind.STATUS_CHANGED),
        event(Priority.HIGH, Status.OPEN, EventKind.STATUS_CHANGED),
    ):
        decision = decide(state, ev, now=NOW, policy=policy)
        state = decision.state
        paging = [e for e in decision.effects if e.target == "victorops"]
        keys += [e.key for e in paging]
        entities |= {e.payload["entity_id"] for e in paging}
    assert keys == [
        "victorops:freshdesk/11:page:1",
        "victorops:freshdesk/11:recover:1",
        "victorops:freshdesk/11:page:2",
    ]
    assert entities == {"freshdesk/acme/ticket/11"}


def test_an_event_older_than_the_state_is_stale_and_changes_nothing(policy: Policy) -> None:
    t0 = NOW - timedelta(hours=1)
    state = decide(None, event(Priority.URGENT, at=t0), now=NOW, policy=policy).state
    resolved = decide(
        state,
        event(
            Priority.URGENT,
            Status.RESOLVED,
            EventKind.STATUS_CHANGED,
            at=t0 + timedelta(minutes=30),
        ),
        now=NOW,
        policy=policy,
    ).state
    stale = decide(
        resolved,
        event(Priority.URGENT, Status.OPEN, EventKind.UPDATED, at=t0 + timedelta(minutes=10)),
        now=NOW,
        policy=policy,
    )
    assert stale.stale
    assert stale.effects == ()
    assert stale.state == resolved


def test_the_opening_policy_is_pinned_in_the_state(policy: Policy) -> None:
    state, _ = run(policy, event(Priority.LOW))
    assert state.policy == policy.fingerprint
    assert state.opened_at == NOW


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(list(Priority)),
            st.sampled_from(list(Status)),
            st.sampled_from(HELPDESK_EVENTS),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_decide_is_deterministic_and_medium_low_never_page(
    events: list[tuple[Priority, Status, EventKind]],
) -> None:
    from ticketbridge.app.policy_file import load_policy

    policy = load_policy(None)
    evs = [event(p, s, k) for p, s, k in events]
    first = run(policy, *evs)
    second = run(policy, *evs)
    assert first == second
    state: TicketState | None = None
    open_incident = False
    for ev in evs:
        decision = decide(state, ev, now=NOW, policy=policy)
        for effect in decision.effects:
            if effect.target != "victorops":
                continue
            if effect.kind == "page":
                assert ev.priority in (Priority.URGENT, Priority.HIGH)
                assert not open_incident
                open_incident = True
            else:
                assert open_incident
                open_incident = False
        state = decision.state
        # Applying the same event again (a duplicate that slipped past the inbox) adds nothing.
        again = decide(state, ev, now=NOW, policy=policy)
        assert again.effects == ()
        assert again.state == state


@pytest.mark.parametrize("enum", [Priority, Status, EventKind, TimerKind])
def test_the_rules_enums_read_their_values_as_enum_does(enum: type[StrEnum]) -> None:
    """Their ``value`` is a plain attribute read (see ``model._StrEnum``), the same as Enum's."""
    enums_own = Enum.__dict__["value"]
    for member in enum:
        assert type(member.value) is str
        assert member.value == enums_own.__get__(member, enum) == str(member)
        assert enum(member.value) is member


@pytest.mark.parametrize(
    ("fields", "model", "partial"),
    [
        (rules_fields.TicketFields, TicketState, False),
        (rules_fields.TicketUpdate, TicketState, True),
        (rules_fields.StatusPageUpdate, StatusPageState, True),
        (rules_fields._MilestoneFields, Milestone, False),
        (rules_fields._EffectFields, Effect, False),
        (rules_fields._TimerChangeFields, TimerChange, False),
        (rules_fields._BudgetFields, EffectBudget, False),
        (rules_fields._DecisionFields, Decision, False),
    ],
)
def test_typed_fields_name_the_models_fields(
    fields: type, model: type[BaseModel], partial: bool
) -> None:
    """The TypedDicts mypy checks the rules' constructions against name exactly their model's
    fields, required where the model requires them (none required in an update)."""
    assert set(fields.__annotations__) == set(model.model_fields)
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert fields.__required_keys__ == (set() if partial else required)  # type: ignore[attr-defined]
