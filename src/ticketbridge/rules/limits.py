"""The per-ticket ceiling on effects: a runaway becomes one recorded breach, not a storm.

Counted are the effects a ticket can make again and again: private notes, VictorOps INFOs,
follow-up issues and status-page updates. Exempt (neither counted nor held back) are the
incident's own lifecycle and the one-off actions, each at most once per ticket, incident or
Pending period by its key: a page or RECOVERY for a real priority or status change, the
Tier-Two bridge, a reassignment, an auto-close, the write-up and its reminder, and opening or
resolving the status-page incident.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ticketbridge.rules.effects import DEAD_LETTER, key_of
from ticketbridge.rules.fields import TicketUpdate, new_budget, new_effect
from ticketbridge.rules.model import Effect, TicketState

EXEMPT_KINDS = frozenset(
    {
        "page",
        "recover",
        "bridge",
        "reassign",
        "close",
        "write_up",
        "write_up_reminder",
        "open",
        "resolve",
    }
)
HOUR = timedelta(hours=1)
CEILING = "limits.effects_per_ticket_per_hour"


def hour_of(now: datetime) -> datetime:
    """The start of the clock hour (UTC) that ``now`` is in."""
    stamp = now.timestamp()
    return datetime.fromtimestamp(stamp - stamp % 3600, UTC)


class Charged(NamedTuple):
    """Effects counted against the ticket's hour: the state with its budget, the effects to
    make, and how many the ceiling held back."""

    state: TicketState
    effects: tuple[Effect, ...]
    held: int


def charge(
    state: TicketState, effects: tuple[Effect, ...], *, now: datetime, limit: int
) -> Charged:
    """``effects`` counted against the ticket's hour at ``now``: those over ``limit`` are left
    out, and the first left out in an hour brings one dead-letter breach in their place."""
    if all(effect.kind in EXEMPT_KINDS for effect in effects):
        return Charged(state, effects, 0)
    hour = hour_of(now)
    budget = state.budget
    made = held = 0
    if budget is not None and budget.hour == hour:
        made, held = budget.made, budget.held
    kept: list[Effect] = []
    first_held: Effect | None = None
    for effect in effects:
        if effect.kind in EXEMPT_KINDS:
            kept.append(effect)
        elif made < limit:
            made += 1
            kept.append(effect)
        else:
            if held == 0:
                first_held = effect
            held += 1
    if first_held is not None:
        kept.append(breach(state, first_held, hour=hour, limit=limit))
    update: TicketUpdate = {"budget": new_budget(hour=hour, made=made, held=held)}
    held_now = len(effects) + (first_held is not None) - len(kept)
    return Charged(state.model_copy(update=update), tuple(kept), held_now)


def breach(state: TicketState, first: Effect, *, hour: datetime, limit: int) -> Effect:
    """The one record of the ticket's hour at its ceiling: a dead letter, never sent."""
    until = hour + HOUR
    reason = (
        f"{CEILING} ({limit}) reached for {state.source} #{state.ticket_id}: its notes, "
        f"VictorOps INFOs, follow-up issues and status-page updates are not made until "
        f"{until:%Y-%m-%d %H:%M} UTC (first held back: {first.key}); pages and recoveries "
        "still go out"
    )
    return new_effect(
        target=DEAD_LETTER,
        kind="limit_breach",
        key=key_of(DEAD_LETTER, state, "limit_breach", int(hour.timestamp())),
        reason=reason,
        payload={
            "limit": CEILING,
            "ceiling": limit,
            "hour": hour.isoformat(),
            "first_held": first.key,
        },
    )


def held_note(held: int, limit: int) -> str:
    """The timeline note of a decision whose effects the ceiling held back."""
    return f"{CEILING} ({limit}) reached: {held} effect(s) not made this hour"
