"""The admin API under ``/v1`` (Bearer admin token)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request

from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.http.deps import AdminDep, ServicesDep
from ticketbridge.app.http.schemas import (
    AdminAccepted,
    EffectView,
    ErrorBody,
    FollowupRequest,
    StatusPageRequest,
    TicketView,
    TimelineEntry,
    TimerView,
    iso,
)
from ticketbridge.app.services.ingest import UnknownTicket, ingest
from ticketbridge.rules import EventKind, TicketEvent, TicketState

router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[AdminDep])


@router.get(
    "/tickets/{source}/{ticket_id}",
    response_model=TicketView,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    summary="A ticket's state, timeline and effects",
)
async def get_ticket(source: str, ticket_id: str, services: ServicesDep) -> TicketView:
    view = await services.run_db(lambda: services.store.ticket_view(source, ticket_id))
    if view is None:
        raise HTTPException(status_code=404, detail=f"no ticket {source}/{ticket_id}")
    return TicketView(
        source=source,
        ticket_id=ticket_id,
        state=view["state"],
        timeline=[
            TimelineEntry(at=iso(e["at"]), kind=e["kind"], detail=e["detail"])
            for e in view["timeline"]
        ],
        effects=[
            EffectView.of(e, reason=e["reason"], payload=e["payload"], result=e["result"])
            for e in view["effects"]
        ],
        timers=[
            TimerView(
                kind=t["kind"],
                due_at=iso(t["due_at"]),
                status=t["status"],
                rule=t["rule"],
                fired_at=iso(t["fired_at"]) if t["fired_at"] is not None else None,
                late_seconds=t["lateness"],
            )
            for t in view["timers"]
        ],
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a request with the same key and it acts once.",
    ),
]
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not UTF-8 JSON"},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "ticketbridge has never seen this ticket"},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "The store is unavailable; retry later"},
}


async def admin_event(
    request: Request,
    services: ServicesDep,
    *,
    source: str,
    ticket_id: str,
    kind: EventKind,
    change: dict[str, Any],
    components: tuple[str, ...] = (),
    idempotency_key: str | None,
) -> AdminAccepted:
    """Run an admin request through the rules like any event: one transaction, effects in
    the outbox, a repeat with the same Idempotency-Key acting once."""
    try:
        raw = await services.run_db(lambda: services.store.ticket_state(source, ticket_id))
        if raw is None:
            raise HTTPException(status_code=404, detail=f"no ticket {source}/{ticket_id}")
        state = TicketState.model_validate(raw)
        event = TicketEvent(
            source=source,
            ticket_id=ticket_id,
            kind=kind,
            priority=state.priority,
            status=state.status,
            status_label=state.status_label,
            change=change,
            components=components,
        )
        key = idempotency_key or uuid.uuid4().hex
        dedup = f"admin:{kind.value}:{source}/{ticket_id}:{key}"
        now = services.clock.now()
        result = await services.run_db(
            lambda: ingest(
                services.store, event=event, dedup_key=dedup, now=now, policies=services.policies
            )
        )
    except UnknownTicket as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except StoreUnavailable:
        raise HTTPException(
            status_code=503, detail="store unavailable, retry later", headers={"Retry-After": "5"}
        ) from None
    if result.effects:
        request.app.state.dispatcher.wake()
    if result.earliest_timer is not None:
        request.app.state.scheduler.wake_if_earlier(result.earliest_timer)
    outcome = "duplicate" if result.outcome == "duplicate" else "accepted"
    return AdminAccepted(outcome=outcome, ticket_id=ticket_id, effects=result.effects)


@router.post(
    "/tickets/{source}/{ticket_id}/followups",
    status_code=202,
    response_model=AdminAccepted,
    responses=_ADMIN_ERRORS,
    summary="Open a follow-up GitHub issue linked to the ticket",
)
async def request_followup(
    source: str,
    ticket_id: str,
    request: Request,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
    body: FollowupRequest | None = None,
) -> AdminAccepted:
    """One follow-up issue per call (per Idempotency-Key when given), via the outbox."""
    change = body.model_dump(exclude_none=True) if body is not None else {}
    return await admin_event(
        request,
        services,
        source=source,
        ticket_id=ticket_id,
        kind=EventKind.FOLLOWUP_REQUESTED,
        change=change,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/tickets/{source}/{ticket_id}/status-page",
    status_code=202,
    response_model=AdminAccepted,
    responses=_ADMIN_ERRORS,
    summary="Declare system-wide impact: open (or extend) the ticket's status-page incident",
)
async def declare_system_wide(
    source: str,
    ticket_id: str,
    request: Request,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
    body: StatusPageRequest | None = None,
) -> AdminAccepted:
    """One status-page incident per ticket: a second call only adds components."""
    components = tuple(body.components) if body is not None else ()
    return await admin_event(
        request,
        services,
        source=source,
        ticket_id=ticket_id,
        kind=EventKind.SYSTEM_WIDE_DECLARED,
        change={"components": list(components)},
        components=components,
        idempotency_key=idempotency_key,
    )
