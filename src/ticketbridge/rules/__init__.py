"""Pure domain: tickets, events, policy and the decisions of the support procedure.

Imports only the standard library and pydantic; no I/O, no clock (``now`` is an argument).
"""

from ticketbridge.rules.decide import decide
from ticketbridge.rules.model import (
    Decision,
    Effect,
    EventKind,
    Priority,
    Status,
    TicketEvent,
    TicketState,
)
from ticketbridge.rules.policy import Policy

__all__ = [
    "Decision",
    "Effect",
    "EventKind",
    "Policy",
    "Priority",
    "Status",
    "TicketEvent",
    "TicketState",
    "decide",
]
