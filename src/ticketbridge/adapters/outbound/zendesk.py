"""Zendesk Support (Ticketing) API v2: read tickets, update them, add private notes, find groups.

The same surface as ``FreshdeskApi`` so the app wires either helpdesk the same way. Wire facts
and where each comes from: ``tests/data/vendors/zendesk_api/README.md``. In short:

- ``{api_url}/api/v2``; HTTP Basic with ``{email}/token`` as user and the API token as password.
- Everything is a ticket update: ``PUT /tickets/{id}.json`` with ``{"ticket": {...}}`` carries a
  private note (``comment`` with ``public: false``), a reassignment and a status change alike.
- "close" sets ``solved``, as an agent would: Zendesk itself moves solved tickets to ``closed``
  (a default automation, after 4 days unless the account changed it). A closed ticket can never
  be reopened and hardly edited, while a solved one still reopens when the customer writes
  back. Zendesk refuses to solve a ticket without an assignee (422, final) unless the account
  assigns the solver automatically.
- Rate limits are per plan (200 to 2,500 calls a minute, account-wide, shared with every other
  integration) and the Update Ticket endpoint has a tighter one of its own; a 429 says when to
  come back in ``Retry-After`` (seconds), which ``AdapterError.retry_after`` carries.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

import httpx

from ticketbridge.adapters.inbound.zendesk import PRIORITY_LABELS, STATUS_LABELS
from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    send_request,
)
from ticketbridge.adapters.outbound.http import checked_id, is_int, json_of, malformed, optional_int
from ticketbridge.adapters.outbound.ports import GroupDirectory, HelpdeskTicket, Sent
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter

VENDOR = "zendesk"
NAME = "Zendesk"  # as messages show it
GROUPS_PER_PAGE = 100
# Offset pagination stops at 100 pages (10,000 records) on Zendesk's side too (400 beyond).
MAX_GROUP_PAGES = 100
CLOSE_STATUS = "solved"  # the API user solves; Zendesk closes (see the module docstring)
# The API's values; the labels a webhook renders ("", "-", "on-hold") are not API values.
API_PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
# ``HelpdeskTicket.status_code`` for each Zendesk status. Stable: stored in dedup keys. The
# numbers match Freshdesk's where the meaning is the same (2 open, 3 pending, 4 solved/resolved,
# 5 closed); 1 (new) and 6 (on hold) are Zendesk's own.
STATUS_CODES = {"new": 1, "open": 2, "pending": 3, "solved": 4, "closed": 5, "hold": 6}
STATUS_NAMES = {1: "New", 2: "Open", 3: "Pending", 4: "Solved", 5: "Closed", 6: "On-hold"}
_TICKET_ID = re.compile(r"(?!0+$)[0-9]{1,20}")  # not all zeros
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ERROR_CODE = re.compile(r"[A-Za-z]{1,40}")


class ZendeskApi:
    """Calls ``{api_url}/api/v2`` as ``{email}/token``, within one account-wide rate budget."""

    def __init__(
        self,
        *,
        api_url: str,
        email: str,
        api_token: str,
        client: httpx.AsyncClient,
        calls_per_minute: int = 200,
    ) -> None:
        url = httpx.URL(api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("Zendesk api_url must be an http(s) URL")
        if url.userinfo or url.query or url.fragment:
            # Credentials go in email/api_token; a query or fragment would swallow our paths.
            raise ValueError("Zendesk api_url must not carry credentials, a query or a fragment")
        if not email or ":" in email or email.strip() != email:
            raise ValueError("Zendesk email must be an agent's address (no colon, no spaces)")
        if email.endswith("/token"):
            raise ValueError("Zendesk email must be given without the '/token' suffix")
        if not api_token:
            raise ValueError("Zendesk api_token is empty")
        if calls_per_minute < 1:
            raise ValueError("Zendesk calls_per_minute must be at least 1")
        self._base = api_url.rstrip("/") + "/api/v2"
        self._auth = httpx.BasicAuth(f"{email}/token", api_token)
        credentials = base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
        self._secrets = (email, api_token, credentials)
        self._client = client
        self._limiter = RollingWindowLimiter(calls_per_minute, 60)
        self._groups = GroupDirectory("Zendesk", self._load_groups)

    def __repr__(self) -> str:
        return "ZendeskApi(api_url=***, email=***, api_token=***)"

    @property
    def limiter(self) -> RollingWindowLimiter:
        """The rate budget every call of this instance passes through."""
        return self._limiter

    async def get_ticket(self, ticket_id: str) -> HelpdeskTicket:
        """Read one ticket (``GET /tickets/{id}.json``)."""
        checked = _ticket_id(ticket_id)
        response = await self._call("GET", f"/tickets/{checked}.json")
        document = json_of(response, NAME, "ticket")
        if not isinstance(document, dict):
            raise malformed(NAME, "ticket")
        return _parse_ticket(document.get("ticket"), expected_id=checked)

    async def update_ticket(self, ticket_id: str, fields: dict[str, Any]) -> int:
        """Change ticket fields in one ``PUT /tickets/{id}.json``; return the HTTP status."""
        response = await self._put_ticket(ticket_id, fields)
        return response.status_code

    async def add_private_note(self, ticket_id: str, body_html: str) -> int:
        """Add a private note (an internal comment) to a ticket; return the HTTP status."""
        response = await self._put_note(ticket_id, body_html)
        return response.status_code

    async def group_id(self, name: str) -> int:
        """The id of the group called ``name`` (the list is fetched once and cached)."""
        return await self._groups.id_of(name)

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Carry out one helpdesk effect (note, reassign or close) or raise AdapterError."""
        action = payload.get("action")
        if action not in ("note", "reassign", "close"):
            raise AdapterError(f"unknown Zendesk action {action!r}", retryable=False)
        ticket_id = _ticket_id(payload.get("ticket_id"))
        if action == "note":
            body = payload.get("body")
            if not isinstance(body, str) or not body.strip():
                raise AdapterError("Zendesk note without a body refused", retryable=False)
            response = await self._put_note(ticket_id, body)
            return Sent(response.status_code, _note_info(response))
        if action == "reassign":
            group = payload.get("group")
            if not isinstance(group, str) or not group:
                raise AdapterError("Zendesk reassign without a group refused", retryable=False)
            group_id = await self.group_id(group)
            # One update: the group and no agent (Zendesk keeps an agent only inside its group).
            code = await self.update_ticket(ticket_id, {"group_id": group_id, "assignee_id": None})
            return Sent(code, {"group_id": group_id})
        code = await self.update_ticket(ticket_id, {"status": CLOSE_STATUS})
        return Sent(code)

    async def _put_ticket(self, ticket_id: str, fields: dict[str, Any]) -> httpx.Response:
        return await self._call(
            "PUT", f"/tickets/{_ticket_id(ticket_id)}.json", json={"ticket": fields}
        )

    async def _put_note(self, ticket_id: str, body_html: str) -> httpx.Response:
        return await self._put_ticket(
            ticket_id, {"comment": {"html_body": body_html, "public": False}}
        )

    async def _load_groups(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for page in range(1, MAX_GROUP_PAGES + 1):
            # Pages are counted here; ``next_page`` only says whether there is one. Following
            # its URL would send our credentials wherever the reply points.
            response = await self._call(
                "GET", "/groups.json", params={"page": page, "per_page": GROUPS_PER_PAGE}
            )
            document = json_of(response, NAME, "groups list")
            if not isinstance(document, dict) or "next_page" not in document:
                raise malformed(NAME, "groups list")
            items, next_page = document.get("groups"), document["next_page"]
            if not isinstance(items, list) or not (next_page is None or isinstance(next_page, str)):
                raise malformed(NAME, "groups list")
            for item in items:
                if not isinstance(item, dict):
                    raise malformed(NAME, "groups list")
                name, group_id = item.get("name"), item.get("id")
                if not isinstance(name, str) or not is_int(group_id):
                    raise malformed(NAME, "groups list")
                if item.get("deleted") is True:  # a deleted group cannot take tickets
                    continue
                groups.setdefault(name, group_id)
            if next_page is None:
                return groups
        raise AdapterError(
            f"Zendesk groups list longer than {MAX_GROUP_PAGES} pages", retryable=False
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        async with self._limiter:
            response = await send_request(
                self._client,
                VENDOR,
                method,
                self._base + path,
                json=json,
                params=params,
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        error = classify_response(VENDOR, response)
        if error is None:
            return response
        details = [
            detail
            for detail in (self._error_code(response), self._request_id(response))
            if detail is not None
        ]
        if not details:
            raise error
        raise AdapterError(
            f"{error} ({', '.join(details)})",
            retryable=error.retryable,
            retry_after=error.retry_after,
            status_code=error.status_code,
        )

    def _safe(self, value: str) -> bool:
        """Neither holds a credential nor is a piece of one (an echo of our own header)."""
        return not any(
            secret in value or (len(value) >= 8 and value in secret) for secret in self._secrets
        )

    def _request_id(self, response: httpx.Response) -> str | None:
        # Zendesk's edge may repeat the id: "70b48ed9ef145866-IAD, 70b48ed9ef145866-IAD".
        raw = response.headers.get("x-request-id") or response.headers.get("x-zendesk-request-id")
        request_id = (raw or "").split(",")[0].strip()
        if _REQUEST_ID.fullmatch(request_id) and self._safe(request_id):
            return f"x-request-id {request_id}"
        return None

    def _error_code(self, response: httpx.Response) -> str | None:
        """Zendesk's error name (``RecordInvalid``, ``InvalidEndpoint``...), never free text."""
        try:
            document = response.json()
        except ValueError:
            return None
        code = document.get("error") if isinstance(document, dict) else None
        if isinstance(code, str) and _ERROR_CODE.fullmatch(code) and self._safe(code):
            return code
        return None


def _note_info(response: httpx.Response) -> dict[str, Any]:
    """The note's comment id (and its audit's), when the reply has them: the note exists whatever
    the reply says, so an odd reply is not an error."""
    try:
        document = response.json()
    except ValueError:
        return {}
    audit = document.get("audit") if isinstance(document, dict) else None
    if not isinstance(audit, dict):
        return {}
    info: dict[str, Any] = {}
    if is_int(audit.get("id")):
        info["audit_id"] = str(audit["id"])
    events = audit.get("events")
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and event.get("type") == "Comment" and is_int(event.get("id")):
            info["note_id"] = str(event["id"])
            break
    return info


def _parse_ticket(data: Any, *, expected_id: str) -> HelpdeskTicket:
    if not isinstance(data, dict):
        raise malformed(NAME, "ticket")
    ticket_id, priority, status = data.get("id"), data.get("priority"), data.get("status")
    if not is_int(ticket_id) or str(ticket_id) != expected_id:
        raise malformed(NAME, "ticket (id)")
    if priority is not None and (not isinstance(priority, str) or priority not in API_PRIORITIES):
        raise malformed(NAME, "ticket (priority)")
    if not isinstance(status, str) or status not in STATUS_CODES:
        raise malformed(NAME, "ticket (status)")
    updated_at: datetime | None = None
    raw_updated = data.get("updated_at")
    if raw_updated is not None:
        try:
            updated_at = datetime.fromisoformat(str(raw_updated))
        except ValueError:
            raise malformed(NAME, "ticket (updated_at)") from None
    return HelpdeskTicket(
        ticket_id=str(ticket_id),
        # The inbound adapter's own tables, so an API read and a webhook never disagree; no
        # priority at all reads as the webhook's empty label does.
        priority=PRIORITY_LABELS[priority or ""],
        status=STATUS_LABELS[status],
        status_code=STATUS_CODES[status],
        group_id=optional_int(data, "group_id", NAME),
        responder_id=optional_int(data, "assignee_id", NAME),
        updated_at=updated_at,
    )


def _ticket_id(value: object) -> str:
    """The ticket id as a path segment: 1-20 ASCII digits, not all zeros, written without
    leading zeros."""
    return str(int(checked_id(value, _TICKET_ID, "Zendesk ticket id", numbers=True)))
