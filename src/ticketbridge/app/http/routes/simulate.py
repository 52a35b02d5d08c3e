"""``POST /v1/simulate`` and ``GET /v1/tickets/{source}/{id}/explain`` (Bearer admin token)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import yaml
from fastapi import APIRouter, Body, HTTPException, Request

from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.app.http.deps import AdminDep, ServicesDep
from ticketbridge.app.http.schemas import ErrorBody
from ticketbridge.app.policy_file import PolicyError, parse_policy
from ticketbridge.app.services.explain import Explanation, explain_ticket
from ticketbridge.app.simulation.simulate import SimulationResult, simulate
from ticketbridge.app.simulation.timeline import TimelineError, validate_timeline
from ticketbridge.rules import Policy

router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[AdminDep])

# Simulations are CPU work in worker threads: a few at a time, whatever the callers do.
CONCURRENT_SIMULATIONS = 2
MAX_POLICY_CHARS = 100_000

_EXAMPLE = {
    "events": [
        {"at": "0m", "event": "created", "priority": "urgent", "status": "open"},
        {"at": "20m", "event": "agent_reply"},
        {"at": "2h", "status": "pending"},
    ]
}


def _policy(value: Any) -> Policy | None:
    """The request's policy: YAML text, or the same document as a JSON object."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_POLICY_CHARS:
            raise PolicyError("policy", [("(top)", None, f"over {MAX_POLICY_CHARS} characters")])
        return parse_policy(value, source="policy")
    if isinstance(value, dict):
        try:
            return parse_policy(yaml.safe_dump(value), source="policy")
        except PolicyError as exc:  # lines of a re-dumped document would point nowhere
            raise PolicyError("policy", [(k, None, m) for k, _, m in exc.problems]) from None
    raise PolicyError("policy", [("(top)", None, "give the policy as YAML text or an object")])


def simulation_limiter(request: Request) -> anyio.CapacityLimiter:
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "simulations", None)
    if limiter is None:
        limiter = request.app.state.simulations = anyio.CapacityLimiter(CONCURRENT_SIMULATIONS)
    return limiter


@router.post(
    "/simulate",
    response_model=SimulationResult,
    responses={
        400: {"model": ErrorBody, "description": "The body is not UTF-8 JSON"},
        401: {"model": ErrorBody},
        422: {"model": ErrorBody, "description": "The timeline or the policy is invalid (named)"},
    },
    summary="Run a ticket timeline through the rules: the effects it would cause, none sent",
)
async def simulate_timeline(
    request: Request,
    services: ServicesDep,
    body: Annotated[
        dict[str, Any],
        Body(
            description="A timeline as docs/simulate.md describes it, and optionally `policy`: "
            "a policy as YAML text or as an object (default: the policy in force).",
            examples=[_EXAMPLE],
        ),
    ],
) -> SimulationResult:
    """Nothing is sent and nothing is stored: the timeline runs on a throwaway store."""
    document = dict(body)
    try:
        policy = _policy(document.pop("policy", None)) or services.policy
        timeline = validate_timeline(document, source="timeline")
    except (PolicyError, TimelineError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    try:
        return await anyio.to_thread.run_sync(
            lambda: simulate(timeline, policy), limiter=simulation_limiter(request)
        )
    except ValueError as exc:  # a combination the rules refuse (e.g. a calendar never open)
        raise HTTPException(status_code=422, detail=f"cannot simulate: {exc}") from None


@router.get(
    "/tickets/{source}/{ticket_id}/explain",
    response_model=Explanation,
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody, "description": "ticketbridge has never seen this ticket"},
        503: {"model": ErrorBody, "description": "The store is unavailable; retry later"},
    },
    summary="A ticket's commitments: due times, states, and the rules behind them",
)
async def explain(source: str, ticket_id: str, services: ServicesDep) -> Explanation:
    try:
        found = await services.run_db(
            lambda: explain_ticket(services.store, services.policies, source, ticket_id)
        )
    except StoreUnavailable:
        raise HTTPException(
            status_code=503, detail="store unavailable, retry later", headers={"Retry-After": "5"}
        ) from None
    if found is None:
        raise HTTPException(status_code=404, detail=f"no ticket {source}/{ticket_id}")
    return found
