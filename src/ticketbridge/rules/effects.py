"""Effect constructors: what each commitment asks of VictorOps and the helpdesk, keyed once."""

from __future__ import annotations

import html
from datetime import datetime

from ticketbridge.rules.model import Effect, TicketState

VICTOROPS = "victorops"
BRIDGE = "victorops_bridge"
NOTE_MARKER = "[ticketbridge]"


def _key(target: str, state: TicketState, kind: str, generation: object) -> str:
    return f"{target}:{state.source}/{state.ticket_id}:{kind}:{generation}"


def _title(state: TicketState) -> str:
    name = state.source.capitalize()
    return f"[{state.priority.label}] {name} #{state.ticket_id}: {state.subject}".strip()


def page(state: TicketState, reason: str, now: datetime) -> Effect:
    """CRITICAL on the ticket's entity_id: opens (or folds into) its VictorOps incident."""
    return Effect(
        target=VICTOROPS,
        kind="page",
        key=_key(VICTOROPS, state, "page", state.page_generation),
        reason=reason,
        payload={
            "message_type": "CRITICAL",
            "entity_id": state.entity_id,
            "entity_display_name": _title(state),
            "state_message": (
                f"Priority {state.priority.label}, status {state.status_label}. {state.url}"
            ).strip(),
            "ticket_url": state.url,
            "state_start_time": int(now.timestamp()),
        },
    )


def recover(state: TicketState, reason: str, now: datetime) -> Effect:
    """RECOVERY on the same entity_id: resolves the incident of page ``generation``."""
    return Effect(
        target=VICTOROPS,
        kind="recover",
        key=_key(VICTOROPS, state, "recover", state.page_generation),
        reason=reason,
        payload={
            "message_type": "RECOVERY",
            "entity_id": state.entity_id,
            "entity_display_name": _title(state),
            "state_message": f"{reason}. {state.url}".strip(),
            "ticket_url": state.url,
            "state_start_time": int(now.timestamp()),
        },
    )


def victorops_info(state: TicketState, name: str, text: str, reason: str) -> Effect:
    """INFO on the incident's entity_id: a timeline entry, never a new page."""
    return Effect(
        target=VICTOROPS,
        kind="info",
        key=_key(VICTOROPS, state, "info", name),
        reason=reason,
        payload={
            "message_type": "INFO",
            "entity_id": state.entity_id,
            "entity_display_name": _title(state),
            "state_message": f"{text} {state.url}".strip(),
            "ticket_url": state.url,
        },
    )


def note(state: TicketState, name: str, text: str, reason: str) -> Effect:
    """A private note on the ticket, marked so its webhook echo is recognised."""
    return Effect(
        target=state.source,
        kind="note",
        key=_key(state.source, state, "note", name),
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
    return Effect(
        target=BRIDGE,
        kind="bridge",
        key=_key(BRIDGE, state, "bridge", 1),
        reason=reason,
        payload={
            "summary": f"Tier Two bridge: {_title(state)}",
            "details": f"{reason}. Ticket {state.url}".strip(),
            "entity_id": f"{state.entity_id}/bridge",
            "ticket_url": state.url,
            "then": [follow_up.model_dump(mode="json")],
        },
    )


def reassign(state: TicketState, group: str, reason: str) -> Effect:
    """Unassign the agent and hand the ticket to ``group``, in one helpdesk update."""
    return Effect(
        target=state.source,
        kind="reassign",
        key=_key(state.source, state, "reassign", 1),
        reason=reason,
        payload={"action": "reassign", "ticket_id": state.ticket_id, "group": group},
    )


def close_ticket(state: TicketState, reason: str) -> Effect:
    """Close the ticket in the helpdesk (once per Pending period)."""
    since = int(state.pending_since.timestamp()) if state.pending_since else 0
    return Effect(
        target=state.source,
        kind="close",
        key=_key(state.source, state, "close", since),
        reason=reason,
        payload={"action": "close", "ticket_id": state.ticket_id},
    )
