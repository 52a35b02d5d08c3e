"""Apply one inbound event: inbox, rules, new state, outbox — in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ticketbridge.adapters.store.sql import Store, UnitOfWork
from ticketbridge.rules import Decision, Policy, TicketEvent, TicketState, decide


@dataclass(frozen=True)
class IngestResult:
    outcome: Literal["accepted", "duplicate", "stale"]
    effects: int


def ingest(
    store: Store, *, event: TicketEvent, dedup_key: str, now: datetime, policy: Policy
) -> IngestResult:
    """Record ``event`` once and commit what the rules decide; a redelivery changes nothing."""
    at = now.timestamp()
    with store.unit_of_work() as uow:
        inbox_id = uow.add_inbox(
            source=event.source,
            dedup_key=dedup_key,
            ticket_id=event.ticket_id,
            event=event.model_dump(mode="json"),
            at=at,
        )
        if inbox_id is None:
            return IngestResult("duplicate", 0)
        raw_state = uow.load_ticket(event.source, event.ticket_id)
        state = TicketState.model_validate(raw_state) if raw_state is not None else None
        decision = decide(state, event, now=now, policy=policy)
        _record(uow, event, state, decision, at=at)
        if decision.stale:
            uow.mark_inbox(inbox_id, "stale")
            return IngestResult("stale", 0)
        uow.save_ticket(event.source, event.ticket_id, decision.state.model_dump(mode="json"), at)
        inserted = uow.enqueue(
            [
                {
                    "key": effect.key,
                    "target": effect.target,
                    "kind": effect.kind,
                    "source": event.source,
                    "ticket_id": event.ticket_id,
                    "payload": effect.payload,
                    "reason": effect.reason,
                }
                for effect in decision.effects
            ],
            at=at,
        )
    return IngestResult("accepted", inserted)


def _record(
    uow: UnitOfWork,
    event: TicketEvent,
    before: TicketState | None,
    decision: Decision,
    *,
    at: float,
) -> None:
    src, tid = event.source, event.ticket_id
    detail = {
        "event": event.kind.value,
        "priority": event.priority.value,
        "status": event.status_label,
        "change": event.change,
    }
    if event.occurred_at is not None:
        detail["occurred_at"] = event.occurred_at.isoformat()
    uow.add_timeline(src, tid, at=at, kind="received", detail=detail)
    if before is None and not decision.stale:
        uow.add_timeline(src, tid, at=at, kind="opened", detail={"policy": decision.state.policy})
    for note in decision.notes:
        uow.add_timeline(
            src, tid, at=at, kind="stale" if decision.stale else "note", detail={"note": note}
        )
    for effect in decision.effects:
        uow.add_timeline(
            src,
            tid,
            at=at,
            kind="decided",
            detail={"effect": effect.key, "target": effect.target, "reason": effect.reason},
        )
