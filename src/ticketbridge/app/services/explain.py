"""Explain a live ticket: every commitment, its due time, its state, and the rule behind it.

Read from the ticket's stored state and timers, with the rules' own ``plan_timers`` under the
policy version the ticket is pinned to; nothing is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.http.schemas import iso
from ticketbridge.app.services.ingest import PolicyBook
from ticketbridge.rules import Policy, Status, TicketState
from ticketbridge.rules.model import TimerKind
from ticketbridge.rules.timers import plan_timers

CommitmentState = Literal["pending", "met", "breached", "fired", "cancelled", "not_applicable"]

NAMES = {
    TimerKind.ENGAGEMENT: "Initial engagement",
    TimerKind.CUSTOMER_UPDATE: "Next customer update",
    TimerKind.TIER_ONE: "Tier-One deadline",
    TimerKind.AUTO_CLOSE: "Auto-close",
    TimerKind.WRITE_UP: "Post-event write-up",
}


class Commitment(BaseModel):
    kind: str
    name: str
    state: CommitmentState
    due_at: str | None
    at: str | None  # when it was met, fired or found breached
    rule: str
    policy: str
    detail: str


class Explanation(BaseModel):
    source: str
    ticket_id: str
    priority: str
    status: str
    opened_at: str
    policy: str
    policy_version: str
    policy_note: str | None
    commitments: list[Commitment]


def _when(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else iso(value)


def _reference(state: TicketState, policy: Policy) -> dict[TimerKind, tuple[datetime | None, str]]:
    """Every commitment's due time and rule as if it were still ahead (the rules' own plan of
    the ticket reopened, left Pending, and resolved), for the ones met or ended already."""
    ahead = plan_timers(
        state.model_copy(
            update={
                "status": Status.OPEN,
                "tier_one_done": False,
                "engaged_at": None,
                "engagement_breached": False,
            }
        ),
        policy,
    )
    pending = plan_timers(
        state.model_copy(
            update={
                "status": Status.PENDING,
                "pending_since": state.pending_since or state.last_event_at,
                "auto_close_requested": False,
            }
        ),
        policy,
    )
    written = plan_timers(
        state.model_copy(
            update={
                "write_up_due": state.write_up_due or state.last_event_at,
                "write_up_reminded": False,
            }
        ),
        policy,
    )
    return {
        **ahead,
        TimerKind.AUTO_CLOSE: pending[TimerKind.AUTO_CLOSE],
        TimerKind.WRITE_UP: (state.write_up_due, written[TimerKind.WRITE_UP][1]),
    }


def _judge(
    kind: TimerKind, state: TicketState, policy: Policy, timer: dict[str, Any] | None
) -> tuple[CommitmentState, datetime | float | None, str]:
    """(state, when it was settled, detail) of one commitment."""
    rules = policy.for_priority(state.priority)
    pending = timer is not None and timer["status"] == "pending"
    fired_at = timer["fired_at"] if timer is not None else None
    active = state.status.is_active
    if kind is TimerKind.ENGAGEMENT:
        if state.engagement_breached:
            late = f"; engaged at {state.engaged_at.isoformat()}" if state.engaged_at else ""
            return "breached", fired_at, f"nobody engaged in time{late}"
        if state.engaged_at is not None:
            return "met", state.engaged_at, "engaged (first public agent reply or assignment)"
        if pending:
            return "pending", None, "met by the first public agent reply or an assignment"
        if not active:
            return "cancelled", state.resolved_at, "the ticket was resolved before anyone engaged"
        return "not_applicable", None, ""
    if kind is TimerKind.TIER_ONE:
        then = rules.tier_one.then
        if state.tier_one_done:
            return "fired", fired_at, f"the window ended unresolved: {then}"
        if pending:
            return "pending", None, f"unresolved at the deadline: {then}"
        if not active:
            return "met", state.resolved_at, "resolved within the window"
        return "not_applicable", None, ""
    if kind is TimerKind.CUSTOMER_UPDATE:
        if rules.customer_updates is None:
            return "not_applicable", None, f"no customer-update cadence for {state.priority.label}"
        missed = state.update_reminders
        if pending:
            return (
                "pending",
                None,
                f"{missed} reminder(s) since the last public agent reply"
                if missed
                else "met by a public agent reply before it is due",
            )
        if state.status is Status.PENDING:
            return "not_applicable", None, "paused while the ticket is Pending"
        if not active:
            return "cancelled", state.resolved_at, "the cadence ended when the ticket was resolved"
        return "not_applicable", None, ""
    if kind is TimerKind.AUTO_CLOSE:
        if state.auto_close_requested:
            return "fired", fired_at, "Pending with no customer reply: closed by ticketbridge"
        if pending:
            return "pending", None, "a customer reply, or leaving Pending, cancels it"
        if timer is not None and timer["status"] == "cancelled":
            return (
                "cancelled",
                timer["updated_at"],
                "the customer replied or the ticket left Pending",
            )
        return "not_applicable", None, "only while the ticket is Pending"
    if rules.write_up is None:
        return "not_applicable", None, f"no post-event write-up for {state.priority.label}"
    if state.write_up_reminded:
        return "fired", fired_at, "the deadline passed: reminded on the issue if still open"
    if state.write_up_due is not None:
        return "pending", None, "the GitHub issue opened at resolution; reminded if still open"
    return "not_applicable", None, "due after resolution; the ticket is not resolved"


def explain_ticket(
    store: Store, policies: PolicyBook, source: str, ticket_id: str
) -> Explanation | None:
    """Every commitment of a ticket ticketbridge knows (None for an unknown ticket)."""
    view = store.ticket_view(source, ticket_id)
    if view is None:
        return None
    state = TicketState.model_validate(view["state"])
    with store.unit_of_work() as uow:
        policy = policies.pinned(uow, state.policy)
    note = None
    if policy.fingerprint != state.policy:
        note = (
            f"the ticket is pinned to policy {state.policy}, which is not stored: "
            f"its commitments are shown under the current policy {policy.fingerprint}"
        )
    timers = {t["kind"]: t for t in view["timers"]}
    reference = _reference(state, policy)
    commitments = []
    for kind, name in NAMES.items():
        timer = timers.get(kind.value)
        judged, settled, detail = _judge(kind, state, policy, timer)
        due, rule = reference[kind]
        if timer is not None:
            rule = timer["rule"] or rule
        due_at = _when(timer["due_at"]) if timer is not None else _when(due)
        commitments.append(
            Commitment(
                kind=kind.value,
                name=name,
                state=judged,
                due_at=None if judged == "not_applicable" else due_at,
                at=_when(settled),
                rule=rule or detail,
                policy=state.policy,
                detail=detail,
            )
        )
    return Explanation(
        source=source,
        ticket_id=ticket_id,
        priority=state.priority.value,
        status=state.status_label,
        opened_at=state.opened_at.isoformat(),
        policy=state.policy,
        policy_version=str(policy.version),
        policy_note=note,
        commitments=commitments,
    )
