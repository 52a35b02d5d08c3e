"""The console's routes under ``/ui``: sign-in, Now, Tickets, Ticket, Dead letters.

Pages are server-rendered (they read without JavaScript); htmx only refreshes Now. Every
action is a plain form POST carrying the session's CSRF token, answered with a redirect.
Actions call the same functions the admin API calls (``replay_dead``, the admin events).
"""

from __future__ import annotations

import functools
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from ticketbridge.adapters.store import console as read
from ticketbridge.adapters.store.dead_letters import (
    EffectNotDead,
    EffectNotFound,
    list_effects,
    replay_dead,
)
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.console import policy, views
from ticketbridge.app.console.pages import (
    acting,
    back_to,
    console_of,
    first,
    form,
    plain,
    redirect,
    signed_in,
)
from ticketbridge.app.console.security import csrf_ok
from ticketbridge.app.http.routes.admin import admin_event
from ticketbridge.app.services.explain import explain_ticket
from ticketbridge.rules import EventKind

log = structlog.get_logger("ticketbridge.console")
router = APIRouter(prefix="/ui", include_in_schema=False)
MAX_ID = 2**31 - 1


@router.get("/login")
async def login_page(request: Request) -> Response:
    _, console = console_of(request)
    session = console.gate.read(request)
    if session is not None and session.role is not None:
        return redirect("/ui/")
    response = Response()
    fresh = session or console.gate.write(response, request, None)
    page = console.render("login.html", request, fresh, error=None)
    page.raw_headers.extend(h for h in response.raw_headers if h[0] == b"set-cookie")
    return page


@router.post("/login")
async def login(request: Request) -> Response:
    _, console = console_of(request)
    session = console.gate.read(request)
    fields = await form(request)
    if not csrf_ok(session, first(fields, "csrf")):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
    assert session is not None
    address = request.client.host if request.client else "unknown"
    if not console.limit.allow(address):
        return console.render(
            "login.html", request, session, status=429, error="Too many attempts: wait a minute."
        )
    role = console.gate.role_of(first(fields, "token"))
    if role is None:
        log.info("console.sign_in_refused", client=address)
        return console.render(
            "login.html", request, session, status=401, error="That token is not valid."
        )
    log.info("console.signed_in", role=role, client=address)
    response = redirect("/ui/")
    console.gate.write(response, request, role)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, console = console_of(request)
    session = console.gate.read(request)
    fields = await form(request)
    if not csrf_ok(session, first(fields, "csrf")):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
    response = redirect("/ui/login")
    console.gate.clear(response)
    return response


async def _board(services: Services) -> dict[str, Any]:
    board = await services.run_db(lambda: read.board(services.store))
    now = services.clock.now().timestamp()
    return {
        "groups": views.now_groups(board, services.policy, now),
        "board": board,
        "now": now,
        "oldest": views.ago(board.oldest_open_created_at, now),
    }


@router.get("/")
async def now_page(request: Request) -> Response:
    services, console, session = signed_in(request)
    return console.render("now.html", request, session, **await _board(services))


@router.get("/fragments/now")
async def now_fragment(request: Request) -> Response:
    services, console, session = signed_in(request)
    return console.render("_board.html", request, session, **await _board(services))


@router.get("/tickets")
async def tickets_page(request: Request) -> Response:
    services, console, session = signed_in(request)
    q = request.query_params
    filters = read.TicketFilter(
        source=q.get("source") or None,
        priority=q.get("priority") or None,
        status=q.get("status") or None,
        search=(q.get("q") or "")[:200] or None,
        breached=q.get("breached") == "1",
        paged=q.get("paged") == "1",
    )
    after: read.Cursor | None = None
    if q.get("after_at") and q.get("after_source") and q.get("after_id"):
        try:
            after = (float(q["after_at"]), q["after_source"], q["after_id"])
        except ValueError:
            after = None
    page, cursor = await services.run_db(
        lambda: read.list_tickets(services.store, filters, after=after)
    )
    return console.render(
        "tickets.html",
        request,
        session,
        tickets=page,
        cursor=cursor,
        filters=filters,
        priorities=views.PRIORITIES,
    )


@router.get("/tickets/{source}/{ticket_id}")
async def ticket_page(request: Request, source: str, ticket_id: str) -> Response:
    services, console, session = signed_in(request)
    view = await services.run_db(lambda: services.store.ticket_view(source, ticket_id))
    if view is None:
        return plain(404, f"ticketbridge has never seen {source}/{ticket_id}")
    explanation = await services.run_db(
        lambda: explain_ticket(services.store, services.policies, source, ticket_id)
    )
    return console.render(
        "ticket.html",
        request,
        session,
        source=source,
        ticket_id=ticket_id,
        state=view["state"],
        view=view,
        explanation=explanation,
        links=views.links_out(view["effects"]),
        now=services.clock.now().timestamp(),
        retried=request.query_params.get("retried"),
    )


@router.post("/tickets/{source}/{ticket_id}/{action}")
async def ticket_action(request: Request, source: str, ticket_id: str, action: str) -> Response:
    services, _, _, fields = await acting(request)
    change: dict[str, Any] = {}
    components: tuple[str, ...] = ()
    if action == "followup":
        kind = EventKind.FOLLOWUP_REQUESTED
        title = first(fields, "title").strip()[:200]
        if title:
            change = {"title": title}
    elif action == "system-wide":
        components = tuple(c.strip() for c in first(fields, "components").split(",") if c.strip())
        kind, change = EventKind.SYSTEM_WIDE_DECLARED, {"components": list(components)}
    else:
        raise HTTPException(status_code=404, detail="no such action")
    await admin_event(
        request,
        services,
        source=source,
        ticket_id=ticket_id,
        kind=kind,
        change=change,
        components=components,
        idempotency_key=None,
    )
    return redirect(f"/ui/tickets/{source}/{ticket_id}?done={action}")


@router.get("/dead-letters")
async def dead_letters_page(request: Request) -> Response:
    services, console, session = signed_in(request)
    before = request.query_params.get("before_id")
    before_id = int(before) if before and before.isdigit() and int(before) <= MAX_ID else None
    records, next_before = await services.run_db(
        lambda: list_effects(services.store, status="dead", limit=100, before_id=before_id)
    )
    targets = await services.run_db(lambda: read.dead_targets(services.store))
    return console.render(
        "dead_letters.html",
        request,
        session,
        effects=records,
        next_before=next_before,
        targets=targets,
        retried=request.query_params.get("retried"),
        failed=request.query_params.get("failed"),
    )


async def _replay(request: Request, services: Services, ids: list[int]) -> tuple[int, int]:
    """Replay each dead effect once (``replay_dead``, as the API does); (replayed, not)."""
    now = services.clock.now().timestamp()
    done = failed = 0
    for effect_id in ids:
        try:
            record = await services.run_db(
                functools.partial(replay_dead, services.store, effect_id, now=now, via="console")
            )
        except (EffectNotFound, EffectNotDead):
            failed += 1
            continue
        done += 1
        log.info("outbox.replayed", effect=record.key, id=record.id, via="console")
    if done:
        request.app.state.dispatcher.wake()
    return done, failed


@router.post("/effects/{effect_id}/retry")
async def retry_one(request: Request, effect_id: int) -> Response:
    services, _, _, fields = await acting(request)
    done, failed = await _replay(request, services, [effect_id] if effect_id <= MAX_ID else [])
    target = back_to(fields, "/ui/dead-letters")
    joiner = "&" if "?" in target else "?"
    return redirect(f"{target}{joiner}retried={done}&failed={failed}")


@router.post("/dead-letters/retry")
async def retry_many(request: Request) -> Response:
    services, _, _, fields = await acting(request)
    target = first(fields, "target")
    if target:
        ids = await services.run_db(lambda: read.dead_ids_of_target(services.store, target))
    else:
        ids = [int(i) for i in fields.get("id", []) if i.isdigit() and int(i) <= MAX_ID][:1000]
    done, failed = await _replay(request, services, ids)
    return redirect(f"/ui/dead-letters?retried={done}&failed={failed}")


router.include_router(policy.router)
