"""Pure rules for timers after downtime: re-arming a late recurring commitment, and the
per-ticket ceiling on effects (``rules.limits``), with its policy key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from ticketbridge.app.policy_file import PolicyError, default_policy_text, load_policy, parse_policy
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules.effects import DEAD_LETTER, note, page, recover, victorops_info
from ticketbridge.rules.limits import charge, hour_of
from ticketbridge.rules.model import Effect, TimerKind
from ticketbridge.rules.timers import (
    complete_timer,
    next_due,
    on_timer,
    plan_timers,
    prepare_timer,
    settle,
    settled_until,
)

S = timedelta(seconds=1)
H = timedelta(hours=1)
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLANNED = T0 + 20 * S


@pytest.mark.parametrize(
    ("late", "period", "expected"),
    [
        (0 * S, 5 * S, PLANNED + 5 * S),  # on time: the schedule goes on
        (1 * S, 5 * S, PLANNED + 5 * S),  # a little late: still on the schedule
        (4.999 * S, 5 * S, PLANNED + 5 * S),  # the next one is still ahead
        (5 * S, 5 * S, PLANNED + 10 * S),  # the next one is due now: one period from now
        (60 * S, 5 * S, PLANNED + 65 * S),  # a 60 s outage: 5 s after the restart
        (3653 * 24 * H, H, PLANNED + 3653 * 24 * H + H),  # ten years: an hour from now
    ],
)
def test_a_recurring_commitment_re_arms_on_schedule_or_one_period_after_it_fired(
    late: timedelta, period: timedelta, expected: datetime
) -> None:
    assert next_due(PLANNED, period, PLANNED + late) == expected
    assert next_due(PLANNED, period, PLANNED + late) > PLANNED + late  # never due at once


def _event(status: Status = Status.OPEN, **extra: object) -> TicketEvent:
    return TicketEvent.model_validate(
        {
            "source": "freshdesk",
            "ticket_id": "7",
            "kind": EventKind.CREATED,
            "priority": Priority.URGENT,
            "status": status,
            "status_label": status.value.capitalize(),
            **extra,
        }
    )


def _policy(**changes: object) -> Policy:
    document = yaml.safe_load(default_policy_text())
    document["priorities"]["urgent"]["customer_updates"] = {"every": "5s"}
    document.update(changes)
    return parse_policy(yaml.safe_dump(document))


def _catch_up(state: TicketState, policy: Policy, now: datetime) -> tuple[TicketState, int]:
    """What a scheduler does at ``now``: fire whatever is due, again and again, until nothing
    is (bounded); the ticket and how many times its customer-update timer acted."""
    acted = 0
    for _ in range(1000):
        due = {k: d for k, (d, _) in plan_timers(state, policy).items() if d and d <= now}
        if not due:
            return state, acted
        kind, when = min(due.items(), key=lambda item: item[1])
        decision = on_timer(state, kind, due=when, now=now, policy=policy)
        acted += kind is TimerKind.CUSTOMER_UPDATE and bool(decision.effects)
        state = decision.state
    raise AssertionError("the timers never caught up")


def test_a_ticket_opened_ten_years_ago_acts_once_per_commitment_and_re_arms_from_now() -> None:
    policy = load_policy(None)
    now = T0
    opened = decide(None, _event(occurred_at=now - 3653 * 24 * H), now=now, policy=policy)
    state, reminders = _catch_up(opened.state, policy, now)
    assert reminders == 1
    assert state.engagement_breached
    assert state.tier_one_done
    assert plan_timers(state, policy)[TimerKind.CUSTOMER_UPDATE][0] == now + H
    assert any("periods missed at once" in m.what for m in state.history)


def test_an_outage_of_twelve_periods_gives_one_reminder_then_the_schedule_resumes() -> None:
    policy = _policy()
    state = decide(None, _event(), now=T0, policy=policy).state
    state, reminders = _catch_up(state, policy, T0 + 65 * S)
    assert reminders == 1
    assert plan_timers(state, policy)[TimerKind.CUSTOMER_UPDATE][0] == T0 + 70 * S
    # Back on time, the next firing keeps the schedule (no drift by its own lateness).
    state, reminders = _catch_up(state, policy, T0 + 70.2 * S)
    assert reminders == 1
    assert plan_timers(state, policy)[TimerKind.CUSTOMER_UPDATE][0] == T0 + 75 * S


def test_a_firing_worked_out_ahead_stands_until_a_period_late_or_the_hour_ends() -> None:
    policy = _policy()
    state = decide(None, _event(), now=T0, policy=policy).state
    firing = prepare_timer(state, TimerKind.CUSTOMER_UPDATE, due=T0 + 5 * S, policy=policy)
    until = settled_until(firing)
    assert until == T0 + 10 * S
    ahead = settle(firing, now=T0 + 5 * S)
    for at in (T0 + 5 * S, T0 + 9.9 * S):
        assert complete_timer(firing, now=at).timers == ahead.timers
        assert complete_timer(firing, now=at).effects == ahead.effects
    assert complete_timer(firing, now=until).timers != ahead.timers  # re-armed from then
    # Due two seconds before the hour ends: the ceiling's hour ends first.
    state = decide(None, _event(), now=T0 + H - 7 * S, policy=policy).state
    firing = prepare_timer(state, TimerKind.CUSTOMER_UPDATE, due=T0 + H - 2 * S, policy=policy)
    assert settled_until(firing) == hour_of(T0) + H


def _effects(state: TicketState) -> tuple[Effect, ...]:
    return (
        page(state, "paged", T0),
        note(state, "a", "one", "why"),
        victorops_info(state, "a", "one", "why"),
        note(state, "b", "two", "why"),
        recover(state, "recovered", T0),
    )


def test_the_ceiling_holds_back_counted_effects_with_one_breach_per_hour() -> None:
    state = decide(None, _event(), now=T0, policy=load_policy(None)).state
    state, made, held = charge(state, _effects(state), now=T0, limit=2)
    assert [e.kind for e in made] == ["page", "note", "info", "recover", "limit_breach"]
    assert held == 1
    breach = made[-1]
    assert breach.target == DEAD_LETTER
    assert "effects_per_ticket_per_hour (2)" in breach.reason
    # Later in the same hour: held back again, no second breach; pages still go.
    state, made, held = charge(state, _effects(state), now=T0 + 30 * 60 * S, limit=2)
    assert [e.kind for e in made] == ["page", "recover"]
    assert held == 3
    assert state.budget is not None
    assert (state.budget.made, state.budget.held) == (2, 4)
    # The next hour starts afresh.
    state, made, held = charge(state, _effects(state), now=T0 + H, limit=2)
    assert [e.kind for e in made] == ["page", "note", "info", "recover", "limit_breach"]
    assert made[-1].key != breach.key


def test_pages_and_recoveries_are_never_counted_or_held() -> None:
    state = decide(None, _event(), now=T0, policy=load_policy(None)).state
    lifecycle = tuple(e for e in _effects(state) if e.kind in ("page", "recover")) * 50
    after, made, held = charge(state, lifecycle, now=T0, limit=1)
    assert made == lifecycle
    assert held == 0
    assert after.budget is None


def test_a_decision_over_the_ceiling_says_so_in_its_notes() -> None:
    policy = _policy(limits={"effects_per_ticket_per_hour": 1})
    state = decide(None, _event(), now=T0, policy=policy).state
    due = T0 + 5 * S
    fired = on_timer(state, TimerKind.CUSTOMER_UPDATE, due=due, now=due, policy=policy)
    kinds = [e.kind for e in fired.effects]
    assert kinds == ["note", "limit_breach"]  # the INFO was the one too many
    assert any("effects_per_ticket_per_hour (1) reached: 1 effect(s)" in n for n in fired.notes)


def test_states_stored_before_the_budget_existed_read_back_the_same() -> None:
    state = decide(None, _event(), now=T0, policy=load_policy(None)).state
    stored = json.loads(state.model_dump_json())
    assert "budget" not in stored  # a ticket with no counted effect is stored as before
    assert TicketState.model_validate(stored) == state
    charged, _, _ = charge(state, _effects(state), now=T0, limit=60)
    again = TicketState.model_validate_json(charged.model_dump_json())
    assert again == charged
    assert again.budget is not None
    assert again.budget.made == 3


def test_the_ceiling_defaults_to_sixty_and_leaves_the_fingerprint_alone() -> None:
    policy = load_policy(None)
    assert policy.limits.effects_per_ticket_per_hour == 60
    assert policy.fingerprint == "1@034e695a06c8"  # as before the key existed
    assert _policy(limits={"effects_per_ticket_per_hour": 61}).fingerprint != _policy().fingerprint


@pytest.mark.parametrize(
    ("limits", "key", "message"),
    [
        ("{effects_per_ticket_per_hour: 0}", "limits.effects_per_ticket_per_hour", "greater"),
        ("{effects_per_ticket_per_hour: true}", "limits.effects_per_ticket_per_hour", "integer"),
        ("{effects_per_ticket_per_hour: '5'}", "limits.effects_per_ticket_per_hour", "integer"),
        ("{effects_per_ticket: 5}", "limits.effects_per_ticket", "unknown key"),
    ],
)
def test_bad_limits_name_the_key_and_the_line(limits: str, key: str, message: str) -> None:
    default = "limits: {effects_per_ticket_per_hour: 60}\n"
    assert default_policy_text().endswith(default)
    text = default_policy_text().replace(default, f"limits: {limits}\n")
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    [(found, line, why)] = raised.value.problems
    assert found == key
    assert message in why
    assert line == text.count("\n")  # the last line, where the key is
