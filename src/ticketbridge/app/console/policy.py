"""The console's Policy page: the policy in force as the procedure's table, and a what-if form
that runs a pasted timeline through the same simulation as ``POST /v1/simulate``."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from ticketbridge.app.console.pages import first, form, signed_in
from ticketbridge.app.console.security import csrf_ok
from ticketbridge.app.http.routes.simulate import simulation_limiter
from ticketbridge.app.simulation.simulate import simulate
from ticketbridge.app.simulation.timeline import TimelineError, parse_timeline
from ticketbridge.rules import Policy, Priority
from ticketbridge.rules.durations import format_duration

router = APIRouter(include_in_schema=False)  # included under /ui by the console router
MAX_TIMELINE_CHARS = 20_000
EXAMPLE = """\
events:
  - {at: 0m, event: created, priority: urgent, status: open}
  - {at: 20m, event: agent_reply}
"""


def procedure(policy: Policy) -> list[dict[str, Any]]:
    """One row per priority: page, engagement, Tier-One window and action, cadence, write-up."""
    rows = []
    for priority in Priority:
        rules = policy.for_priority(priority)
        engagement = format_duration(rules.engagement.within)
        if rules.engagement.calendar:
            engagement += f" ({rules.engagement.calendar} calendar)"
        rows.append(
            {
                "priority": priority.value,
                "label": priority.label,
                "page": "yes" if rules.page else "no",
                "engagement": engagement,
                "tier_one": f"{format_duration(rules.tier_one.within)}, then {rules.tier_one.then}",
                "updates": format_duration(rules.customer_updates.every)
                if rules.customer_updates
                else "—",
                "write_up": f"within {format_duration(rules.write_up.within)}"
                if rules.write_up
                else "—",
            }
        )
    return rows


async def _page(request: Request, *, status: int = 200, **context: Any) -> Response:
    services, console, session = signed_in(request)
    policy = services.policy
    context.setdefault("timeline", EXAMPLE)
    return console.render(
        "policy.html",
        request,
        session,
        status=status,
        policy=policy,
        rows=procedure(policy),
        auto_close=format_duration(policy.pending.auto_close_after),
        **context,
    )


@router.get("/policy")
async def policy_page(request: Request) -> Response:
    return await _page(request)


@router.post("/policy/what-if")
async def what_if(request: Request) -> Response:
    """Simulate a timeline (nothing is sent or stored); any signed-in role may."""
    services, _, session = signed_in(request)
    fields = await form(request)
    if not csrf_ok(session, first(fields, "csrf")):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
    text = first(fields, "timeline")[:MAX_TIMELINE_CHARS]
    try:
        timeline = parse_timeline(text, source="timeline")
        # The API's simulations limiter: a few at a time, whoever asks.
        result = await anyio.to_thread.run_sync(
            lambda: simulate(timeline, services.policy), limiter=simulation_limiter(request)
        )
    except (TimelineError, ValueError) as exc:
        return await _page(request, status=422, timeline=text, error=str(exc))
    return await _page(request, timeline=text, result=result)
