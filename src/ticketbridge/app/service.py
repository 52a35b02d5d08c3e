"""Apply one inbound event or one due timer: rules, new state, outbox, timers — one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from ticketbridge.adapters.store.sql import OutboxRow, Store, UnitOfWork
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


def commit_decision(
    uow: UnitOfWork,
    source: str,
    ticket_id: str,
    decision: Decision,
    *,
    at: float,
    lease: tuple[str, float] | None = None,
) -> list[OutboxRow]:
    """Write a decision: the state, its effects (once each) and its timer changes."""
    uow.save_ticket(source, ticket_id, decision.state.model_dump(mode="json"), at)
    uow.set_timers(
        source,
        ticket_id,
        [
            (c.kind.value, c.due.timestamp() if c.due is not None else None, c.rule)
            for c in decision.timers
        ],
        at=at,
    )
    return uow.enqueue(
        effect_rows(source, ticket_id, decision),
        at=at,
        lease=lease,
    )


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
    """``ingest`` inside a transaction the caller commits; with ``lease`` its effects come
    back leased to the caller, to send at once (see ``UnitOfWork.enqueue``)."""
    at = now.timestamp()
    src, tid = event.source, event.ticket_id
    if event.kind in ADMIN_EVENTS and uow.load_ticket(src, tid) is None:
        raise UnknownTicket(f"no ticket {src}/{tid}")
    inbox_id = uow.add_inbox(
        source=src,
        dedup_key=dedup_key,
        ticket_id=tid,
        event=event.model_dump(mode="json"),
        at=at,
    )
    if inbox_id is None:
        return IngestResult("duplicate", 0)
    raw_state = uow.load_ticket(src, tid)
    state = TicketState.model_validate(raw_state) if raw_state is not None else None
    policy = policies.current if state is None else policies.pinned(uow, state.policy)
    decision = decide(state, event, now=now, policy=policy)
    # The timeline's "received", "opened" and "decided" entries are read back from the inbox,
    # the state and the outbox; only what exists nowhere else is written to it.
    kind = "stale" if decision.stale else "note"
    uow.add_timeline_many([(src, tid, at, kind, {"note": note}) for note in decision.notes])
    if decision.stale:
        uow.mark_inbox(inbox_id, "stale")
        return IngestResult("stale", 0)
    inserted = commit_decision(uow, src, tid, decision, at=at, lease=lease)
    armed = [c.due.timestamp() for c in decision.timers if c.due is not None]
    if armed or len(inserted) > sum(row.lease_token == 1 for row in inserted):
        uow.announce()  # work another replica may take: wake them all at commit
    return IngestResult(
        "accepted",
        len(inserted),
        min(armed) if armed else None,
        tuple(row for row in inserted if row.lease_token == 1),
    )


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
