"""Apply inbound events: rules, new state, outbox, timers, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog

from ticketbridge.adapters.outbound.ports import HelpdeskTicket
from ticketbridge.adapters.outbound.zendesk import STATUS_NAMES as ZENDESK_STATUS_NAMES
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import (
    NewEffect,
    OutboxRow,
    RawJSON,
    TicketWrite,
    TimelineEntry,
    TimerUpdate,
)
from ticketbridge.adapters.store.unit_of_work import UnitOfWork
from ticketbridge.rules import Decision, EventKind, Policy, TicketEvent, TicketState, decide
from ticketbridge.rules.delivery import LeasePlan
from ticketbridge.rules.model import ADMIN_EVENTS

log = structlog.get_logger("ticketbridge.service")


@dataclass
class PolicyBook:
    """The policy in force for new tickets, and every version a ticket is pinned to."""

    current: Policy
    _known: dict[str, Policy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._known[self.current.fingerprint] = self.current

    def remember_current(self, store: Store, *, at: float) -> None:
        """Store the current policy (at start-up) so tickets pinned to it outlive a reload."""
        with store.unit_of_work() as uow:
            uow.save_policy(self.current.fingerprint, self.current.model_dump(mode="json"), at=at)

    def pinned(self, uow: UnitOfWork, fingerprint: str) -> Policy:
        """The policy a ticket opened under (the current one if it was never stored)."""
        policy = self._known.get(fingerprint)
        if policy is None:
            document = uow.load_policy(fingerprint)
            if document is None:
                log.warning("policy.pin_missing", fingerprint=fingerprint)
                return self.current
            policy = Policy.model_validate(document)
            self._known[fingerprint] = policy
        return policy


class UnknownTicket(LookupError):
    """An admin request named a ticket ticketbridge has never seen."""


# A timer armed by a webhook is announced to the other replicas only if due within this many
# seconds (see the end of ``ingest_many``).
ANNOUNCE_TIMERS_WITHIN = 60.0


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["accepted", "duplicate", "stale"]
    effects: int
    earliest_timer: float | None = None
    leased: tuple[OutboxRow, ...] = ()
    skipped: tuple[str, ...] = ()  # the targets of effects stored skipped (not configured)

    @property
    def unclaimed(self) -> int:
        """Effects left for the dispatcher's claim: neither leased here nor skipped."""
        return self.effects - len(self.leased) - len(self.skipped)


def effect_rows(source: str, ticket_id: str, decision: Decision) -> list[dict[str, Any]]:
    """The outbox rows for a decision's effects."""
    return [
        {
            "key": effect.key,
            "target": effect.target,
            "kind": effect.kind,
            "source": source,
            "ticket_id": ticket_id,
            "payload": effect.payload,
            "reason": effect.reason,
        }
        for effect in decision.effects
    ]


@dataclass(frozen=True)
class Incoming:
    """One received event, for ``ingest_many``; with ``lease`` its effects that may go out at
    once come back leased to the caller (see ``UnitOfWork.enqueue``)."""

    event: TicketEvent
    dedup_key: str
    now: datetime
    lease: tuple[str, float] | None = None


def ingest(
    store: Store, *, event: TicketEvent, dedup_key: str, now: datetime, policies: PolicyBook
) -> IngestResult:
    """Record ``event`` once and commit what the rules decide; a redelivery changes nothing."""
    with store.unit_of_work() as uow:
        return ingest_in(uow, event=event, dedup_key=dedup_key, now=now, policies=policies)


def ingest_in(
    uow: UnitOfWork,
    *,
    event: TicketEvent,
    dedup_key: str,
    now: datetime,
    policies: PolicyBook,
    lease: tuple[str, float] | None = None,
) -> IngestResult:
    """``ingest`` inside a transaction the caller commits. An admin event (follow-up,
    system-wide) for a ticket never seen raises ``UnknownTicket``."""
    if event.kind in ADMIN_EVENTS and uow.load_ticket(event.source, event.ticket_id) is None:
        raise UnknownTicket(f"no ticket {event.source}/{event.ticket_id}")
    return ingest_many(uow, [Incoming(event, dedup_key, now, lease)], policies=policies)[0]


STATUS_LABELS = {
    "freshdesk": {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"},
    "zendesk": ZENDESK_STATUS_NAMES,
}


def reread_event(source: str, ticket: HelpdeskTicket) -> tuple[TicketEvent, str]:
    """What the helpdesk API shows of a ticket, as an update event and its dedup key (the
    same reading twice is one event)."""
    event = TicketEvent(
        source=source,
        ticket_id=ticket.ticket_id,
        kind=EventKind.UPDATED,
        priority=ticket.priority,
        status=ticket.status,
        status_label=STATUS_LABELS.get(source, {}).get(
            ticket.status_code, f"Status {ticket.status_code}"
        ),
        change={"reread": "helpdesk API"},
    )
    stamp = ticket.updated_at.isoformat() if ticket.updated_at else "-"
    key = f"api:{ticket.ticket_id}:{stamp}:{ticket.priority.value}:{ticket.status_code}"
    return event, key


# ``model_dump_json()`` of the event and the ticket each webhook writes, by pydantic-core's
# serialiser called directly (bytes, decoded): the same text, without model_dump_json's
# dozen default keyword arguments passed on every call of the hot path.
_event_json = TicketEvent.__pydantic_serializer__.to_json
_state_json = TicketState.__pydantic_serializer__.to_json


def ingest_many(
    uow: UnitOfWork,
    items: Sequence[Incoming],
    *,
    policies: PolicyBook,
    configured: Collection[str] | None = None,
) -> list[IngestResult]:
    """Ingest ``items`` in order inside a transaction the caller commits: the same outcome as
    one ``ingest_in`` after another, written with a few set-wise statements for the whole list
    (on PostgreSQL one round trip each, whatever the list's length).

    Bookkeeping times (``updated_at`` of tickets and timers) take the latest ``now`` among
    the items; what the rules and the dispatcher use (inbox, timeline, effects) keeps each
    item's own. Given the ``configured`` targets, an effect for any other is stored final,
    ``skipped`` (what the dispatcher would record on its first look).
    """
    ats = [item.now.timestamp() for item in items]
    inbox_ids, stored = uow.add_inbox_and_lock(
        [
            {
                "source": item.event.source,
                "dedup_key": item.dedup_key,
                "ticket_id": item.event.ticket_id,
                "at": at,
                "event": RawJSON(_event_json(item.event).decode()),
            }
            for item, at in zip(items, ats, strict=True)
        ]
    )
    fresh = [item for item, inbox_id in zip(items, inbox_ids, strict=True) if inbox_id]
    states: dict[tuple[str, str], TicketState] = {
        key: TicketState.model_validate(raw) for key, raw in stored.items()
    }
    leases = LeasePlan(
        uow.open_targets(list(stored)) if stored and any(i.lease for i in fresh) else set()
    )
    latest = max(ats, default=0.0)
    changed: dict[tuple[str, str], TicketState] = {}
    timer_changes: list[TimerUpdate] = []
    notes: list[TimelineEntry] = []
    effects: list[NewEffect] = []
    skipped: list[bool] = []  # per entry of ``effects``
    # Per item: its outcome, then (first, end) of its effects in ``effects`` and its earliest
    # armed timer.
    plans: list[tuple[Literal["accepted", "duplicate", "stale"], int, int, float | None]] = []
    for item, inbox_id, at in zip(items, inbox_ids, ats, strict=True):
        if inbox_id is None:
            plans.append(("duplicate", 0, 0, None))
            continue
        event = item.event
        key = src, tid = event.source, event.ticket_id
        state = states.get(key)
        policy = policies.current if state is None else policies.pinned(uow, state.policy)
        decision = decide(state, event, now=item.now, policy=policy)
        # The timeline's "received", "opened" and "decided" entries are read back from the
        # inbox, the state and the outbox; only what exists nowhere else is written to it.
        if decision.notes:
            kind = "stale" if decision.stale else "note"
            notes.extend(
                TimelineEntry(src, tid, at, kind, {"note": note}) for note in decision.notes
            )
        if decision.stale:
            uow.mark_inbox(inbox_id, "stale")
            plans.append(("stale", 0, 0, None))
            continue
        states[key] = changed[key] = decision.state
        earliest: float | None = None  # of the timers it arms
        for change in decision.timers:
            due = change.due.timestamp() if change.due is not None else None
            timer_changes.append(TimerUpdate(src, tid, change.kind.value, due, change.rule))
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        first = len(effects)
        for row in effect_rows(src, tid, decision):
            skip = configured is not None and row["target"] not in configured
            effects.append(
                NewEffect(row, at, not skip and item.lease is not None and leases.take(row))
            )
            skipped.append(skip)
        plans.append(("accepted", first, len(effects), earliest))
    lease = next((item.lease for item in items if item.lease is not None), None)
    inserted = uow.write_decided(
        states=[
            TicketWrite(s, t, RawJSON(_state_json(state).decode()))
            for (s, t), state in changed.items()
        ],
        timer_changes=timer_changes,
        timeline=notes,
        effects=effects,
        at=latest,
        lease=lease,
        skipped=skipped,
    )
    results = []
    for outcome, first, end, earliest in plans:
        rows = [
            (row, skip)
            for row, skip in zip(inserted[first:end], skipped[first:end], strict=True)
            if row is not None
        ]
        results.append(
            IngestResult(
                outcome,
                len(rows),
                earliest,
                tuple(row for row, _ in rows if row.lease_token == 1),
                tuple(row.target for row, skip in rows if skip),
            )
        )
    # Work another replica may take, announced at commit: the effects left for a claim (the
    # leased ones go out from here) and the earliest timer armed, if it is due soon. This
    # replica's own scheduler is woken for its timers, and every replica's looks for due
    # timers at least once a poll period (a second by default): a NOTIFY for a distant
    # deadline would only cost every replica work (and, on PostgreSQL, serialise the commits
    # that send one).
    soon = latest + ANNOUNCE_TIMERS_WITHIN
    armed = [r.earliest_timer for r in results if r.earliest_timer is not None]
    timer = min(armed, default=None)
    unleased = sum(r.unclaimed for r in results)
    if unleased or (timer is not None and timer <= soon):
        uow.announce(timer=timer if timer is not None and timer <= soon else None, effects=unleased)
    return results
