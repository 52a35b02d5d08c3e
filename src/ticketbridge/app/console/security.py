"""The console's sign-in: roles from the two tokens, a signed expiring session cookie, CSRF
tokens, security headers and a per-address sign-in limit.

The session cookie is signed with itsdangerous (what Starlette's SessionMiddleware uses): a
timestamped HMAC whose age is checked on every read, so no signing code of our own. It holds
the role, a CSRF token and a digest of the token signed in with: changing either token ends
its sessions, whichever key signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ticketbridge.app.settings import Settings

Role = Literal["admin", "viewer"]
COOKIE = "tb_console"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Session:
    role: Role | None  # None: not signed in (the sign-in form's CSRF token only)
    csrf: str


def _tokens(settings: Settings) -> dict[Role, str]:
    found: dict[Role, str] = {}
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        found["admin"] = settings.admin_token.get_secret_value()
    if settings.viewer_token is not None and settings.viewer_token.get_secret_value():
        found["viewer"] = settings.viewer_token.get_secret_value()
    return found


def console_enabled(settings: Settings) -> bool:
    """The console is on when an admin or a viewer token is set."""
    return bool(_tokens(settings))


def _digest(token: str) -> str:
    return hashlib.sha256(b"ticketbridge-console:" + token.encode()).hexdigest()[:32]


class Gate:
    """Signs and reads sessions, and tells a presented token's role."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        configured = settings.console.session_secret
        if configured is not None and configured.get_secret_value():
            key = configured.get_secret_value()
        else:
            tokens = _tokens(settings)
            key = hashlib.sha256(
                ("\0".join(tokens.get(r, "") for r in ("admin", "viewer"))).encode()
            ).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt="ticketbridge.console.session")
        self.max_age = int(settings.console.session_hours * 3600)

    def role_of(self, presented: str) -> Role | None:
        """The role a presented token signs in as, compared in constant time."""
        given = presented.strip().encode("utf-8", "surrogateescape")
        found: Role | None = None
        for role, token in _tokens(self.settings).items():
            if hmac.compare_digest(given, token.encode()):
                found = role
        return found

    def read(self, request: Request) -> Session | None:
        """The request's session, or None when absent, forged, expired or of a changed token."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        role = data.get("r")
        if role is None:
            return Session(None, data["c"])
        token = _tokens(self.settings).get(role)
        if token is None or not hmac.compare_digest(str(data.get("t", "")), _digest(token)):
            return None
        return Session(role, data["c"])

    def write(self, response: Response, request: Request, role: Role | None) -> Session:
        """Set a new session (a fresh CSRF token) on ``response``."""
        session = Session(role, secrets.token_urlsafe(24))
        data: dict[str, str | None] = {"r": role, "c": session.csrf}
        if role is not None:
            data["t"] = _digest(_tokens(self.settings)[role])
        response.set_cookie(
            COOKIE,
            self._serializer.dumps(data),
            max_age=self.max_age,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return session

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


def csrf_ok(session: Session | None, presented: str | None) -> bool:
    """The form's CSRF token matches the session's (constant time)."""
    if session is None or not presented:
        return False
    return hmac.compare_digest(session.csrf.encode(), presented.encode("utf-8", "replace"))


class SignInLimit:
    """At most ``per_minute`` sign-in attempts per client address in any 60 s; the table of
    addresses is bounded (the oldest is forgotten first)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str, now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        window = self._seen.pop(address, None) or deque()
        while window and window[0] <= at - 60:
            window.popleft()
        allowed = len(window) < self.per_minute
        if allowed:
            window.append(at)
        self._seen[address] = window  # most recent last: eviction takes the oldest
        if len(self._seen) > 10_000:
            del self._seen[next(iter(self._seen))]
        return allowed
