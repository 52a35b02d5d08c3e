"""Tier-Two bridges in VictorOps: a public-API incident, or a second REST alert."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from ticketbridge.adapters.outbound.errors import (
    AdapterError,
    classify_response,
    retry_after_of,
    send_request,
)
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.outbound.ratelimit import RollingWindowLimiter
from ticketbridge.adapters.outbound.victorops import VictorOpsRest

VENDOR = "victorops-api"
USER_NAME = "ticketbridge"
BRIDGE_NOTES = "Tier Two bridge"
# The public API answers 403 both for bad credentials and for "rate-limit reached"; its budget
# is counted per minute, so never try again sooner than this.
RATE_LIMIT_MIN_WAIT = 10.0
_MAX_ECHO = 200


class VictorOpsIncidentBridge:
    """Opens a Tier-Two incident with ``POST /api-public/v1/incidents`` on an escalation policy."""

    def __init__(
        self,
        *,
        api_url: str,
        api_id: str,
        api_key: str,
        escalation_policy: str,
        bridge_url: str | None,
        bridge_phone: str | None,
        client: httpx.AsyncClient,
        calls_per_minute: int = 6,
    ) -> None:
        url = httpx.URL(api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("VictorOps api_url must be an http(s) URL")
        if not api_id or not api_key:
            raise ValueError("VictorOps api_id and api_key must both be set")
        if not escalation_policy:
            raise ValueError("VictorOps escalation_policy is empty")
        if calls_per_minute < 1:
            raise ValueError("VictorOps calls_per_minute must be at least 1")
        self._url = api_url.rstrip("/") + "/api-public/v1/incidents"
        self._secrets = (api_id, api_key)
        self._headers = {
            "X-VO-Api-Id": api_id,
            "X-VO-Api-Key": api_key,
            "Accept": "application/json",
        }
        self._policy = escalation_policy
        self._bridge_url = bridge_url or None
        self._bridge_phone = bridge_phone or None
        self._client = client
        self._limiter = RollingWindowLimiter(calls_per_minute, 60)

    def __repr__(self) -> str:
        return (
            f"VictorOpsIncidentBridge(api_url=***, api_id=***, api_key=***, "
            f"escalation_policy={self._policy!r})"
        )

    @property
    def limiter(self) -> RollingWindowLimiter:
        """The rate budget every call of this instance passes through."""
        return self._limiter

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON body of the create-incident request (also used by tests to pin the wire)."""
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise AdapterError("VictorOps bridge without a summary refused", retryable=False)
        body: dict[str, Any] = {
            "summary": summary,
            "details": str(payload.get("details") or ""),
            "userName": USER_NAME,
            "targets": [{"type": "EscalationPolicy", "slug": self._policy}],
            "isMultiResponder": False,
        }
        if self._bridge_url or self._bridge_phone:
            bridge = {"url": self._bridge_url, "phone": self._bridge_phone, "notes": BRIDGE_NOTES}
            body["conferenceBridge"] = {k: v for k, v in bridge.items() if v}
        return body

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Create the bridge incident; return its number, or raise AdapterError."""
        body = self.body(payload)
        async with self._limiter:
            response = await send_request(
                self._client, VENDOR, "POST", self._url, json=body, headers=self._headers
            )
        if response.status_code == 403:
            waited = retry_after_of(response) or 0.0
            raise AdapterError(
                f"{VENDOR} answered HTTP 403 (authentication failed or rate limit reached)",
                retryable=True,
                retry_after=max(waited, RATE_LIMIT_MIN_WAIT),
                status_code=403,
            )
        error = classify_response(VENDOR, response)
        if error is not None:
            raise error
        return Sent(response.status_code, self._incident_info(response))

    def _incident_info(self, response: httpx.Response) -> dict[str, Any]:
        code = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AdapterError(
                f"{VENDOR} answered HTTP {code} without a JSON object; the incident may or may "
                "not exist, so it is not created again",
                retryable=False,
                status_code=code,
            )
        number = data.get("incidentNumber")
        if data.get("error"):
            found = f" (incident {number})" if number else ""
            raise AdapterError(
                f"{VENDOR} answered HTTP {code} with an error{found}: "
                f"{self._redact(str(data['error']))}",
                retryable=False,
                status_code=code,
            )
        if number in (None, ""):
            raise AdapterError(
                f"{VENDOR} answered HTTP {code} without an incidentNumber; the incident may or "
                "may not exist, so it is not created again",
                retryable=False,
                status_code=code,
            )
        info: dict[str, Any] = {
            "incident_number": str(number),
            "bridge_url": self._bridge_url,
            "bridge_phone": self._bridge_phone,
        }
        bridge = data.get("conferenceBridge")
        if isinstance(bridge, dict) and bridge.get("errorMsg"):
            # The incident exists and pages; only the bridge attach failed. Keep it as a fact.
            info["bridge_error"] = self._redact(str(bridge["errorMsg"]))
        return info

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_MAX_ECHO]


class VictorOpsRoutingKeyBridge:
    """Opens a Tier-Two incident as a second REST alert on a Tier-Two routing key.

    The payload's ``entity_id`` must differ from the Tier-One alert's (e.g. ``.../bridge``),
    or VictorOps folds the bridge into the Tier-One incident.
    """

    def __init__(self, *, rest_url: str, routing_key: str, client: httpx.AsyncClient) -> None:
        self._rest = VictorOpsRest(rest_url=_with_routing_key(rest_url, routing_key), client=client)

    def __repr__(self) -> str:
        return "VictorOpsRoutingKeyBridge(rest_url=***, routing_key=***)"

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Send the CRITICAL alert that pages Tier Two; raise AdapterError on failure."""
        alert = {
            "message_type": "CRITICAL",
            "entity_id": payload.get("entity_id"),
            "entity_display_name": payload.get("summary"),
            "state_message": payload.get("details"),
            "ticket_url": payload.get("ticket_url"),
        }
        sent = await self._rest.send(alert, effect_key=effect_key)
        return Sent(sent.code, {"mode": "routing_key"})


def _with_routing_key(rest_url: str, routing_key: str) -> str:
    """``rest_url`` with its last path segment (the routing key) replaced by ``routing_key``."""
    if not routing_key or not routing_key.strip():
        raise ValueError("VictorOps Tier-Two routing_key is empty")
    parts = urlsplit(rest_url)
    head, sep, _ = parts.path.rstrip("/").rpartition("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not sep or not head:
        # Never echo the URL: it holds the API key.
        raise ValueError("VictorOps rest_url has no routing-key path segment")
    path = f"{head}/{quote(routing_key, safe='')}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
