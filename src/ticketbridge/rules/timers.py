"""Time-based commitments: which timers a ticket needs, and what a timer does when it fires."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from ticketbridge.rules.aftercare import record, sync_status_page, write_up_reminder
from ticketbridge.rules.calendar import calendar_for
from ticketbridge.rules.durations import format_duration
from ticketbridge.rules.effects import bridge, close_ticket, note, reassign, victorops_info
from ticketbridge.rules.model import (
    Decision,
    Effect,
    Priority,
    Status,
    TicketState,
    TimerChange,
    TimerKind,
)
from ticketbridge.rules.policy import CalendarSpec, Policy

Plan = dict[TimerKind, tuple[datetime | None, str]]
TIMER_KINDS = tuple(TimerKind)  # iterating an Enum class is slow; this is on the hot path


@functools.lru_cache(maxsize=4096)
def _due_in_business_time(
    spec: CalendarSpec | None, start: datetime, within: timedelta
) -> datetime:
    """``start`` plus ``within`` of the calendar's open time (pure: cached, since a timer's
    firing plans the same ticket twice, before and after)."""
    return calendar_for(spec).add(start, within)


_RULES_TEXT: dict[tuple[int, Priority], tuple[Policy, dict[TimerKind, str]]] = {}


def _rules_text(policy: Policy, priority: Priority) -> dict[TimerKind, str]:
    """The rule each timer of ``priority`` follows, as the timeline shows it (built once per
    policy object: a pure function of the policy, so caching it changes no result). Keyed by
    the object's id, which the entry keeps alive so the id cannot be reused; a policy's
    fingerprint would do too but costs a pydantic private-attribute lookup per call."""
    cached = _RULES_TEXT.get((id(policy), priority))
    if cached is None or cached[0] is not policy:
        if len(_RULES_TEXT) >= 256:  # bounded: simulations bring policies of their own
            _RULES_TEXT.clear()
        cached = _RULES_TEXT[(id(policy), priority)] = (policy, _describe(policy, priority))
    return cached[1]


def _describe(policy: Policy, priority: Priority) -> dict[TimerKind, str]:
    rules = policy.for_priority(priority)
    label = priority.label
    engagement = rules.engagement
    text = {
        TimerKind.TIER_ONE: f"Tier-One window for {label} is "
        f"{format_duration(rules.tier_one.within)}, then {rules.tier_one.then}",
        TimerKind.ENGAGEMENT: f"initial engagement for {label} within "
        f"{format_duration(engagement.within)}"
        + (f" ({engagement.calendar} calendar)" if engagement.calendar else ""),
        TimerKind.AUTO_CLOSE: f"Pending for {format_duration(policy.pending.auto_close_after)} "
        "with no customer reply closes the ticket",
    }
    if rules.write_up is not None:
        text[TimerKind.WRITE_UP] = (
            f"post-event write-up for {label} due within "
            f"{format_duration(rules.write_up.within)} of resolution"
        )
    if rules.customer_updates is not None:
        text[TimerKind.CUSTOMER_UPDATE] = (
            f"customer update for {label} every {format_duration(rules.customer_updates.every)}"
        )
    return text


def plan_timers(state: TicketState, policy: Policy) -> Plan:
    """Every timer the ticket needs now, with its due time (None: not needed) and rule."""
    plan: Plan = dict.fromkeys(TIMER_KINDS, (None, ""))
    text = _rules_text(policy, state.priority)
    if state.write_up_due is not None and not state.write_up_reminded:
        # Armed at resolution: it outlives the ticket's other commitments.
        plan[TimerKind.WRITE_UP] = (state.write_up_due, text.get(TimerKind.WRITE_UP, ""))
    if not state.status.is_active:
        return plan
    rules = policy.for_priority(state.priority)
    if not state.tier_one_done:
        plan[TimerKind.TIER_ONE] = (
            state.opened_at + rules.tier_one.within,
            text[TimerKind.TIER_ONE],
        )
    if state.engaged_at is None and not state.engagement_breached:
        spec = rules.engagement
        calendar = policy.calendars.get(spec.calendar) if spec.calendar else None
        plan[TimerKind.ENGAGEMENT] = (
            _due_in_business_time(calendar, state.opened_at, spec.within),
            text[TimerKind.ENGAGEMENT],
        )
    if rules.customer_updates is not None and state.status is Status.OPEN:
        base = state.cadence_base or state.opened_at
        plan[TimerKind.CUSTOMER_UPDATE] = (
            base + rules.customer_updates.every * (state.update_reminders + 1),
            text[TimerKind.CUSTOMER_UPDATE],
        )
    if state.status is Status.PENDING and state.pending_since and not state.auto_close_requested:
        plan[TimerKind.AUTO_CLOSE] = (
            state.pending_since + policy.pending.auto_close_after,
            text[TimerKind.AUTO_CLOSE],
        )
    return plan


def timer_changes(before: Plan | None, after: Plan) -> tuple[TimerChange, ...]:
    """The changes that turn the ``before`` plan into ``after`` (all of it when new)."""
    changes = []
    for kind, (due, rule) in after.items():
        old = before.get(kind, (None, ""))[0] if before is not None else None
        if before is None and due is None:
            continue
        if old != due:
            changes.append(TimerChange(kind=kind, due=due, rule=rule))
    return tuple(changes)


def on_timer(
    state: TicketState, kind: TimerKind, *, due: datetime, now: datetime, policy: Policy
) -> Decision:
    """A timer came due: act if the ticket still needs it, and re-plan the ticket's timers."""
    plan = plan_timers(state, policy)
    planned, rule = plan[kind]
    if planned is None or planned > now:
        why = "no longer needed" if planned is None else f"moved to {planned.isoformat()}"
        return Decision(
            state=state,
            timers=timer_changes({kind: (due, "")}, {kind: plan[kind]}),
            notes=(f"{kind.value} timer due {due.isoformat()} {why}: nothing to do",),
        )
    effects: list[Effect] = []
    label = state.priority.label
    late = (now - planned).total_seconds()
    notes = [f"{kind.value} fired ({rule}); due {planned.isoformat()}, {late:.0f}s late"]
    if kind is TimerKind.TIER_ONE:
        state = state.model_copy(update={"tier_one_done": True, "tier_two_engaged": True})
        why = f"{rule}; unresolved at {planned.isoformat()}"
        if policy.for_priority(state.priority).tier_one.then == "bridge":
            effects.append(bridge(state, why))
            state = record(state, now, "Tier-One window expired: VictorOps bridge for Tier Two")
        else:
            group = policy.escalation.reassign_group
            state = record(state, now, f"Tier-One window expired: handed to {group}")
            effects.append(reassign(state, group, why))
            effects.append(
                note(
                    state,
                    "tier-one-reassigned",
                    f"Tier-One window for {label} expired unresolved: the ticket is unassigned "
                    f"and handed to the {group} group.",
                    why,
                )
            )
    elif kind is TimerKind.ENGAGEMENT:
        state = record(
            state.model_copy(update={"engagement_breached": True}),
            now,
            "Initial engagement SLA missed",
        )
        text = f"Initial engagement SLA missed: {rule}; nobody engaged by {planned:%Y-%m-%d %H:%M}."
        effects.append(note(state, "engagement-breach", text, rule))
        if state.incident_open:
            effects.append(victorops_info(state, "engagement-breach", text, rule))
    elif kind is TimerKind.CUSTOMER_UPDATE:
        state = record(
            state.model_copy(update={"update_reminders": state.update_reminders + 1}),
            now,
            "Customer update overdue",
        )
        text = (
            f"Customer update overdue: {rule}; the last one was due {planned:%Y-%m-%d %H:%M} UTC."
        )
        key = f"update-{int(planned.timestamp())}"
        effects.append(note(state, key, text, rule))
        if state.incident_open:
            effects.append(victorops_info(state, key, text, rule))
    elif kind is TimerKind.AUTO_CLOSE:
        state = record(
            state.model_copy(update={"auto_close_requested": True}),
            now,
            "Pending with no customer reply: closed by ticketbridge",
        )
        effects.append(
            note(
                state,
                "auto-close",
                f"Closed by ticketbridge: {rule}.",
                rule,
            )
        )
        effects.append(close_ticket(state, rule))
    elif kind is TimerKind.WRITE_UP:
        state = state.model_copy(update={"write_up_reminded": True})
        effects.append(write_up_reminder(state, rule))
    state, status_effects = sync_status_page(state, policy)
    effects.extend(status_effects)
    new_plan = plan_timers(state, policy)
    return Decision(
        state=state,
        effects=tuple(effects),
        timers=timer_changes(plan, new_plan),
        notes=tuple(notes),
    )
