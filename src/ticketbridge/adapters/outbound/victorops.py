"""VictorOps (Splunk On-Call) REST endpoint integration: alerts keyed by ``entity_id``."""

from __future__ import annotations

import time
from typing import Any

import httpx

from ticketbridge.adapters.outbound.errors import AdapterError, classify_response, post_for_status
from ticketbridge.adapters.outbound.ports import Sent

VENDOR = "victorops"
MONITORING_TOOL = "ticketbridge"
ALLOWED_MESSAGE_TYPES = frozenset({"CRITICAL", "WARNING", "INFO", "ACKNOWLEDGEMENT", "RECOVERY"})


class VictorOpsRest:
    """Posts alerts to ``.../integrations/generic/20131114/alert/<api_key>/<routing_key>``.

    The URL is the credential: it is never logged, and no error message contains it.
    """

    def __init__(self, *, rest_url: str, client: httpx.AsyncClient) -> None:
        self._url = rest_url.rstrip("/")
        self._client = client

    def __repr__(self) -> str:
        return "VictorOpsRest(rest_url=***)"

    def body(self, payload: dict[str, Any], *, effect_key: str) -> dict[str, Any]:
        """The JSON body for one alert (also used by tests to pin the wire format)."""
        message_type = payload.get("message_type")
        if message_type not in ALLOWED_MESSAGE_TYPES:
            raise AdapterError(f"unknown VictorOps message_type {message_type!r}", retryable=False)
        if not payload.get("entity_id"):
            # Without an entity_id VictorOps makes a random one: a retry would double-page.
            raise AdapterError("VictorOps alert without entity_id refused", retryable=False)
        body = {k: v for k, v in payload.items() if v not in (None, "")}
        body.setdefault("monitoring_tool", MONITORING_TOOL)
        body.setdefault("state_start_time", int(time.time()))
        body["ticketbridge_effect"] = effect_key
        return body

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Send one alert; return what was sent, or raise AdapterError. The HTTP status is
        VictorOps' answer: a 2xx means the alert was accepted, whatever its body."""
        body = self.body(payload, effect_key=effect_key)
        response = await post_for_status(self._client, VENDOR, self._url, json=body)
        error = classify_response(VENDOR, response)
        if error is not None:
            raise error
        return Sent(response.status_code)
