"""Delivery policy: which new effects may go out at once, whether an effect still applies to
the ticket as its helpdesk shows it now, and which page a RECOVERY resolves (keys as
``rules.effects.key_of`` writes them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketbridge.rules.model import Priority, Status

# The priorities that page: a page or bridge for any other no longer applies.
PAGING = frozenset({Priority.URGENT, Priority.HIGH})


class LeasePlan:
    """Which new effects may go out at once (leased to the caller): those whose ticket has no
    open effect on their target, neither in the store nor earlier among the new ones."""

    __slots__ = ("_open",)

    def __init__(self, open_targets: set[tuple[str, str, str]]) -> None:
        self._open = open_targets

    def take(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (an effect about to be inserted) may be leased; it is open after."""
        key = (row["source"], row["ticket_id"], row["target"])
        if key in self._open:
            return False
        self._open.add(key)
        return True


def still_applies(kind: str, priority: Priority, status: Status) -> bool:
    """Whether an effect of ``kind`` still matches a ticket now at ``priority`` and ``status``."""
    if kind in ("page", "bridge"):
        return priority in PAGING and status.is_active
    if kind == "close":
        return status is Status.PENDING
    # A reassign, notes and VictorOps INFOs (breaches, reminders, "bridge open") speak of an
    # open ticket.
    return status.is_active


def page_key_of_recovery(key: str) -> str:
    """The key of the page a RECOVERY resolves: the same target, ticket and page generation
    (``victorops:freshdesk/7:recover:2`` -> ``victorops:freshdesk/7:page:2``); a key of any
    other kind raises ValueError."""
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or parts[1] != "recover" or not parts[0]:
        raise ValueError(f"not the key of a recovery: {key!r}")
    return f"{parts[0]}:page:{parts[2]}"
