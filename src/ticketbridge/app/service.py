"""Apply one inbound event or one due timer: rules, new state, outbox, timers — one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from ticketbridge.adapters.store.sql import LeasePlan, OutboxRow, RawJSON, Store, UnitOfWork
from ticketbridge.rules import Decision, Policy, TicketEvent, TicketState, decide
from ticketbridge.rules.model import ADMIN_EVENTS, TimerKind
from ticketbridge.rules.timers import on_timer

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


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["accepted", "duplicate", "stale"]
    effects: int
    earliest_timer: float | None = None
    leased: tuple[OutboxRow, ...] = ()


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


def ingest_many(
    uow: UnitOfWork, items: Sequence[Incoming], *, policies: PolicyBook
) -> list[IngestResult]:
    """Ingest ``items`` in order inside a transaction the caller commits: the same outcome as
    one ``ingest_in`` after another, written with a few set-wise statements for the whole list
    (on PostgreSQL one round trip each, whatever the list's length).

    Bookkeeping times (``updated_at`` of tickets and timers) take the latest ``now`` among
    the items; what the rules and the dispatcher use (inbox, timeline, effects) keeps each
    item's own.
    """
    inbox_ids = uow.add_inbox_many(
        [
            {
                "source": item.event.source,
                "dedup_key": item.dedup_key,
                "ticket_id": item.event.ticket_id,
                "at": item.now.timestamp(),
                "event": RawJSON(item.event.model_dump_json()),
            }
            for item in items
        ]
    )
    fresh = [item for item, inbox_id in zip(items, inbox_ids, strict=True) if inbox_id]
    stored = uow.lock_tickets([(i.event.source, i.event.ticket_id) for i in fresh])
    states: dict[tuple[str, str], TicketState] = {
        key: TicketState.model_validate(raw) for key, raw in stored.items()
    }
    leases = LeasePlan(
        uow.open_targets(list(stored)) if stored and any(i.lease for i in fresh) else set()
    )
    latest = max((item.now.timestamp() for item in items), default=0.0)
    changed: dict[tuple[str, str], TicketState] = {}
    timer_changes: list[tuple[str, str, str, float | None, str]] = []
    notes: list[tuple[str, str, float, str, dict[str, Any]]] = []
    effects: list[tuple[dict[str, Any], float, bool]] = []
    # Per item: its outcome, then (first, end) of its effects in ``effects`` and its earliest
    # armed timer.
    plans: list[tuple[Literal["accepted", "duplicate", "stale"], int, int, float | None]] = []
    for item, inbox_id in zip(items, inbox_ids, strict=True):
        if inbox_id is None:
            plans.append(("duplicate", 0, 0, None))
            continue
        event, at = item.event, item.now.timestamp()
        key = src, tid = event.source, event.ticket_id
        state = states.get(key)
        policy = policies.current if state is None else policies.pinned(uow, state.policy)
        decision = decide(state, event, now=item.now, policy=policy)
        # The timeline's "received", "opened" and "decided" entries are read back from the
        # inbox, the state and the outbox; only what exists nowhere else is written to it.
        kind = "stale" if decision.stale else "note"
        notes.extend((src, tid, at, kind, {"note": note}) for note in decision.notes)
        if decision.stale:
            uow.mark_inbox(inbox_id, "stale")
            plans.append(("stale", 0, 0, None))
            continue
        states[key] = changed[key] = decision.state
        timer_changes.extend(
            (src, tid, c.kind.value, c.due.timestamp() if c.due is not None else None, c.rule)
            for c in decision.timers
        )
        first = len(effects)
        effects.extend(
            (row, at, item.lease is not None and leases.take(row))
            for row in effect_rows(src, tid, decision)
        )
        armed = [c.due.timestamp() for c in decision.timers if c.due is not None]
        plans.append(("accepted", first, len(effects), min(armed, default=None)))
    uow.save_tickets(
        [(s, t, RawJSON(state.model_dump_json())) for (s, t), state in changed.items()],
        at=latest,
    )
    uow.set_timers_many(timer_changes, at=latest)
    uow.add_timeline_many(notes)
    lease = next((item.lease for item in items if item.lease is not None), None)
    inserted = uow.insert_effects(effects, lease=lease)
    results = []
    for outcome, first, end, earliest in plans:
        rows = [row for row in inserted[first:end] if row is not None]
        results.append(
            IngestResult(
                outcome,
                len(rows),
                earliest,
                tuple(row for row in rows if row.lease_token == 1),
            )
        )
    # Work another replica may take, announced at commit: the earliest timer armed, and the
    # effects left for a claim (the leased ones go out from here).
    armed = [r.earliest_timer for r in results if r.earliest_timer is not None]
    unleased = sum(r.effects - len(r.leased) for r in results)
    if armed or unleased:
        uow.announce(timer=min(armed, default=None), effects=unleased)
    return results


@dataclass(frozen=True)
class TimerRun:
    fired: int
    effects: int
    max_lateness: float
    # For metrics: each fired timer's lateness, and (timer kind, priority) of each commitment
    # it found missed (an engagement or customer-update timer that acted).
    latenesses: tuple[float, ...] = ()
    breaches: tuple[tuple[str, str], ...] = ()


BREACH_TIMERS = frozenset({TimerKind.ENGAGEMENT, TimerKind.CUSTOMER_UPDATE})


def fire_due_timers(store: Store, *, now: datetime, policies: PolicyBook, limit: int) -> TimerRun:
    """Fire up to ``limit`` due timers in one transaction: each fires once or not at all.

    The batch is read and written set-wise (one statement per kind of write), so the cost per
    timer is the rules' work plus a share of each statement.
    """
    at = now.timestamp()
    with store.unit_of_work() as uow:
        due = uow.due_timers(now=at, limit=limit)
        if not due:
            return TimerRun(0, 0, 0.0)
        states = {
            key: TicketState.model_validate(raw)
            for key, raw in uow.load_tickets([(t.source, t.ticket_id) for t in due]).items()
        }
        changed: dict[tuple[str, str], TicketState] = {}
        fired: list[tuple[int, float]] = []
        breaches: list[tuple[str, str]] = []
        timer_changes: list[tuple[str, str, str, float | None, str]] = []
        timeline_rows: list[tuple[str, str, float, str, dict[str, Any]]] = []
        effects: list[dict[str, Any]] = []
        for timer in due:
            lateness = max(0.0, at - timer.due_at)
            fired.append((timer.id, lateness))
            key = (timer.source, timer.ticket_id)
            state = states.get(key)
            if state is None:
                continue
            decision = on_timer(
                state,
                TimerKind(timer.kind),
                due=datetime.fromtimestamp(timer.due_at, UTC),
                now=now,
                policy=policies.pinned(uow, state.policy),
            )
            states[key] = changed[key] = decision.state  # a second timer of it sees this
            if decision.effects and timer.kind in BREACH_TIMERS:
                breaches.append((timer.kind, state.priority.value))
            src, tid = key
            timeline_rows.extend(
                (
                    src,
                    tid,
                    at,
                    "timer",
                    {"timer": timer.kind, "note": n, "late_s": round(lateness, 3)},
                )
                for n in decision.notes
            )
            timer_changes.extend(
                (src, tid, c.kind.value, c.due.timestamp() if c.due else None, c.rule)
                for c in decision.timers
            )
            effects.extend(effect_rows(src, tid, decision))
        uow.mark_timers_fired(fired, at=at)
        uow.save_tickets(
            [(s, t, st.model_dump(mode="json")) for (s, t), st in changed.items()], at=at
        )
        uow.set_timers_many(timer_changes, at=at)
        uow.add_timeline_many(timeline_rows)
        created = uow.enqueue_many(effects, at=at)
        if created:
            uow.announce()
    latenesses = tuple(late for _, late in fired)
    return TimerRun(len(fired), created, max(latenesses), latenesses, tuple(breaches))
