"""Effect constructors: what each commitment asks of VictorOps and the helpdesk, keyed once."""

from __future__ import annotations

import html
from datetime import datetime

from ticketbridge.rules.fields import new_effect
from ticketbridge.rules.model import Effect, TicketState

VICTOROPS = "victorops"
BRIDGE = "victorops_bridge"
NOTE_MARKER = "[ticketbridge]"
# Not a vendor: an effect for it is stored dead at once, a record operators find among the
# dead letters (``GET /v1/effects?state=dead``), its reason as the error.
DEAD_LETTER = "dead_letter"


def key_of(target: str, state: TicketState, kind: str, generation: object) -> str:
    return f"{target}:{state.source}/{state.ticket_id}:{kind}:{generation}"


def title_of(state: TicketState) -> str:
    name = state.source.capitalize()
    return f"[{state.priority.label}] {name} #{state.ticket_id}: {state.subject}".strip()


def _alert(
    state: TicketState,
    *,
    kind: str,
    generation: object,
    message_type: str,
    message: str,
    reason: str,
    now: datetime | None = None,
) -> Effect:
    """A VictorOps REST alert on the ticket's entity_id."""
    payload: dict[str, object] = {
        "message_type": message_type,
        "entity_id": state.entity_id,
        "entity_display_name": title_of(state),
        "state_message": f"{message} {state.url}".strip(),
        "ticket_url": state.url,
    }
    if now is not None:
        payload["state_start_time"] = int(now.timestamp())
    return new_effect(
        target=VICTOROPS,
        kind=kind,
        key=key_of(VICTOROPS, state, kind, generation),
        reason=reason,
        payload=payload,
    )


def page(state: TicketState, reason: str, now: datetime) -> Effect:
    """CRITICAL on the ticket's entity_id: opens (or folds into) its VictorOps incident."""
    return _alert(
        state,
        kind="page",
        generation=state.page_generation,
        message_type="CRITICAL",
        message=f"Priority {state.priority.label}, status {state.status_label}.",
        reason=reason,
        now=now,
    )


def recover(state: TicketState, reason: str, now: datetime) -> Effect:
    """RECOVERY on the same entity_id: resolves the incident of page ``generation``."""
    return _alert(
        state,
        kind="recover",
        generation=state.page_generation,
        message_type="RECOVERY",
        message=f"{reason}.",
        reason=reason,
        now=now,
    )


def victorops_info(state: TicketState, name: str, text: str, reason: str) -> Effect:
    """INFO on the incident's entity_id: a timeline entry, never a new page."""
    return _alert(
        state, kind="info", generation=name, message_type="INFO", message=text, reason=reason
    )


def note(state: TicketState, name: str, text: str, reason: str, *, kind: str = "note") -> Effect:
    """A private note on the ticket, marked so its webhook echo is recognised. ``kind`` other
    than ``note`` is a note about a resolved ticket (no re-read holds it back)."""
    return new_effect(
        target=state.source,
        kind=kind,
        key=key_of(state.source, state, "note", name),
        reason=reason,
        payload={
            "action": "note",
            "ticket_id": state.ticket_id,
            "body": f"<p>{NOTE_MARKER} {html.escape(text)}</p>",
        },
    )


def bridge(state: TicketState, reason: str) -> Effect:
    """Open the Tier-Two bridge in VictorOps (once per ticket), then note where on the ticket."""
    follow_up = note(
        state,
        "bridge-open",
        f"Tier-One window for {state.priority.label} expired unresolved: a VictorOps bridge "
        "is open for Tier Two ($details).",
        reason,
    )
    return new_effect(
        target=BRIDGE,
        kind="bridge",
        key=key_of(BRIDGE, state, "bridge", 1),
        reason=reason,
        payload={
            "summary": f"Tier Two bridge: {title_of(state)}",
            "details": f"{reason}. Ticket {state.url}".strip(),
            "entity_id": f"{state.entity_id}/bridge",
            "ticket_url": state.url,
            "then": [follow_up.model_dump(mode="json")],
        },
    )


def reassign(state: TicketState, group: str, reason: str) -> Effect:
    """Unassign the agent and hand the ticket to ``group``, in one helpdesk update."""
    return new_effect(
        target=state.source,
        kind="reassign",
        key=key_of(state.source, state, "reassign", 1),
        reason=reason,
        payload={"action": "reassign", "ticket_id": state.ticket_id, "group": group},
    )


def close_ticket(state: TicketState, reason: str) -> Effect:
    """Close the ticket in the helpdesk (once per Pending period)."""
    since = int(state.pending_since.timestamp()) if state.pending_since else 0
    return new_effect(
        target=state.source,
        kind="close",
        key=key_of(state.source, state, "close", since),
        reason=reason,
        payload={"action": "close", "ticket_id": state.ticket_id},
    )
