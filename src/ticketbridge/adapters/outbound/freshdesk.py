"""Freshdesk REST API v2: read tickets, update them, add private notes, resolve group names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    send_request,
)
from ticketbridge.adapters.outbound.http import checked_id, is_int, json_of, malformed, optional_int
from ticketbridge.adapters.outbound.ports import GroupDirectory, HelpdeskTicket, Sent
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter
from ticketbridge.rules import Priority, Status

VENDOR = "freshdesk"
NAME = "Freshdesk"  # as messages show it
GROUPS_PER_PAGE = 100
MAX_GROUP_PAGES = 100  # 10,000 groups: a bound so a misbehaving server cannot loop us forever
CLOSED = 5
PRIORITIES = {1: Priority.LOW, 2: Priority.MEDIUM, 3: Priority.HIGH, 4: Priority.URGENT}
STATUSES = {2: Status.OPEN, 3: Status.PENDING, 4: Status.RESOLVED, 5: Status.CLOSED}
_TICKET_ID = re.compile(r"[0-9]{1,20}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class FreshdeskApi:
    """Calls ``{api_url}/api/v2`` with the API key, within one account-wide rate budget."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        client: httpx.AsyncClient,
        calls_per_minute: int = 200,
        budget_window: float = 60.0,
    ) -> None:
        """``calls_per_minute`` calls in any ``budget_window`` seconds (a minute; tests that
        measure the budget scale the window down rather than wait minutes)."""
        url = httpx.URL(api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("Freshdesk api_url must be an http(s) URL")
        if not api_key:
            raise ValueError("Freshdesk api_key is empty")
        if calls_per_minute < 1:
            raise ValueError("Freshdesk calls_per_minute must be at least 1")
        self._base = api_url.rstrip("/") + "/api/v2"
        self._api_key = api_key
        self._auth = httpx.BasicAuth(api_key, "X")
        self._client = client
        self._limiter = RollingWindowLimiter(calls_per_minute, budget_window)
        self._groups = GroupDirectory("Freshdesk", self._load_groups)

    def __repr__(self) -> str:
        return "FreshdeskApi(api_url=***, api_key=***)"

    @property
    def limiter(self) -> RollingWindowLimiter:
        """The rate budget every call of this instance passes through."""
        return self._limiter

    async def get_ticket(self, ticket_id: str) -> HelpdeskTicket:
        """Read one ticket (``GET /tickets/{id}``)."""
        response = await self._call("GET", f"/tickets/{_ticket_id(ticket_id)}")
        return _parse_ticket(json_of(response, NAME, "ticket"))

    async def update_ticket(self, ticket_id: str, fields: dict[str, Any]) -> int:
        """Change ticket fields in one ``PUT /tickets/{id}``; return the HTTP status."""
        response = await self._call("PUT", f"/tickets/{_ticket_id(ticket_id)}", json=fields)
        return response.status_code

    async def add_private_note(self, ticket_id: str, body_html: str) -> int:
        """Add a private note to a ticket; return the HTTP status."""
        response = await self._post_note(ticket_id, body_html)
        return response.status_code

    async def group_id(self, name: str) -> int:
        """The id of the group called ``name`` (the list is fetched once and cached)."""
        return await self._groups.id_of(name)

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Carry out one helpdesk effect (note, reassign or close) or raise AdapterError."""
        action = payload.get("action")
        if action not in ("note", "reassign", "close"):
            raise AdapterError(f"unknown Freshdesk action {action!r}", retryable=False)
        ticket_id = _ticket_id(payload.get("ticket_id"))
        if action == "note":
            body = payload.get("body")
            if not isinstance(body, str) or not body.strip():
                raise AdapterError("Freshdesk note without a body refused", retryable=False)
            response = await self._post_note(ticket_id, body)
            try:  # the note exists whatever the reply says: its id is only a nicety
                note = response.json()
            except ValueError:
                note = None
            note_id = note.get("id") if isinstance(note, dict) else None
            return Sent(response.status_code, {} if note_id is None else {"note_id": str(note_id)})
        if action == "reassign":
            group = payload.get("group")
            if not isinstance(group, str) or not group:
                raise AdapterError("Freshdesk reassign without a group refused", retryable=False)
            group_id = await self.group_id(group)
            code = await self.update_ticket(ticket_id, {"group_id": group_id, "responder_id": None})
            return Sent(code, {"group_id": group_id})
        code = await self.update_ticket(ticket_id, {"status": CLOSED})
        return Sent(code)

    async def _post_note(self, ticket_id: str, body_html: str) -> httpx.Response:
        return await self._call(
            "POST",
            f"/tickets/{_ticket_id(ticket_id)}/notes",
            json={"body": body_html, "private": True},
        )

    async def _load_groups(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for page in range(1, MAX_GROUP_PAGES + 1):
            response = await self._call(
                "GET", "/groups", params={"page": page, "per_page": GROUPS_PER_PAGE}
            )
            items = json_of(response, NAME, "groups list")
            if not isinstance(items, list):
                raise malformed(NAME, "groups list")
            for item in items:
                if not isinstance(item, dict):
                    raise malformed(NAME, "groups list")
                name, group_id = item.get("name"), item.get("id")
                if not isinstance(name, str) or not is_int(group_id):
                    raise malformed(NAME, "groups list")
                groups.setdefault(name, group_id)
            if len(items) < GROUPS_PER_PAGE:
                return groups
        raise AdapterError(
            f"Freshdesk groups list longer than {MAX_GROUP_PAGES} pages", retryable=False
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
        if error is not None:
            request_id = response.headers.get("x-request-id", "")
            if _REQUEST_ID.fullmatch(request_id) and self._api_key not in request_id:
                raise AdapterError(
                    f"{error} (x-request-id {request_id})",
                    retryable=error.retryable,
                    retry_after=error.retry_after,
                    status_code=error.status_code,
                )
            raise error
        return response


def _parse_ticket(data: Any) -> HelpdeskTicket:
    if not isinstance(data, dict):
        raise malformed(NAME, "ticket")
    ticket_id, priority, status = data.get("id"), data.get("priority"), data.get("status")
    if not is_int(ticket_id):
        raise malformed(NAME, "ticket (id)")
    if not is_int(priority) or priority not in PRIORITIES:
        raise malformed(NAME, "ticket (priority)")
    if not is_int(status) or status < 2:
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
        priority=PRIORITIES[priority],
        status=STATUSES.get(status, Status.OPEN),
        status_code=status,
        group_id=optional_int(data, "group_id", NAME),
        responder_id=optional_int(data, "responder_id", NAME),
        updated_at=updated_at,
    )


def _ticket_id(value: object) -> str:
    """The ticket id as a path segment: 1-20 ASCII digits, as given, or a positive int."""
    return checked_id(value, _TICKET_ID, "Freshdesk ticket id", numbers=True)
