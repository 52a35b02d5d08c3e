"""Atlassian Statuspage (REST API v1): the StatusPage port for ``api.statuspage.io``.

Wire (Atlassian's public API reference; [S] = seen in a secondary source, [U] = unverified,
not confirmed against a live page):

- ``Authorization: OAuth <api key>`` [S]; JSON bodies [S].
- ``POST /v1/pages/{page}/incidents`` ``{"incident": {name, status, impact_override, body,
  component_ids, components: {id: status}, metadata}}`` [S]; ``PATCH
  /v1/pages/{page}/incidents/{id}`` ``{"incident": {status, body, components}}`` [S];
  resolving is a PATCH to ``resolved`` that sets every component back to ``operational``.
- ``GET /v1/pages/{page}/incidents/unresolved?page=N&per_page=100`` lists the open incidents
  [S] (``page``/``per_page`` as in the OpenAPI description; if the server ignores them and
  sends everything at once, a page that brings nothing new ends the walk).
- 1 request/s per API token on a 60 s rolling window; 420 or 429 when over [S]. Every call of
  an instance, reads included, passes one token bucket of ``requests_per_second`` (bursts of
  one), and a rate-limited answer is retried no sooner than ``Retry-After`` or 1 s.

Idempotency (one incident per ticket, whatever the retries): ``open_incident`` first lists
the unresolved incidents and reuses the one that carries our marker, so a create whose reply
was lost (timeout after the server committed) is found instead of duplicated.

- Primary: ``metadata: {"ticketbridge": {"key": marker}}`` is sent on create. The Statuspage
  OpenAPI description (as reproduced by generated SDKs, e.g. alissonlinneker/statuspage-php-sdk
  ``PostPagesPageIdIncidentsIncident``/``Incident``) documents ``metadata`` ("Attach a json
  object to the incident. All top-level values in the object must also be objects") on create
  and update, and as a field of the Incident object returned [S]. That the unresolved list
  really echoes it is [U].
- Fallback: an unresolved incident whose ``name`` equals ours exactly and that carries no
  ticketbridge marker at all (an incident marked for another ticket never matches by name).
  This is only safe if the name is deterministic and unique per ticket (it must include the
  ticket reference): a shared name such as a fixed "Service disruption" would, should metadata
  not be echoed, adopt another ticket's or a person's incident. With a per-ticket name it fails
  only if someone renames the incident on the page *and* metadata is not echoed [U].
- Within one instance, opens are serialised, so two concurrent opens of one ticket cannot both
  miss and both create. Across processes, the outbox's effect lease keeps one effect to one
  sender at a time.

Not verified: error body shapes (``{"message": ...}`` per the OpenAPI ErrorEntity [S];
``{"error": ...}`` is a guess; both are read), whether ``Retry-After`` is ever sent, whether
re-resolving a resolved incident answers 2xx, and whether PATCH ``components`` can add a
component the incident did not list at creation.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    retry_after_of,
    send_request,
)
from ticketbridge.adapters.outbound.http import checked_id, json_of, malformed
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter
from ticketbridge.adapters.outbound.statuspage.sender import (
    COMPONENT_STATUSES,
    IMPACTS,
    OPEN_STATUSES,
    OPERATIONAL,
    RESOLVED,
)

VENDOR = "statuspage"
NAME = "Statuspage"  # as messages show it
DEFAULT_API_URL = "https://api.statuspage.io"
METADATA_KEY = "ticketbridge"
RATE_LIMIT_STATUS = frozenset({420, 429})
RATE_LIMIT_MIN_WAIT = 1.0  # the per-token budget is 1 request/s: never try again sooner
UPDATE_STATUSES = OPEN_STATUSES  # resolving goes through resolve_incident
MAX_NAME = 255  # documented limits [S]; longer values are cut, deterministically
MAX_BODY = 25_000
UNRESOLVED_PER_PAGE = 100
MAX_UNRESOLVED_PAGES = 10  # 1,000 open incidents: a bound so a server cannot loop us forever
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_ECHO = 200


class AtlassianStatuspage:
    """Opens, updates and resolves incidents on one Statuspage page (``page_id``).

    ``components`` maps the component names the rules use to Statuspage component ids; a name
    not in the map is sent as an id as it is.
    """

    def __init__(
        self,
        *,
        api_url: str = DEFAULT_API_URL,
        api_key: str,
        page_id: str,
        client: httpx.AsyncClient,
        components: Mapping[str, str] = MappingProxyType({}),
        requests_per_second: float = 1.0,
    ) -> None:
        url = httpx.URL(api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("Statuspage api_url must be an http(s) URL")
        if not api_key:
            raise ValueError("Statuspage api_key is empty")
        if not (api_key.isascii() and api_key.isprintable()) or any(c.isspace() for c in api_key):
            raise ValueError("Statuspage api_key must be printable ASCII without spaces")
        if not _ID.fullmatch(page_id):
            raise ValueError("Statuspage page_id must be 1-64 letters, digits, '-' or '_'")
        for name, component_id in components.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError("Statuspage component names must be non-empty strings")
            if not isinstance(component_id, str) or not component_id.strip():
                raise ValueError(f"Statuspage component {name!r} has an empty id")
        if not math.isfinite(requests_per_second) or requests_per_second <= 0:
            raise ValueError("Statuspage requests_per_second must be a positive number")
        self._page_id = page_id
        self._base = f"{api_url.rstrip('/')}/v1/pages/{page_id}"
        self._api_key = api_key
        self._headers = {"Authorization": f"OAuth {api_key}", "Accept": "application/json"}
        self._client = client
        self._components = dict(components)
        # One request per 1/rps seconds, no bursts: the server counts on a rolling window.
        self._limiter = RollingWindowLimiter(1, 1.0 / requests_per_second)
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AtlassianStatuspage(page_id={self._page_id!r}, api_key=***)"

    @property
    def limiter(self) -> RollingWindowLimiter:
        """The rate budget every call of this instance passes through."""
        return self._limiter

    def component_ids(self, components: Sequence[str]) -> list[str]:
        """The Statuspage ids of the named components, in order, without duplicates."""
        ids: list[str] = []
        for name in components:
            if not isinstance(name, str) or not name.strip():
                raise AdapterError("Statuspage component name is empty", retryable=False)
            component_id = self._components.get(name, name)
            if component_id not in ids:
                ids.append(component_id)
        return ids

    def create_body(
        self,
        *,
        marker: str,
        name: str,
        status: str,
        impact: str,
        body: str,
        components: Sequence[str],
        component_status: str,
    ) -> dict[str, Any]:
        """The JSON body of the create request (also used by tests to pin the wire)."""
        if not isinstance(marker, str) or not marker.strip():
            raise AdapterError("Statuspage incident without a marker refused", retryable=False)
        _require(status, OPEN_STATUSES, "incident status")
        _require(impact, IMPACTS, "impact")
        _require(component_status, COMPONENT_STATUSES, "component status")
        incident: dict[str, Any] = {
            "name": _name(name),
            "status": status,
            "impact_override": impact,
            "body": _body(body),
        }
        ids = self.component_ids(components)
        if ids:
            incident["component_ids"] = ids
            incident["components"] = dict.fromkeys(ids, component_status)
        incident["metadata"] = {METADATA_KEY: {"key": marker}}
        return {"incident": incident}

    def update_body(
        self,
        *,
        status: str,
        body: str,
        components: Sequence[str],
        component_status: str | None,
    ) -> dict[str, Any]:
        """The JSON body of an update (PATCH); components only when a status is given."""
        incident: dict[str, Any] = {"status": status, "body": _body(body)}
        ids = self.component_ids(components)
        if component_status is not None and ids:
            incident["components"] = dict.fromkeys(ids, component_status)
        return {"incident": incident}

    async def open_incident(
        self,
        *,
        marker: str,
        name: str,
        status: str,
        impact: str,
        body: str,
        components: Sequence[str],
        component_status: str,
    ) -> dict[str, Any]:
        """Create the incident, or return the unresolved one already carrying ``marker``
        (``"existing": True``, nothing sent)."""
        request = self.create_body(
            marker=marker,
            name=name,
            status=status,
            impact=impact,
            body=body,
            components=components,
            component_status=component_status,
        )
        async with self._open_lock:
            found = await self._find_unresolved(marker, request["incident"]["name"])
            if found is not None:
                return {**_incident_info(found), "existing": True}
            response = await self._call("POST", "/incidents", json=request)
        return {**_incident_info(self._incident(response, "created incident")), "existing": False}

    async def update_incident(
        self,
        incident_id: str,
        *,
        status: str,
        body: str,
        components: Sequence[str],
        component_status: str | None,
    ) -> dict[str, Any]:
        """Post an update (status and text) and, when given, set the components' status."""
        path = f"/incidents/{checked_id(incident_id, _ID, 'Statuspage incident id', numbers=False)}"
        _require(status, UPDATE_STATUSES, "incident status")
        if component_status is not None:
            _require(component_status, COMPONENT_STATUSES, "component status")
        request = self.update_body(
            status=status, body=body, components=components, component_status=component_status
        )
        response = await self._call("PATCH", path, json=request)
        return _incident_info(self._incident(response, "updated incident"))

    async def resolve_incident(
        self, incident_id: str, *, body: str, components: Sequence[str]
    ) -> dict[str, Any]:
        """Resolve the incident and set every named component back to operational."""
        path = f"/incidents/{checked_id(incident_id, _ID, 'Statuspage incident id', numbers=False)}"
        request = self.update_body(
            status=RESOLVED, body=body, components=components, component_status=OPERATIONAL
        )
        response = await self._call("PATCH", path, json=request)
        return _incident_info(self._incident(response, "resolved incident"))

    async def _find_unresolved(self, marker: str, name: str) -> dict[str, Any] | None:
        """The unresolved incident carrying ``marker`` or, failing that, an unmarked one named
        exactly ``name``."""
        by_name: dict[str, Any] | None = None
        seen: set[str] = set()
        for page in range(1, MAX_UNRESOLVED_PAGES + 1):
            response = await self._call(
                "GET",
                "/incidents/unresolved",
                params={"page": page, "per_page": UNRESOLVED_PER_PAGE},
            )
            items = json_of(response, NAME, "unresolved incidents list")
            if not isinstance(items, list):
                raise malformed(NAME, "unresolved incidents list")
            new = 0
            for item in items:
                if not isinstance(item, dict) or not _is_id(item.get("id")):
                    raise malformed(NAME, "unresolved incidents list")
                if item["id"] in seen:
                    continue
                seen.add(item["id"])
                new += 1
                key = _marker_of(item)
                if key == marker:
                    return item
                if key is None and by_name is None and item.get("name") == name:
                    by_name = item
            if len(items) < UNRESOLVED_PER_PAGE or new == 0:
                return by_name
        raise AdapterError(
            f"Statuspage unresolved incidents list longer than {MAX_UNRESOLVED_PAGES} pages",
            retryable=False,
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
                headers=self._headers,
            )
        code = response.status_code
        if code in RATE_LIMIT_STATUS:
            waited = retry_after_of(response) or 0.0
            raise AdapterError(
                f"{VENDOR} answered HTTP {code} (rate limit reached)",
                retryable=True,
                retry_after=max(waited, RATE_LIMIT_MIN_WAIT, self._limiter.time_period),
                status_code=code,
            )
        error = classify_response(VENDOR, response)
        if error is not None:
            detail = self._detail(response)
            if detail:
                raise AdapterError(
                    f"{error}: {detail}",
                    retryable=error.retryable,
                    retry_after=error.retry_after,
                    status_code=error.status_code,
                )
            raise error
        return response

    def _detail(self, response: httpx.Response) -> str:
        """The error text of a failed answer (``message`` or ``error``), redacted and cut."""
        try:
            data = response.json()
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        found = data.get("message") or data.get("error") or data.get("errors")
        if isinstance(found, list):
            found = "; ".join(str(part) for part in found)
        if not isinstance(found, str):
            return ""
        return found.replace(self._api_key, "***")[:_MAX_ECHO]

    def _incident(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data = json_of(response, NAME, what)
        if not isinstance(data, dict) or not _is_id(data.get("id")):
            raise malformed(NAME, what)
        return data


def _require(value: object, allowed: frozenset[str], what: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise AdapterError(f"invalid Statuspage {what} {str(value)[:40]!r}", retryable=False)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AdapterError("Statuspage incident without a name refused", retryable=False)
    return name[:MAX_NAME]


def _body(body: str) -> str:
    if not isinstance(body, str) or not body.strip():
        raise AdapterError("Statuspage incident update without a body refused", retryable=False)
    return body[:MAX_BODY]


def _marker_of(incident: dict[str, Any]) -> str | None:
    """Our marker on a listed incident: the key, "" when marked but unreadable, else None."""
    metadata = incident.get("metadata")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        return None
    ours = metadata[METADATA_KEY]
    key = ours.get("key") if isinstance(ours, dict) else None
    return key if isinstance(key, str) else ""


def _incident_info(incident: dict[str, Any]) -> dict[str, Any]:
    """What the effect stores: the id, and the shortlink and status when present."""
    info: dict[str, Any] = {"incident_id": incident["id"]}
    for key in ("shortlink", "status"):
        value = incident.get(key)
        if isinstance(value, str) and value:
            info[key] = value
    return info


def _incident_id(value: object) -> str:
    """The incident id as a path segment."""
    return checked_id(value, _ID, "Statuspage incident id", numbers=False)
