"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ticketbridge.adapters.store.errors import StoreError
from ticketbridge.app.http.deps import ServicesDep
from ticketbridge.app.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Store unreachable or schema not current"}},
    summary="The store is reachable and its schema current",
)
async def readyz(services: ServicesDep) -> JSONResponse:
    try:
        current, head = await services.run_db(services.store.schema_revisions)
    except StoreError as exc:  # the database unreachable or refusing: not ready
        detail = f"store unreachable: {exc}"
        return JSONResponse(Health(status="unavailable", detail=detail).model_dump(), 503)
    if current != head:
        detail = f"schema at {current}, expected {head}: run `ticketbridge migrate`"
        return JSONResponse(Health(status="unavailable", detail=detail).model_dump(), 503)
    return JSONResponse(Health(status="ok").model_dump(), 200)
