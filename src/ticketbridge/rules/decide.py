"""The procedure's decisions for one event: pure, deterministic, ``now`` passed in."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from ticketbridge.rules.aftercare import (
    components_of,
    declares_system_wide,
    followup,
    new_followups,
    record,
    sync_status_page,
    write_up,
)
from ticketbridge.rules.effects import page, recover
from ticketbridge.rules.fields import TicketFields, TicketUpdate, new_decision, new_ticket
from ticketbridge.rules.limits import charge, held_note
from ticketbridge.rules.model import (
    ADMIN_EVENTS,
    Decision,
    Effect,
    EventKind,
    Priority,
    Status,
    TicketEvent,
    TicketState,
)
from ticketbridge.rules.policy import Policy
from ticketbridge.rules.timers import plan_timers, timer_changes

# A new ticket's fields or an update's: ``_commitments`` fills in either.
_Fields = TypeVar("_Fields", TicketFields, TicketUpdate)

PAGING_PRIORITIES = frozenset({Priority.URGENT, Priority.HIGH})
# Members as module globals: Python 3.11 looks Enum class attributes up through a slow hook.
AGENT_REPLY, CUSTOMER_REPLY = EventKind.AGENT_REPLY, EventKind.CUSTOMER_REPLY
ASSIGNED = EventKind.ASSIGNED
FOLLOWUP_REQUESTED = EventKind.FOLLOWUP_REQUESTED
SYSTEM_WIDE_DECLARED = EventKind.SYSTEM_WIDE_DECLARED
OPEN, PENDING = Status.OPEN, Status.PENDING


def _should_page(state: TicketState, policy: Policy) -> bool:
    # Medium and Low never reach VictorOps, whatever the policy says (the policy loader
    # also refuses such a file); resolved and closed tickets have no open incident.
    return (
        state.priority in PAGING_PRIORITIES
        and policy.for_priority(state.priority).page
        and state.status.is_active
    )


def _open(event: TicketEvent, at: datetime, seen: datetime, policy: Policy) -> TicketState:
    """The ticket ``event`` opens, with the commitments it meets already applied (what
    ``_apply`` would change on it, validated once rather than validated then copied)."""
    fields: TicketFields = {
        "source": event.source,
        "ticket_id": event.ticket_id,
        "domain": event.domain,
        "url": event.url,
        "subject": event.subject,
        "priority": event.priority,
        "status": event.status,
        "status_label": event.status_label,
        "opened_at": at,
        "last_event_at": seen,
        "policy": policy.fingerprint,
        "pending_since": at if event.status is PENDING else None,
    }
    return new_ticket(**_commitments(fields, None, event, at, policy))


def _apply(
    state: TicketState, event: TicketEvent, at: datetime, seen: datetime, policy: Policy
) -> TicketState:
    """The ticket after ``event``: snapshot fields plus the commitments it meets or resets."""
    if event.kind in ADMIN_EVENTS:
        return state  # an admin request says nothing about the helpdesk's ticket
    update: TicketUpdate = {
        "domain": event.domain or state.domain,
        "url": event.url or state.url,
        "subject": event.subject or state.subject,
        "priority": event.priority,
        "status": event.status,
        "status_label": event.status_label,
        "last_event_at": max(seen, state.last_event_at),
    }
    return state.model_copy(update=_commitments(update, state, event, at, policy))


def _commitments(
    update: _Fields, state: TicketState | None, event: TicketEvent, at: datetime, policy: Policy
) -> _Fields:
    """``update`` with the commitment fields ``event`` changes on ``state`` (None: the ticket
    it opens) set."""
    engaged = (event.kind is AGENT_REPLY and "public_reply" in policy.engagement_by) or (
        (event.kind is ASSIGNED or event.agent_assigned) and "assignment" in policy.engagement_by
    )
    if engaged and (state is None or state.engaged_at is None):
        update["engaged_at"] = at
    if event.kind is AGENT_REPLY:
        update["cadence_base"] = at
        update["update_reminders"] = 0
    if state is not None and event.status is not state.status:
        update["pending_since"] = at if event.status is PENDING else None
        update["auto_close_requested"] = False
        if state.status is PENDING and event.status is OPEN:
            update["cadence_base"] = at
            update["update_reminders"] = 0
    if event.kind is CUSTOMER_REPLY:
        update["pending_since"] = None  # a customer reply cancels the auto-close
    return update


def decide(
    state: TicketState | None, event: TicketEvent, *, now: datetime, policy: Policy
) -> Decision:
    """Apply ``event`` to ``state`` under ``policy`` (the ticket's pinned one) at ``now``.

    Returns the new state, the effects it demands and the changes to its timers. An event
    older than the last one applied (by its own timestamp) is stale: it changes nothing, and
    so is the webhook echo of ticketbridge's own note.
    """
    # ``seen`` (the helpdesk's own time) orders events; ``occurred`` anchors deadlines and the
    # timeline, and is never later than now: a helpdesk clock ahead of ours, or a forged time
    # in the future, must not push a ticket's commitments beyond reach.
    seen = event.occurred_at or now
    occurred = min(seen, now)
    if state is not None and event.own_echo:
        return new_decision(state=state, notes=("ticketbridge's own note echoed back: ignored",))
    if (
        state is not None
        and event.occurred_at is not None
        and event.occurred_at < state.last_event_at
    ):
        return new_decision(
            state=state,
            stale=True,
            notes=(
                f"stale event ignored: it happened at {event.occurred_at.isoformat()}, "
                f"before the last applied event at {state.last_event_at.isoformat()}",
            ),
        )
    if state is None and event.kind in ADMIN_EVENTS:
        raise ValueError(f"{event.kind.value} needs a ticket ticketbridge already knows")
    before = state
    if state is None:
        current = _open(event, occurred, seen, policy)
    else:
        current = _apply(state, event, occurred, seen, policy)
    # The timeline entries are recorded below with the incident's change, in one copy.
    entries = _milestones(before, current, event)

    effects: list[Effect] = []
    notes: list[str] = []
    wants_page = _should_page(current, policy)
    if wants_page and not current.incident_open:
        entries.append("Paged VictorOps (CRITICAL)")
        current = record(
            current,
            occurred,
            *entries,
            incident_open=True,
            page_generation=current.page_generation + 1,
        )
        if before is None:
            why = f"{current.priority.label} ticket opened: pages VictorOps"
        else:
            why = (
                f"ticket now {current.priority.label} and {current.status_label}"
                f" (was {before.priority.label}, {before.status_label}): pages VictorOps"
            )
        effects.append(page(current, why, occurred))
    elif not wants_page and current.incident_open:
        if not current.status.is_active:
            why = f"Ticket {current.status_label.lower()} in the helpdesk"
        else:
            why = f"Ticket downgraded to {current.priority.label}"
        effects.append(recover(current, why, occurred))
        entries.append("VictorOps incident resolved (RECOVERY)")
        current = record(current, occurred, *entries, incident_open=False)
    else:
        current = record(current, occurred, *entries)
    if before is not None and before.priority is not current.priority:
        notes.append(
            f"re-triaged {before.priority.label} → {current.priority.label}: timers re-planned "
            f"from the ticket's start {current.opened_at.isoformat()}"
        )
    current, more = _aftercare(before, current, event, occurred, policy)
    effects.extend(more)
    limit = policy.limits.effects_per_ticket_per_hour
    current, made, held = charge(current, tuple(effects), now=now, limit=limit)
    if held:
        notes.append(held_note(held, limit))
    old_plan = plan_timers(before, policy) if before is not None else None
    return new_decision(
        state=current,
        effects=made,
        timers=timer_changes(old_plan, plan_timers(current, policy)),
        notes=tuple(notes),
    )


def _milestones(before: TicketState | None, state: TicketState, event: TicketEvent) -> list[str]:
    """What ``event`` changed, for the ticket's timeline (the write-up lists it)."""
    entries = []
    if before is None:
        entries.append(f"Opened as {state.priority.label} ({state.status_label})")
    else:
        if before.priority is not state.priority:
            entries.append(f"Priority changed {before.priority.label} → {state.priority.label}")
        if before.status_label != state.status_label:
            entries.append(f"Status {before.status_label} → {state.status_label}")
    if (before is None or before.engaged_at is None) and state.engaged_at is not None:
        how = "first public agent reply" if event.kind is AGENT_REPLY else "assigned"
        entries.append(f"Engaged: {how}")
    if event.kind is AGENT_REPLY:
        entries.append("Customer updated (public agent reply)")
    elif event.kind is CUSTOMER_REPLY:
        entries.append("Customer replied")
    return entries


def _aftercare(
    before: TicketState | None,
    state: TicketState,
    event: TicketEvent,
    at: datetime,
    policy: Policy,
) -> tuple[TicketState, list[Effect]]:
    """Follow-up issues, system-wide impact and the write-up that ``event`` calls for."""
    effects: list[Effect] = []
    # Timeline entries and field changes, made below in one copy of the ticket.
    entries: list[str] = []
    changes: TicketUpdate = {}
    tags = event.tags
    if tags is not None:
        if new_followups(before, tags, policy):
            state, effect = followup(state, policy, why=f"ticket tagged {policy.tags.followup!r}")
            effects.append(effect)
            entries.append(f"Follow-up issue requested (tag {policy.tags.followup})")
        changes["tags"] = tags
    if event.kind is FOLLOWUP_REQUESTED:
        title = event.change.get("title")
        text = event.change.get("body")
        state, effect = followup(
            state,
            policy,
            why="requested through the admin API",
            title=title if isinstance(title, str) and title else None,
            text=text if isinstance(text, str) and text else None,
        )
        effects.append(effect)
        entries.append("Follow-up issue requested (admin API)")
    declared = (
        event.system_wide is True
        or event.kind is SYSTEM_WIDE_DECLARED
        or (tags is not None and declares_system_wide(tags, policy))
    )
    components = (*event.components, *components_of(tags)) if tags else event.components
    if declared and not state.system_wide:
        changes["system_wide"] = True
        named = f" ({', '.join(components)})" if components else ""
        entries.append(f"Declared system-wide impact{named}")
    if entries or changes:
        state = record(state, at, *entries, **changes)
    state, status_effects = sync_status_page(state, policy, components=components)
    effects.extend(status_effects)
    if before is not None and before.status.is_active and not state.status.is_active:
        resolved: TicketUpdate = {"resolved_at": at}
        if state.write_up_due is None and policy.for_priority(state.priority).write_up is not None:
            resolved["write_up_due"], effect = write_up(state, policy, at)
            effects.append(effect)
        state = state.model_copy(update=resolved)
    return state, effects
