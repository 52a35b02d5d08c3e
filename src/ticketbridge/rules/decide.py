"""The procedure's decisions for one event: pure, deterministic, ``now`` passed in."""

from __future__ import annotations

from datetime import datetime

from ticketbridge.rules.model import (
    Decision,
    Effect,
    Priority,
    TicketEvent,
    TicketState,
)
from ticketbridge.rules.policy import Policy

PAGING_PRIORITIES = frozenset({Priority.URGENT, Priority.HIGH})
VICTOROPS = "victorops"


def _should_page(state: TicketState, policy: Policy) -> bool:
    # Medium and Low never reach VictorOps, whatever the policy says (the policy loader
    # also refuses such a file); resolved and closed tickets have no open incident.
    return (
        state.priority in PAGING_PRIORITIES
        and policy.for_priority(state.priority).page
        and state.status.is_active
    )


def _page(state: TicketState, reason: str, now: datetime) -> Effect:
    generation = state.page_generation
    return Effect(
        target=VICTOROPS,
        kind="page",
        key=f"{VICTOROPS}:{state.source}/{state.ticket_id}:page:{generation}",
        reason=reason,
        payload={
            "message_type": "CRITICAL",
            "entity_id": state.entity_id,
            "entity_display_name": (
                f"[{state.priority.label}] {state.source.capitalize()} "
                f"#{state.ticket_id}: {state.subject}"
            ).strip(),
            "state_message": (
                f"Priority {state.priority.label}, status {state.status_label}. {state.url}"
            ).strip(),
            "ticket_url": state.url,
            "state_start_time": int(now.timestamp()),
        },
    )


def _recover(state: TicketState, reason: str, now: datetime) -> Effect:
    generation = state.page_generation
    return Effect(
        target=VICTOROPS,
        kind="recover",
        key=f"{VICTOROPS}:{state.source}/{state.ticket_id}:recover:{generation}",
        reason=reason,
        payload={
            "message_type": "RECOVERY",
            "entity_id": state.entity_id,
            "entity_display_name": (
                f"[{state.priority.label}] {state.source.capitalize()} "
                f"#{state.ticket_id}: {state.subject}"
            ).strip(),
            "state_message": f"{reason}. {state.url}".strip(),
            "ticket_url": state.url,
            "state_start_time": int(now.timestamp()),
        },
    )


def decide(
    state: TicketState | None, event: TicketEvent, *, now: datetime, policy: Policy
) -> Decision:
    """Apply ``event`` to ``state`` under ``policy`` at ``now``.

    Returns the new state and the effects it demands. An event older than the last one
    applied (by its own timestamp) is stale: it changes nothing.
    """
    occurred = event.occurred_at or now
    if state is None:
        before = None
        current = TicketState(
            source=event.source,
            ticket_id=event.ticket_id,
            domain=event.domain,
            url=event.url,
            subject=event.subject,
            priority=event.priority,
            status=event.status,
            status_label=event.status_label,
            opened_at=occurred,
            last_event_at=occurred,
            policy=policy.fingerprint,
        )
    else:
        if event.occurred_at is not None and event.occurred_at < state.last_event_at:
            return Decision(
                state=state,
                stale=True,
                notes=(
                    f"stale event ignored: it happened at {event.occurred_at.isoformat()}, "
                    f"before the last applied event at {state.last_event_at.isoformat()}",
                ),
            )
        before = state
        current = state.model_copy(
            update={
                "domain": event.domain or state.domain,
                "url": event.url or state.url,
                "subject": event.subject or state.subject,
                "priority": event.priority,
                "status": event.status,
                "status_label": event.status_label,
                "last_event_at": max(occurred, state.last_event_at),
            }
        )

    effects: list[Effect] = []
    notes: list[str] = []
    wants_page = _should_page(current, policy)
    if wants_page and not current.incident_open:
        current = current.model_copy(
            update={"incident_open": True, "page_generation": current.page_generation + 1}
        )
        if before is None:
            why = f"{current.priority.label} ticket opened: pages VictorOps"
        else:
            why = (
                f"ticket now {current.priority.label} and {current.status_label}"
                f" (was {before.priority.label}, {before.status_label}): pages VictorOps"
            )
        effects.append(_page(current, why, occurred))
    elif not wants_page and current.incident_open:
        if not current.status.is_active:
            why = f"Ticket {current.status_label.lower()} in the helpdesk"
        else:
            why = f"Ticket downgraded to {current.priority.label}"
        effects.append(_recover(current, why, occurred))
        current = current.model_copy(update={"incident_open": False})
    elif current.priority not in PAGING_PRIORITIES:
        notes.append(f"{current.priority.label} tickets never page VictorOps")
    return Decision(state=current, effects=tuple(effects), notes=tuple(notes))
