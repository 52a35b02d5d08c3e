"""VictorOps Tier-Two bridges (public-API incident, second REST alert) against recorded samples."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.contract.loop import loop_clock_advanced, settle
from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.outbound.victorops_bridge import (
    VictorOpsIncidentBridge,
    VictorOpsRoutingKeyBridge,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors" / "victorops_api"
TLS = ssl.create_default_context()  # built once: a client per test would otherwise build its own
API_URL = "https://api.victorops.com"
INCIDENTS = f"{API_URL}/api-public/v1/incidents"
API_ID = "vo-api-id-do-not-log"
API_KEY = "vo-public-api-key-do-not-log"
BRIDGE_URL = "https://meet.example.com/inc-11"
BRIDGE_PHONE = "+1-555-0100,,123456#"
REST_KEY = "vo-rest-api-key-do-not-log"
TIER_ONE_KEY = "tier-one-routing-do-not-log"
TIER_TWO_KEY = "tier-two-routing-do-not-log"
ALERT_BASE = "https://alert.victorops.com/integrations/generic/20131114/alert"
REST_URL = f"{ALERT_BASE}/{REST_KEY}/{TIER_ONE_KEY}"
TIER_TWO_URL = f"{ALERT_BASE}/{REST_KEY}/{TIER_TWO_KEY}"
NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
PAYLOAD = {
    "summary": "Tier Two bridge: Freshdesk #11 unresolved after 30 min (Urgent)",
    "details": "Checkout fails for EU customers. https://acme.freshdesk.com/a/tickets/11",
    "entity_id": "freshdesk/acme/ticket/11/bridge",
    "ticket_url": "https://acme.freshdesk.com/a/tickets/11",
}


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(verify=TLS) as c:
        yield c


def incident_bridge(client: httpx.AsyncClient, **kwargs: Any) -> VictorOpsIncidentBridge:
    values: dict[str, Any] = {
        "api_url": API_URL,
        "api_id": API_ID,
        "api_key": API_KEY,
        "escalation_policy": "team-abc123",
        "bridge_url": BRIDGE_URL,
        "bridge_phone": BRIDGE_PHONE,
        "client": client,
    }
    values.update(kwargs)
    return VictorOpsIncidentBridge(**values)


# --- public-API incident: the exact request ------------------------------------------------


async def test_create_incident_request_equals_the_recorded_one(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(200, json=recorded("create_incident_response.json"))
        )
        sent = await incident_bridge(client).send(PAYLOAD, effect_key="k")
    request = route.calls[0].request
    assert request.method == "POST"
    assert request.url == INCIDENTS
    assert request.headers["x-vo-api-id"] == API_ID
    assert request.headers["x-vo-api-key"] == API_KEY
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == recorded("create_incident_request.json")
    assert sent == Sent(
        200, {"incident_number": "1234", "bridge_url": BRIDGE_URL, "bridge_phone": BRIDGE_PHONE}
    )


@pytest.mark.parametrize(
    ("url", "phone", "bridge"),
    [
        (None, None, None),
        ("", "", None),
        (BRIDGE_URL, None, {"url": BRIDGE_URL, "notes": "Tier Two bridge"}),
        (None, BRIDGE_PHONE, {"phone": BRIDGE_PHONE, "notes": "Tier Two bridge"}),
    ],
)
async def test_conference_bridge_only_when_configured(
    client: httpx.AsyncClient, url: str | None, phone: str | None, bridge: dict[str, str] | None
) -> None:
    with respx.mock() as mock:
        route = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(200, json=recorded("create_incident_response.json"))
        )
        sent = await incident_bridge(client, bridge_url=url, bridge_phone=phone).send(
            PAYLOAD, effect_key="k"
        )
    body = json.loads(route.calls[0].request.content)
    assert body.get("conferenceBridge") == bridge
    expected = {k: v for k, v in recorded("create_incident_request.json").items()}
    expected.pop("conferenceBridge")
    body.pop("conferenceBridge", None)
    assert body == expected
    assert sent.info["incident_number"] == "1234"


async def test_any_base_url_and_integer_incident_number(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.post("http://127.0.0.1:9100/vo/api-public/v1/incidents").mock(
            return_value=httpx.Response(200, json={"incidentNumber": 77, "entityId": "x"})
        )
        sent = await incident_bridge(client, api_url="http://127.0.0.1:9100/vo/").send(
            PAYLOAD, effect_key="k"
        )
    assert route.call_count == 1
    assert sent.info["incident_number"] == "77"


async def test_failed_bridge_attach_is_kept_but_the_incident_counts(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(
            return_value=httpx.Response(
                200, json=recorded("create_incident_bridge_failed_response.json")
            )
        )
        sent = await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert sent.info["incident_number"] == "1235"
    assert sent.info["bridge_error"] == "Failed adding conference bridge for incident"


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (httpx.Response(200, json={}), "without an incidentNumber"),
        (httpx.Response(200, json={"entityId": "x", "incidentNumber": ""}), "incidentNumber"),
        (httpx.Response(200, json={"error": "No such escalation policy"}), "with an error"),
        (
            httpx.Response(200, json={"incidentNumber": "9", "error": "partial"}),
            "incident 9",
        ),
        (httpx.Response(200, text="<html>maintenance</html>"), "without a JSON object"),
        (httpx.Response(200, json=["1234"]), "without a JSON object"),
    ],
    ids=["empty", "blank-number", "error", "error-with-number", "html", "list"],
)
async def test_2xx_without_an_incident_is_final(
    client: httpx.AsyncClient, reply: httpx.Response, words: str
) -> None:
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert not info.value.retryable
    assert info.value.status_code == 200
    assert words in str(info.value)


@pytest.mark.parametrize("payload", [{}, {**PAYLOAD, "summary": ""}, {**PAYLOAD, "summary": 3}])
async def test_bridge_without_summary_is_refused_before_sending(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


# --- public-API incident: classification --------------------------------------------------

RETRY_TABLE = [
    (403, True),
    (429, True),
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (400, False),
    (401, False),
    (404, False),
    (409, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
async def test_status_classification(
    client: httpx.AsyncClient, status: int, retryable: bool
) -> None:
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(return_value=httpx.Response(status, json={"error": "no"}))
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert (info.value.retryable, info.value.status_code) == (retryable, status)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, 10.0),
        ({"Retry-After": "3"}, 10.0),
        ({"Retry-After": "42"}, 42.0),
        (
            {
                "Retry-After": "Thu, 26 Nov 2026 12:32:00 GMT",
                "Date": "Thu, 26 Nov 2026 12:30:00 GMT",
            },
            120.0,
        ),
    ],
    ids=["none", "short", "long", "http-date"],
)
async def test_403_is_the_rate_limit_answer(
    client: httpx.AsyncClient, headers: dict[str, str], wait: float
) -> None:
    body = {"message": "Authentication failed or rate-limit reached"}
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(return_value=httpx.Response(403, json=body, headers=headers))
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert info.value.retryable
    assert info.value.retry_after == wait
    assert "rate limit" in str(info.value)


async def test_429_carries_retry_after(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(return_value=httpx.Response(429, headers={"Retry-After": "25"}))
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert (info.value.retryable, info.value.retry_after) == (True, 25)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("x"), httpx.ReadTimeout("x"), httpx.RemoteProtocolError("x")],
    ids=lambda e: type(e).__name__,
)
async def test_transport_failures_are_retryable(client: httpx.AsyncClient, exc: Exception) -> None:
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(side_effect=exc)
        with pytest.raises(AdapterError) as info:
            await incident_bridge(client).send(PAYLOAD, effect_key="k")
    assert info.value.retryable
    assert info.value.status_code is None


# --- public-API incident: the 6-a-minute budget -------------------------------------------


async def test_default_budget_is_6_calls_a_minute(client: httpx.AsyncClient) -> None:
    limiter = incident_bridge(client).limiter
    assert (limiter.max_rate, limiter.time_period) == (6, 60)


async def test_third_call_waits_for_the_budget(client: httpx.AsyncClient) -> None:
    bridge = incident_bridge(client, calls_per_minute=2)
    with respx.mock() as mock:
        route = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(200, json=recorded("create_incident_response.json"))
        )
        await bridge.send(PAYLOAD, effect_key="a")
        await bridge.send(PAYLOAD, effect_key="b")
        assert not bridge.limiter.has_capacity()
        third = asyncio.create_task(bridge.send(PAYLOAD, effect_key="c"))
        await settle()
        assert route.call_count == 2
        assert not third.done()
        # A rolling window: the third goes once the first call is a whole minute old.
        with loop_clock_advanced(59.5):
            await settle()
            assert not third.done()
        with loop_clock_advanced(61.5):
            sent = await asyncio.wait_for(third, timeout=5)
    assert sent.info["incident_number"] == "1234"
    assert route.call_count == 3


async def test_failed_calls_spend_the_budget_too(client: httpx.AsyncClient) -> None:
    bridge = incident_bridge(client, calls_per_minute=2)
    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(return_value=httpx.Response(403))
        for _ in range(2):
            with pytest.raises(AdapterError):
                await bridge.send(PAYLOAD, effect_key="k")
    assert not bridge.limiter.has_capacity()


# --- the second REST alert on a Tier-Two routing key ---------------------------------------


@pytest.mark.parametrize("rest_url", [REST_URL, REST_URL + "/"], ids=["plain", "trailing-slash"])
async def test_routing_key_bridge_request_equals_the_recorded_one(
    client: httpx.AsyncClient, rest_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: NOW.timestamp())
    bridge = VictorOpsRoutingKeyBridge(rest_url=rest_url, routing_key=TIER_TWO_KEY, client=client)
    with respx.mock() as mock:
        route = mock.post(TIER_TWO_URL).mock(
            return_value=httpx.Response(200, json={"result": "success", "entity_id": "x"})
        )
        sent = await bridge.send(PAYLOAD, effect_key="bridge-key")
    request = route.calls[0].request
    assert request.url == TIER_TWO_URL
    body = json.loads(request.content)
    assert body.pop("state_start_time") == int(NOW.timestamp())
    assert body.pop("ticketbridge_effect") == "bridge-key"
    assert body == recorded("routing_key_request.json")
    assert sent == Sent(200, {"mode": "routing_key"})


async def test_routing_key_is_escaped_into_one_path_segment(client: httpx.AsyncClient) -> None:
    bridge = VictorOpsRoutingKeyBridge(rest_url=REST_URL, routing_key="a/b c", client=client)
    with respx.mock() as mock:
        route = mock.post(f"{ALERT_BASE}/{REST_KEY}/a%2Fb%20c").mock(
            return_value=httpx.Response(200)
        )
        await bridge.send(PAYLOAD, effect_key="k")
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("rest_url", "routing_key"),
    [
        (REST_URL, ""),
        (REST_URL, "  "),
        ("https://alert.victorops.com", TIER_TWO_KEY),
        ("https://alert.victorops.com/only", TIER_TWO_KEY),
        (f"{REST_KEY}/{TIER_ONE_KEY}", TIER_TWO_KEY),
    ],
    ids=["empty-key", "blank-key", "no-path", "one-segment", "no-scheme"],
)
async def test_unusable_configuration_is_refused_without_echo(
    client: httpx.AsyncClient, rest_url: str, routing_key: str
) -> None:
    with pytest.raises(ValueError, match="VictorOps") as info:
        VictorOpsRoutingKeyBridge(rest_url=rest_url, routing_key=routing_key, client=client)
    for secret in (REST_KEY, TIER_ONE_KEY, TIER_TWO_KEY):
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("status", "retryable"), [(503, True), (429, True), (404, False), (400, False)]
)
async def test_routing_key_bridge_classification(
    client: httpx.AsyncClient, status: int, retryable: bool
) -> None:
    bridge = VictorOpsRoutingKeyBridge(rest_url=REST_URL, routing_key=TIER_TWO_KEY, client=client)
    with respx.mock() as mock:
        mock.post(TIER_TWO_URL).mock(return_value=httpx.Response(status))
        with pytest.raises(AdapterError) as info:
            await bridge.send(PAYLOAD, effect_key="k")
    assert (info.value.retryable, info.value.status_code) == (retryable, status)


async def test_routing_key_bridge_without_entity_id_is_refused(client: httpx.AsyncClient) -> None:
    bridge = VictorOpsRoutingKeyBridge(rest_url=REST_URL, routing_key=TIER_TWO_KEY, client=client)
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await bridge.send({**PAYLOAD, "entity_id": ""}, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


# --- secrets ------------------------------------------------------------------------------


def error_text(error: AdapterError, adapter: object) -> str:
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return " ".join([str(error), repr(error), repr(adapter), str(adapter)])


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(400, text=f"bad id {API_ID} key {API_KEY}"),
        httpx.Response(401, json={"X-VO-Api-Key": API_KEY, "X-VO-Api-Id": API_ID}),
        httpx.Response(403, text=f"rate limited for {API_ID}"),
        httpx.Response(200, json={"error": f"key {API_KEY} of org {API_ID} is read-only"}),
        httpx.Response(
            200,
            json={"incidentNumber": "1", "conferenceBridge": {"errorMsg": f"bad {API_KEY}"}},
        ),
        httpx.ConnectError(f"connect to {INCIDENTS} failed ({API_ID}:{API_KEY})"),
        httpx.ReadTimeout(f"timeout on {INCIDENTS} {API_KEY}"),
    ],
    ids=["400", "401", "403", "200-error", "200-bridge-error", "connect-error", "read-timeout"],
)
async def test_incident_bridge_leaks_no_secret(client: httpx.AsyncClient, reply: Any) -> None:
    bridge = incident_bridge(client)
    with respx.mock() as mock:
        route = mock.post(INCIDENTS)
        if isinstance(reply, Exception):
            route.mock(side_effect=reply)
        else:
            route.mock(return_value=reply)
        try:
            sent = await bridge.send(PAYLOAD, effect_key="k")
        except AdapterError as error:
            text = error_text(error, bridge)
        else:
            text = f"{sent!r} {bridge!r}"
    for secret in (API_ID, API_KEY):
        assert secret not in text


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(400, text=f"unknown routing key {TIER_TWO_KEY} at {TIER_TWO_URL}"),
        httpx.Response(404, text=f"no integration for key {REST_KEY}"),
        httpx.ConnectError(f"connect to {TIER_TWO_URL} failed"),
        httpx.ReadTimeout(f"timeout on {TIER_TWO_URL}"),
    ],
    ids=["400", "404", "connect-error", "read-timeout"],
)
async def test_routing_key_bridge_leaks_no_secret(client: httpx.AsyncClient, reply: Any) -> None:
    bridge = VictorOpsRoutingKeyBridge(rest_url=REST_URL, routing_key=TIER_TWO_KEY, client=client)
    with respx.mock() as mock:
        route = mock.post(TIER_TWO_URL)
        if isinstance(reply, Exception):
            route.mock(side_effect=reply)
        else:
            route.mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await bridge.send(PAYLOAD, effect_key="k")
    text = error_text(info.value, bridge)
    for secret in (REST_KEY, TIER_ONE_KEY, TIER_TWO_KEY, REST_URL, TIER_TWO_URL, ALERT_BASE):
        assert secret not in text


async def test_routing_key_bridge_success_info_holds_no_secret(client: httpx.AsyncClient) -> None:
    bridge = VictorOpsRoutingKeyBridge(rest_url=REST_URL, routing_key=TIER_TWO_KEY, client=client)
    with respx.mock() as mock:
        mock.post(TIER_TWO_URL).mock(return_value=httpx.Response(200))
        sent = await bridge.send(PAYLOAD, effect_key="k")
    assert sent.info == {"mode": "routing_key"}
    assert TIER_TWO_KEY not in repr(sent)
