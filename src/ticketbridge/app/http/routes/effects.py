"""Dead letters and replay under ``/v1/effects`` (Bearer admin token)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel

from ticketbridge.adapters.store.dead_letters import (
    EffectNotDead,
    EffectNotFound,
    EffectRecord,
    list_effects,
    replay_dead,
)
from ticketbridge.app.http.deps import AdminDep, ServicesDep
from ticketbridge.app.http.schemas import EffectState, EffectSummary, ErrorBody

log = structlog.get_logger("ticketbridge.effects")
# Effect ids fit the outbox's id column on every backend (a 4-byte integer on PostgreSQL):
# a larger one is a 422, not a store error.
MAX_ID = 2**31 - 1

router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[AdminDep])

_BAD = "A query or path parameter is invalid (named in the message)"


class EffectList(BaseModel):
    state: EffectState
    effects: list[EffectSummary]
    next_before_id: int | None


def summary(record: EffectRecord) -> EffectSummary:
    return EffectSummary.of(asdict(record))


@router.get(
    "/effects",
    response_model=EffectList,
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody, "description": _BAD}},
    summary="Effects in one state, newest first (dead letters by default)",
)
async def get_effects(
    services: ServicesDep,
    state: Annotated[EffectState, Query(description="Which effects to list.")] = "dead",
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 100,
    before_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="Only effects with a smaller id: the previous page's `next_before_id`.",
        ),
    ] = None,
) -> EffectList:
    records, next_before_id = await services.run_db(
        lambda: list_effects(services.store, status=state, limit=limit, before_id=before_id)
    )
    return EffectList(
        state=state, effects=[summary(r) for r in records], next_before_id=next_before_id
    )


@router.post(
    "/effects/{effect_id}/retry",
    status_code=202,
    response_model=EffectSummary,
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The effect is not dead"},
        422: {"model": ErrorBody, "description": _BAD},
    },
    summary="Replay one dead effect, once",
    response_description="Replayed: the effect is pending again and due now",
)
async def retry_effect(
    request: Request,
    services: ServicesDep,
    effect_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> EffectSummary:
    now = services.clock.now().timestamp()
    try:
        record = await services.run_db(
            lambda: replay_dead(services.store, effect_id, now=now, via="api")
        )
    except EffectNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except EffectNotDead as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    log.info("outbox.replayed", effect=record.key, id=record.id, target=record.target, via="api")
    request.app.state.dispatcher.wake()
    return summary(record)
