"""The admin API under ``/v1`` (Bearer admin token)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ticketbridge.app.deps import AdminDep, ServicesDep
from ticketbridge.app.schemas import (
    EffectView,
    ErrorBody,
    TicketView,
    TimelineEntry,
    TimerView,
    iso,
)

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
