"""VictorOps REST endpoint adapter against recorded request/response samples (respx)."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from ticketbridge.adapters.inbound.freshdesk import parse_webhook
from ticketbridge.adapters.outbound.errors import AdapterError, parse_retry_after, send_request
from ticketbridge.adapters.outbound.victorops import VictorOpsRest
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, decide

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors"
API_KEY, ROUTING_KEY = "0123-api-key-secret", "tier-one-routing-secret"
URL = f"https://alert.victorops.com/integrations/generic/20131114/alert/{API_KEY}/{ROUTING_KEY}"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / "victorops" / name).read_text(encoding="utf-8"))


def effects_for_sample(policy: Policy) -> list[Any]:
    event, _ = parse_webhook((FIXTURES / "freshdesk" / "ticket_created.json").read_bytes())
    first = decide(None, event, now=NOW, policy=policy)
    resolved = TicketEvent(
        **{
            **event.model_dump(),
            "kind": EventKind.STATUS_CHANGED,
            "status": Status.RESOLVED,
            "status_label": "Resolved",
        }
    )
    second = decide(first.state, resolved, now=NOW, policy=policy)
    assert event.priority is Priority.URGENT
    return [*first.effects, *second.effects]


@pytest.mark.parametrize(
    ("index", "sample"), [(0, "critical_request.json"), (1, "recovery_request.json")]
)
async def test_the_request_equals_the_recorded_one(policy: Policy, index: int, sample: str) -> None:
    effect = effects_for_sample(policy)[index]
    async with httpx.AsyncClient() as client:
        with respx.mock() as mock:
            route = mock.post(URL).mock(
                return_value=httpx.Response(200, json=recorded("success_response.json"))
            )
            code = await VictorOpsRest(rest_url=URL, client=client).send(
                effect.payload, effect_key=effect.key
            )
    assert code.code == 200
    sent = json.loads(route.calls[0].request.content)
    assert sent.pop("state_start_time") == int(NOW.timestamp())
    assert sent.pop("ticketbridge_effect") == effect.key
    assert sent == recorded(sample)
    assert route.calls[0].request.headers["content-type"] == "application/json"


RETRY_TABLE = [
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (408, True),
    (425, True),
    (429, True),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (410, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
async def test_status_classification(status: int, retryable: bool) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock() as mock:
            mock.post(URL).mock(
                return_value=httpx.Response(status, json=recorded("failure_response.json"))
            )
            with pytest.raises(AdapterError) as info:
                await VictorOpsRest(rest_url=URL, client=client).send(
                    {"message_type": "CRITICAL", "entity_id": "e"}, effect_key="k"
                )
    assert (info.value.retryable, info.value.status_code) == (retryable, status)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ReadTimeout("x"),
        httpx.ConnectTimeout("x"),
        httpx.RemoteProtocolError("x"),
        httpx.WriteError("x"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_transport_failures_are_retryable(exc: Exception) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock() as mock:
            mock.post(URL).mock(side_effect=exc)
            with pytest.raises(AdapterError) as info:
                await VictorOpsRest(rest_url=URL, client=client).send(
                    {"message_type": "CRITICAL", "entity_id": "e"}, effect_key="k"
                )
    assert info.value.retryable
    assert info.value.status_code is None


async def test_retry_after_is_carried_on_429() -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock() as mock:
            mock.post(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "42"}))
            with pytest.raises(AdapterError) as info:
                await VictorOpsRest(rest_url=URL, client=client).send(
                    {"message_type": "CRITICAL", "entity_id": "e"}, effect_key="k"
                )
    assert info.value.retry_after == 42


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Thu, 26 Nov 2026 12:01:30 GMT", 90.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    "payload",
    [{"message_type": "CRITICAL"}, {"message_type": "PAGE", "entity_id": "e"}, {"entity_id": "e"}],
)
async def test_alerts_without_entity_id_or_with_unknown_type_are_refused_before_sending(
    payload: dict[str, Any],
) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_called=False) as mock:
            route = mock.post(URL).mock(return_value=httpx.Response(200))
            with pytest.raises(AdapterError) as info:
                await VictorOpsRest(rest_url=URL, client=client).send(payload, effect_key="k")
    assert not info.value.retryable
    assert route.call_count == 0


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(400, text=f"bad {API_KEY}"),
        httpx.ConnectError(f"connect to {URL} failed"),
        httpx.ReadTimeout(f"timeout on {URL}"),
    ],
    ids=["400-echoing-key", "connect-error", "read-timeout"],
)
async def test_no_secret_leaks_into_errors_or_repr(reply: Any) -> None:
    async with httpx.AsyncClient() as client:
        adapter = VictorOpsRest(rest_url=URL, client=client)
        with respx.mock() as mock:
            if isinstance(reply, Exception):
                mock.post(URL).mock(side_effect=reply)
            else:
                mock.post(URL).mock(return_value=reply)
            with pytest.raises(AdapterError) as info:
                await adapter.send({"message_type": "CRITICAL", "entity_id": "e"}, effect_key="k")
    text = " ".join([str(info.value), repr(info.value), repr(adapter), str(info.value.__cause__)])
    # The httpx exception (whose message may hold the URL) is not chained onto ours.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    for secret in (API_KEY, ROUTING_KEY, URL):
        assert secret not in text


async def _garbage_responses(call: Any) -> list[httpx.Response]:
    """The ``httpx.Response`` objects that only the cyclic garbage collector would free after
    ``call(client)`` (a mock transport that keeps nothing, unlike respx's call list)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"result": "ok"}))
    async with httpx.AsyncClient(transport=transport) as client:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await call(client)
            gc.collect()
            return [o for o in gc.garbage if isinstance(o, httpx.Response)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()


async def test_a_sent_alert_leaves_no_response_to_the_cyclic_collector(policy: Policy) -> None:
    """httpx's response and its stream refer to each other; at 100 pages/s the collector's
    passes over them were the page latency's worst moments, so the adapter breaks the cycle."""
    effect = effects_for_sample(policy)[0]

    async def page(client: httpx.AsyncClient) -> None:
        sent = await VictorOpsRest(rest_url=URL, client=client).send(
            effect.payload, effect_key=effect.key
        )
        assert sent.code == 200

    assert await _garbage_responses(page) == []


async def test_send_request_leaves_no_response_to_the_cyclic_collector() -> None:
    async def call(client: httpx.AsyncClient) -> None:
        response = await send_request(client, "vendor", "GET", "https://api.example.test/x")
        assert response.json() == {"result": "ok"}  # the body is still there

    assert await _garbage_responses(call) == []
