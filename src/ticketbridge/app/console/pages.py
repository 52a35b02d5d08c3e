"""The console's plumbing: templates, the signed-in check, forms, and secret scrubbing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, SecretStr

from ticketbridge.app.bootstrap import Services
from ticketbridge.app.console import views
from ticketbridge.app.console.security import (
    HEADERS,
    Gate,
    Session,
    SignInLimit,
    console_enabled,
    csrf_ok,
)
from ticketbridge.app.http.deps import services_of

MAX_FORM_BYTES = 64 * 1024


def _secrets(model: BaseModel) -> Iterator[str]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 6:
            yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secrets(value)
        elif isinstance(value, list):
            yield from (v.get_secret_value() for v in value if isinstance(v, SecretStr))


class Console:
    """What every console route uses, built once per app on first use."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        self.gate = Gate(settings)
        self.limit = SignInLimit(settings.console.sign_ins_per_minute)
        self.secrets = sorted(set(_secrets(settings)), key=len, reverse=True)
        self.env = Environment(
            loader=PackageLoader("ticketbridge.app.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(span=views.span, when=views.when, stamp=views.stamp)
        self.env.filters["scrub"] = self.scrub

    def scrub(self, text: Any) -> str:
        """``text`` with every configured secret masked (vendor errors may quote a URL)."""
        out = "" if text is None else str(text)
        for secret in self.secrets:
            out = out.replace(secret, "***")
        return out

    def render(
        self, name: str, request: Request, session: Session, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            request=request,
            session=session,
            admin=session.role == "admin",
            csrf=session.csrf,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)


def console_of(request: Request) -> tuple[Services, Console]:
    """The services and the console of this app; 404 when the console is off."""
    services = services_of(request)
    if not console_enabled(services.settings):
        raise HTTPException(status_code=404, detail="not found")
    console: Console | None = getattr(request.app.state, "console", None)
    if console is None:
        console = request.app.state.console = Console(services)
    return services, console


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=HEADERS)


def signed_in(request: Request) -> tuple[Services, Console, Session]:
    """The signed-in session; otherwise a redirect to the sign-in page (303)."""
    services, console = console_of(request)
    session = console.gate.read(request)
    if session is None or session.role is None:
        raise HTTPException(status_code=303, headers={**HEADERS, "Location": "/ui/login"})
    return services, console, session


async def form(request: Request) -> dict[str, list[str]]:
    """The urlencoded form body (bounded)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status_code=413, detail="form too large")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def first(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[0]


async def acting(request: Request) -> tuple[Services, Console, Session, dict[str, list[str]]]:
    """A state-changing request: signed in as admin, with the session's CSRF token (403
    otherwise), and its form."""
    services, console = console_of(request)
    session = console.gate.read(request)
    fields = await form(request)
    if not csrf_ok(session, first(fields, "csrf")):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
    assert session is not None
    if session.role is None:
        raise HTTPException(status_code=303, headers={**HEADERS, "Location": "/ui/login"})
    if session.role != "admin":
        raise HTTPException(status_code=403, detail="read-only: sign in with the admin token")
    return services, console, session, fields


def back_to(fields: dict[str, list[str]], default: str) -> str:
    """Where to go after an action: a console path from the form, else ``default``."""
    target = first(fields, "next")
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def plain(status: int, text: str) -> Response:
    return Response(text, status_code=status, media_type="text/plain", headers=HEADERS)
