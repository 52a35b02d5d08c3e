"""Time-based commitments: which timers a ticket needs, and what a timer does when it fires."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from ticketbridge.rules.aftercare import record, sync_status_page, write_up_reminder
from ticketbridge.rules.calendar import calendar_for
from ticketbridge.rules.durations import format_duration
from ticketbridge.rules.effects import bridge, close_ticket, note, reassign, victorops_info
from ticketbridge.rules.fields import new_decision, new_timer_change, updated
from ticketbridge.rules.limits import HOUR, charge, held_note, hour_of
from ticketbridge.rules.model import (
    Decision,
    Effect,
    Priority,
    Status,
    TicketState,
    TimerChange,
    TimerKind,
)
from ticketbridge.rules.policy import ALL_DAYS, CalendarSpec, Policy


class Planned(NamedTuple):
    """One timer of a plan: when it is due (None: not needed), and the rule that sets it."""

    due: datetime | None
    rule: str


NOT_PLANNED = Planned(None, "")
# Builds a Planned as its constructor does, without the Python frame of a NamedTuple's
# ``__new__``: plan_timers builds several per event, twice.
_planned: Callable[[type[Planned], tuple[datetime | None, str]], Planned] = tuple.__new__
Plan = dict[TimerKind, Planned]
# Members as module globals and tuples: Python 3.11 looks Enum class attributes up through a
# slow hook, and iterates an Enum class slowly.
TIMER_KINDS = tuple(TimerKind)
ACTIVE = tuple(status for status in Status if status.is_active)
TIER_ONE, ENGAGEMENT = TimerKind.TIER_ONE, TimerKind.ENGAGEMENT
CUSTOMER_UPDATE, AUTO_CLOSE, WRITE_UP = (
    TimerKind.CUSTOMER_UPDATE,
    TimerKind.AUTO_CLOSE,
    TimerKind.WRITE_UP,
)
OPEN, PENDING = Status.OPEN, Status.PENDING


@functools.lru_cache(maxsize=4096)
def _due_in_business_time(
    spec: CalendarSpec | None, start: datetime, within: timedelta
) -> datetime:
    """``start`` plus ``within`` of the calendar's open time (pure: cached, since a timer's
    firing plans the same ticket twice, before and after)."""
    return calendar_for(spec).add(start, within)


class _Rules:
    """What planning needs of one priority under one policy, resolved once: a pure function
    of the policy, so caching it changes no result."""

    __slots__ = (
        "auto_close",
        "cadence",
        "calendar",
        "engagement",
        "memo",
        "policy",
        "spec",
        "text",
        "tier_one",
    )

    def __init__(self, policy: Policy, priority: Priority) -> None:
        rules = policy.for_priority(priority)
        self.policy = policy  # kept alive: the cache is keyed by its id
        self.text = _describe(policy, priority)
        self.tier_one = rules.tier_one.within
        self.engagement = rules.engagement.within
        name = rules.engagement.calendar
        self.spec = policy.calendars.get(name) if name else None
        self.calendar = calendar_for(self.spec)
        # Memoise only calendars whose add() scans days; plain elapsed time is cheaper to
        # compute than to look up. (Either way the result is calendar.add's.)
        spec = self.spec
        self.memo = spec is not None and not (
            frozenset(spec.days) == frozenset(ALL_DAYS) and spec.hours is None and not spec.holidays
        )
        self.cadence = rules.customer_updates.every if rules.customer_updates else None
        self.auto_close = policy.pending.auto_close_after

    def engagement_due(self, start: datetime) -> datetime:
        if self.memo:
            return _due_in_business_time(self.spec, start, self.engagement)
        return self.calendar.add(start, self.engagement)


_RULES: dict[tuple[int, Priority], _Rules] = {}


def _rules(policy: Policy, priority: Priority) -> _Rules:
    """``_Rules`` of ``priority`` under ``policy``, built once per policy object. Keyed by the
    object's id, which the entry keeps alive so the id cannot be reused."""
    cached = _RULES.get((id(policy), priority))
    if cached is None or cached.policy is not policy:
        if len(_RULES) >= 256:  # bounded: simulations bring policies of their own
            _RULES.clear()
        cached = _RULES[(id(policy), priority)] = _Rules(policy, priority)
    return cached


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
    plan: Plan = dict.fromkeys(TIMER_KINDS, NOT_PLANNED)
    rules = _rules(policy, state.priority)
    text = rules.text
    if state.write_up_due is not None and not state.write_up_reminded:
        # Armed at resolution: it outlives the ticket's other commitments.
        plan[WRITE_UP] = _planned(Planned, (state.write_up_due, text.get(WRITE_UP, "")))
    status = state.status
    if status not in ACTIVE:
        return plan
    if not state.tier_one_done:
        plan[TIER_ONE] = _planned(Planned, (state.opened_at + rules.tier_one, text[TIER_ONE]))
    if state.engaged_at is None and not state.engagement_breached:
        plan[ENGAGEMENT] = _planned(
            Planned, (rules.engagement_due(state.opened_at), text[ENGAGEMENT])
        )
    if rules.cadence is not None and status is OPEN:
        base = state.cadence_base or state.opened_at
        due = base + rules.cadence * (state.update_reminders + 1)
        plan[CUSTOMER_UPDATE] = _planned(Planned, (due, text[CUSTOMER_UPDATE]))
    if status is PENDING and state.pending_since and not state.auto_close_requested:
        plan[AUTO_CLOSE] = _planned(
            Planned, (state.pending_since + rules.auto_close, text[AUTO_CLOSE])
        )
    return plan


def timer_changes(before: Plan | None, after: Plan) -> tuple[TimerChange, ...]:
    """The changes that turn the ``before`` plan into ``after`` (all of it when new)."""
    changes = []
    for kind, (due, rule) in after.items():
        old = before.get(kind, NOT_PLANNED).due if before is not None else None
        if before is None and due is None:
            continue
        if old != due:
            changes.append(new_timer_change(kind=kind, due=due, rule=rule))
    return tuple(changes)


@dataclass(frozen=True)
class Firing:
    """What a timer does when it fires, but for what depends on when (``prepare_timer``).

    ``complete_timer`` adds that part: nothing happens if the plan's time is still ahead (or
    the timer is no longer needed); else the history entry ``record`` at the time it fires and
    the note saying how late. The rest (the state's other changes in ``acted``, the effects,
    the re-planned timers) is the same whenever it fires before ``settled_until`` (``settle``
    works it out for a time), so it may be worked out ahead of time."""

    state: TicketState  # the ticket as the timer found it
    kind: TimerKind
    due: datetime
    planned: datetime | None  # when the plan wants it now (None: no longer needed)
    rule: str
    acted: TicketState  # the ticket after acting, but for the history entry
    record: str | None = None  # the history entry acting appends
    effects: tuple[Effect, ...] = ()
    timers: tuple[TimerChange, ...] = ()
    period: timedelta | None = None  # of a recurring commitment (see ``next_due``)
    limit: int = 0  # the policy's effects per ticket per hour (0: not counted)
    notes: tuple[str, ...] = ()  # what ``settle`` held back


def next_due(planned: datetime, period: timedelta, now: datetime) -> datetime:
    """When a recurring commitment planned for ``planned`` and acted on at ``now`` is due
    next: the following period on its schedule while that is still ahead, else one period
    after ``now``. A commitment that missed several periods (downtime, a helpdesk time long
    past) acts once, late, not once per missed period."""
    following = planned + period
    return following if following > now else now + period


def settle(firing: Firing, *, now: datetime) -> Firing:
    """``firing`` as it acts at ``now``: a recurring commitment a whole period late re-armed
    from ``now``, and its effects counted against the ticket's hour (``rules.limits``)."""
    planned = firing.planned
    if planned is None or planned > now:
        return firing
    acted, record, timers = firing.acted, firing.record, firing.timers
    period = firing.period
    if period is not None and next_due(planned, period, now) != planned + period:
        rearmed = now + period
        # The plan is base + period x (reminders + 1): a base one period before ``rearmed``
        # less the reminders already counted puts the next one at ``rearmed``.
        base = rearmed - period * (acted.update_reminders + 1)
        acted = updated(acted, cadence_base=base)
        missed = int((now - planned) / period) + 1
        record = f"{record} ({missed} periods missed at once: one reminder, cadence from now)"
        timers = tuple(
            new_timer_change(kind=c.kind, due=rearmed, rule=c.rule)
            if c.kind is CUSTOMER_UPDATE
            else c
            for c in timers
        )
    effects, notes = firing.effects, firing.notes
    if firing.limit:
        acted, effects, held = charge(acted, effects, now=now, limit=firing.limit)
        notes = (held_note(held, firing.limit),) if held else ()
    return replace(firing, acted=acted, record=record, effects=effects, timers=timers, notes=notes)


def settled_until(firing: Firing) -> datetime | None:
    """Until when ``settle`` gives for any time from ``planned`` on what it gives at
    ``planned`` (the same hour, not a whole period late); None when nothing is planned."""
    planned = firing.planned
    if planned is None:
        return None
    until = hour_of(planned) + HOUR
    if firing.period is not None:
        until = min(until, planned + firing.period)
    return until


def on_timer(
    state: TicketState, kind: TimerKind, *, due: datetime, now: datetime, policy: Policy
) -> Decision:
    """A timer came due: act if the ticket still needs it, and re-plan the ticket's timers."""
    return complete_timer(prepare_timer(state, kind, due=due, policy=policy), now=now)


def complete_timer(firing: Firing, *, now: datetime) -> Decision:
    """The decision of ``firing`` at ``now``."""
    kind, planned = firing.kind, firing.planned
    if planned is None or planned > now:
        why = "no longer needed" if planned is None else f"moved to {planned.isoformat()}"
        return new_decision(
            state=firing.state,
            timers=timer_changes(
                {kind: Planned(firing.due, "")}, {kind: Planned(planned, firing.rule)}
            ),
            notes=(f"{kind.value} timer due {firing.due.isoformat()} {why}: nothing to do",),
        )
    firing = settle(firing, now=now)
    return new_decision(
        state=fired_state(firing.acted, firing.record, now),
        effects=firing.effects,
        timers=firing.timers,
        notes=(fired_note(kind, firing.rule, planned, now), *firing.notes),
    )


def fired_state(acted: TicketState, entry: str | None, now: datetime) -> TicketState:
    """The state a timer that acted leaves: ``acted`` with its history ``entry`` at ``now``."""
    return acted if entry is None else record(acted, now, entry)


def fired_note(kind: TimerKind, rule: str, planned: datetime, now: datetime) -> str:
    """The note of a timer that acted at ``now``, planned for ``planned``."""
    late = (now - planned).total_seconds()
    return f"{kind.value} fired ({rule}); due {planned.isoformat()}, {late:.0f}s late"


def prepare_timer(state: TicketState, kind: TimerKind, *, due: datetime, policy: Policy) -> Firing:
    """What the timer of ``kind`` due at ``due`` does to ``state`` when it acts, all but the
    part that depends on when (see ``Firing``). Its effects and the re-plan read the ticket,
    never its history, so they are the same with or without the entry acting appends."""
    plan = plan_timers(state, policy)
    planned, rule = plan[kind]
    if planned is None:
        return Firing(state=state, kind=kind, due=due, planned=None, rule=rule, acted=state)
    effects: list[Effect] = []
    planned_at = planned.isoformat()
    acted = state
    entry: str | None = None
    period: timedelta | None = None
    if kind is TimerKind.TIER_ONE:
        acted = updated(state, tier_one_done=True, tier_two_engaged=True)
        why = f"{rule}; unresolved at {planned_at}"
        if policy.for_priority(acted.priority).tier_one.then == "bridge":
            effects.append(bridge(acted, why))
            entry = "Tier-One window expired: VictorOps bridge for Tier Two"
        else:
            group = policy.escalation.reassign_group
            entry = f"Tier-One window expired: handed to {group}"
            effects.append(reassign(acted, group, why))
            effects.append(
                note(
                    acted,
                    "tier-one-reassigned",
                    f"Tier-One window for {acted.priority.label} expired unresolved: the ticket "
                    f"is unassigned and handed to the {group} group.",
                    why,
                )
            )
    elif kind is TimerKind.ENGAGEMENT:
        acted = updated(state, engagement_breached=True)
        entry = "Initial engagement SLA missed"
        text = f"Initial engagement SLA missed: {rule}; nobody engaged by {planned:%Y-%m-%d %H:%M}."
        effects.append(note(acted, "engagement-breach", text, rule))
        if acted.incident_open:
            effects.append(victorops_info(acted, "engagement-breach", text, rule))
    elif kind is TimerKind.CUSTOMER_UPDATE:
        acted = updated(state, update_reminders=state.update_reminders + 1)
        entry = "Customer update overdue"
        text = (
            f"Customer update overdue: {rule}; the last one was due {planned:%Y-%m-%d %H:%M} UTC."
        )
        key = f"update-{int(planned.timestamp())}"
        effects.append(note(acted, key, text, rule))
        if acted.incident_open:
            effects.append(victorops_info(acted, key, text, rule))
        period = _rules(policy, state.priority).cadence
    elif kind is TimerKind.AUTO_CLOSE:
        acted = updated(state, auto_close_requested=True)
        entry = "Pending with no customer reply: closed by ticketbridge"
        effects.append(note(acted, "auto-close", f"Closed by ticketbridge: {rule}.", rule))
        effects.append(close_ticket(acted, rule))
    elif kind is TimerKind.WRITE_UP:
        acted = updated(state, write_up_reminded=True)
        effects.append(write_up_reminder(acted, rule))
    acted, status_effects = sync_status_page(acted, policy)
    effects.extend(status_effects)
    return Firing(
        state=state,
        kind=kind,
        due=due,
        planned=planned,
        rule=rule,
        acted=acted,
        record=entry,
        effects=tuple(effects),
        timers=timer_changes(plan, plan_timers(acted, policy)),
        period=period,
        limit=policy.limits.effects_per_ticket_per_hour,
    )
