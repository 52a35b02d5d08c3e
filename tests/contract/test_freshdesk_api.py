"""Freshdesk REST API v2 adapter against recorded request/response samples (respx)."""

from __future__ import annotations

import asyncio
import base64
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
from ticketbridge.adapters.outbound.freshdesk import FreshdeskApi
from ticketbridge.adapters.outbound.ports import HelpdeskTicket, Sent
from ticketbridge.rules import Priority, Status

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors" / "freshdesk_api"
API_KEY = "fd-api-key-do-not-log"
API_URL = "https://acme.freshdesk.com"
BASE = f"{API_URL}/api/v2"
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()
LIVE_SUPPORT = "DDEV Live Support"
TLS = ssl.create_default_context()  # built once: a client per test would otherwise build its own


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(verify=TLS) as c:
        yield c


def make_api(client: httpx.AsyncClient, **kwargs: Any) -> FreshdeskApi:
    return FreshdeskApi(
        api_url=kwargs.pop("api_url", API_URL), api_key=API_KEY, client=client, **kwargs
    )


def assert_authenticated(request: httpx.Request) -> None:
    assert request.headers["authorization"] == BASIC
    assert request.headers["accept"] == "application/json"


# --- the exact requests -------------------------------------------------------------------


async def test_get_ticket_request_and_reply(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.get(f"{BASE}/tickets/11").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        ticket = await make_api(client).get_ticket("11")
    request = route.calls[0].request
    assert request.method == "GET"
    assert request.url == f"{BASE}/tickets/11"
    assert request.content == b""
    assert_authenticated(request)
    assert ticket == HelpdeskTicket(
        ticket_id="11",
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_code=2,
        group_id=43000623700,
        responder_id=43018532207,
        updated_at=datetime(2026, 11, 26, 12, 5, 30, tzinfo=UTC),
    )


async def test_custom_status_counts_as_open_and_nulls_parse(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/12").mock(
            return_value=httpx.Response(200, json=recorded("ticket_custom_status.json"))
        )
        ticket = await make_api(client).get_ticket("12")
    assert (ticket.priority, ticket.status, ticket.status_code) == (Priority.LOW, Status.OPEN, 6)
    assert (ticket.group_id, ticket.responder_id) == (None, None)


@pytest.mark.parametrize(
    ("priority", "status", "expected"),
    [
        (1, 2, (Priority.LOW, Status.OPEN)),
        (2, 3, (Priority.MEDIUM, Status.PENDING)),
        (3, 4, (Priority.HIGH, Status.RESOLVED)),
        (4, 5, (Priority.URGENT, Status.CLOSED)),
        (4, 6, (Priority.URGENT, Status.OPEN)),
        (3, 17, (Priority.HIGH, Status.OPEN)),
    ],
)
async def test_priority_and_status_codes(
    client: httpx.AsyncClient, priority: int, status: int, expected: tuple[Priority, Status]
) -> None:
    reply = {**recorded("ticket.json"), "priority": priority, "status": status}
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200, json=reply))
        ticket = await make_api(client).get_ticket("11")
    assert (ticket.priority, ticket.status) == expected
    assert ticket.status_code == status


@pytest.mark.parametrize(
    "change",
    [
        {"priority": 9},
        {"priority": "Urgent"},
        {"status": 1},
        {"status": None},
        {"id": None},
        {"group_id": "43000623700"},
        {"updated_at": "yesterday"},
    ],
)
async def test_malformed_ticket_reply_is_final(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    reply = {**recorded("ticket.json"), **change}
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200, json=reply))
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert not info.value.retryable
    assert "malformed" in str(info.value)


async def test_note_request_equals_the_recorded_one(client: httpx.AsyncClient) -> None:
    body = recorded("note_request.json")["body"]
    with respx.mock() as mock:
        route = mock.post(f"{BASE}/tickets/11/notes").mock(
            return_value=httpx.Response(201, json=recorded("note_created.json"))
        )
        sent = await make_api(client).send(
            {"action": "note", "ticket_id": "11", "body": body}, effect_key="k"
        )
    request = route.calls[0].request
    assert request.method == "POST"
    assert_authenticated(request)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == recorded("note_request.json")
    assert sent == Sent(201, {"note_id": "43086541234"})


@pytest.mark.parametrize("reply", [b"", b"<html>ok</html>", b"[]"], ids=["empty", "html", "list"])
async def test_note_created_with_an_odd_reply_still_counts(
    client: httpx.AsyncClient, reply: bytes
) -> None:
    with respx.mock() as mock:
        mock.post(f"{BASE}/tickets/11/notes").mock(return_value=httpx.Response(201, content=reply))
        sent = await make_api(client).send(
            {"action": "note", "ticket_id": "11", "body": "<p>x</p>"}, effect_key="k"
        )
    assert sent == Sent(201, {})


async def test_add_private_note_returns_the_status(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.post(f"{BASE}/tickets/11/notes").mock(
            return_value=httpx.Response(201, json=recorded("note_created.json"))
        )
        assert await make_api(client).add_private_note("11", "<p>hi</p>") == 201
    assert json.loads(route.calls[0].request.content) == {"body": "<p>hi</p>", "private": True}


async def test_reassign_is_one_put_with_group_and_no_agent(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(f"{BASE}/tickets/11").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        sent = await make_api(client).send(
            {"action": "reassign", "ticket_id": "11", "group": LIVE_SUPPORT}, effect_key="k"
        )
    assert groups.call_count == 1
    assert dict(groups.calls[0].request.url.params) == {"page": "1", "per_page": "100"}
    assert_authenticated(groups.calls[0].request)
    assert put.call_count == 1
    request = put.calls[0].request
    assert_authenticated(request)
    assert json.loads(request.content) == recorded("reassign_request.json")
    assert sent == Sent(200, {"group_id": 43000623702})


async def test_close_sets_status_5(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        put = mock.put(f"{BASE}/tickets/11").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        sent = await make_api(client).send({"action": "close", "ticket_id": 11}, effect_key="k")
    assert json.loads(put.calls[0].request.content) == recorded("close_request.json")
    assert_authenticated(put.calls[0].request)
    assert sent == Sent(200, {})


async def test_update_ticket_sends_the_given_fields(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        put = mock.put(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200, json={}))
        assert await make_api(client).update_ticket("11", {"priority": 3}) == 200
    assert json.loads(put.calls[0].request.content) == {"priority": 3}


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("https://acme.freshdesk.com/", "https://acme.freshdesk.com/api/v2/tickets/11"),
        ("http://127.0.0.1:9000/fd", "http://127.0.0.1:9000/fd/api/v2/tickets/11"),
    ],
)
async def test_any_base_url(client: httpx.AsyncClient, api_url: str, expected: str) -> None:
    with respx.mock() as mock:
        route = mock.get(expected).mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        await make_api(client, api_url=api_url).get_ticket("11")
    assert route.call_count == 1


# --- groups: cache, pagination, unknown name ---------------------------------------------


async def test_group_map_is_cached_across_reassigns(client: httpx.AsyncClient) -> None:
    api = make_api(client)
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(url__regex=rf"{BASE}/tickets/\d+").mock(return_value=httpx.Response(200))
        for ticket_id in ("11", "12"):
            await api.send(
                {"action": "reassign", "ticket_id": ticket_id, "group": LIVE_SUPPORT},
                effect_key=ticket_id,
            )
        assert await api.group_id("Tier One") == 43000623700
    assert groups.call_count == 1
    assert put.call_count == 2


def page_of(page: int, size: int, *, extra: list[dict[str, Any]] | None = None) -> list[Any]:
    items = [{"id": page * 1000 + i, "name": f"group {page}-{i}"} for i in range(size)]
    return items + (extra or [])


async def test_groups_are_paginated_until_a_short_page(client: httpx.AsyncClient) -> None:
    pages = {
        1: page_of(1, 100),
        2: page_of(2, 99, extra=[{"id": 43000623702, "name": LIVE_SUPPORT}]),
        3: page_of(3, 7),
    }

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.params["per_page"] == "100"
        return httpx.Response(200, json=pages[int(request.url.params["page"])])

    with respx.mock() as mock:
        route = mock.get(f"{BASE}/groups").mock(side_effect=reply)
        api = make_api(client)
        assert await api.group_id(LIVE_SUPPORT) == 43000623702
        assert await api.group_id("group 3-6") == 3006
        assert await api.group_id("group 1-0") == 1000
    assert [c.request.url.params["page"] for c in route.calls] == ["1", "2", "3"]


async def test_exactly_full_last_page_is_followed_by_an_empty_one(
    client: httpx.AsyncClient,
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json=page_of(page, 100) if page == 1 else [])

    with respx.mock() as mock:
        route = mock.get(f"{BASE}/groups").mock(side_effect=reply)
        assert await make_api(client).group_id("group 1-99") == 1099
    assert route.call_count == 2


async def test_unknown_group_is_final_and_named(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/groups").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200))
        with pytest.raises(AdapterError) as info:
            await make_api(client).send(
                {"action": "reassign", "ticket_id": "11", "group": "Night Shift"}, effect_key="k"
            )
    assert not info.value.retryable
    assert "Night Shift" in str(info.value)
    assert put.call_count == 0


@pytest.mark.parametrize(
    "reply", [{"groups": []}, [{"id": "7", "name": "x"}], [{"id": 7}], ["x"]], ids=str
)
async def test_malformed_groups_list_is_final(client: httpx.AsyncClient, reply: Any) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/groups").mock(return_value=httpx.Response(200, json=reply))
        with pytest.raises(AdapterError) as info:
            await make_api(client).group_id(LIVE_SUPPORT)
    assert not info.value.retryable


# --- refused before sending ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "delete", "ticket_id": "11"},
        {"ticket_id": "11"},
        {"action": "close", "ticket_id": "11/../../groups"},
        {"action": "close", "ticket_id": "abc"},
        {"action": "close", "ticket_id": ""},
        {"action": "close", "ticket_id": -3},
        {"action": "close"},
        {"action": "note", "ticket_id": "11", "body": ""},
        {"action": "note", "ticket_id": "11"},
        {"action": "reassign", "ticket_id": "11"},
    ],
    ids=str,
)
async def test_bad_payloads_are_refused_before_any_call(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    with respx.mock() as mock:  # any request at all would fail: nothing is routed
        with pytest.raises(AdapterError) as info:
            await make_api(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


# --- classification -----------------------------------------------------------------------

RETRY_TABLE = [
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (429, True),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (409, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
@pytest.mark.parametrize("action", ["close", "note", "get"])
async def test_status_classification(
    client: httpx.AsyncClient, status: int, retryable: bool, action: str
) -> None:
    reply = httpx.Response(status, json=recorded("error_response.json"))
    api = make_api(client)
    call = (
        api.get_ticket("11")
        if action == "get"
        else api.send({"action": action, "ticket_id": "11", "body": "<p>x</p>"}, effect_key="k")
    )
    with respx.mock() as mock:
        mock.route(url__regex=rf"{BASE}/tickets/11.*").mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await call
    assert (info.value.retryable, info.value.status_code) == (retryable, status)


async def test_429_carries_retry_after(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.put(f"{BASE}/tickets/11").mock(
            return_value=httpx.Response(
                429, headers={"Retry-After": "37", "X-RateLimit-Remaining": "0"}
            )
        )
        with pytest.raises(AdapterError) as info:
            await make_api(client).send({"action": "close", "ticket_id": "11"}, effect_key="k")
    assert info.value.retryable
    assert info.value.retry_after == 37


async def test_failed_groups_call_fails_the_reassign_and_is_not_cached(
    client: httpx.AsyncClient,
) -> None:
    api = make_api(client)
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups").mock(
            side_effect=[httpx.Response(503), httpx.Response(200, json=recorded("groups.json"))]
        )
        with pytest.raises(AdapterError) as info:
            await api.group_id(LIVE_SUPPORT)
        assert info.value.retryable
        assert await api.group_id(LIVE_SUPPORT) == 43000623702
    assert groups.call_count == 2


async def test_request_id_of_a_failure_is_kept(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11").mock(
            return_value=httpx.Response(404, headers={"x-request-id": "a1b2c3d4-e5f6"})
        )
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert "a1b2c3d4-e5f6" in str(info.value)
    assert info.value.status_code == 404


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("x"), httpx.ReadTimeout("x"), httpx.RemoteProtocolError("x")],
    ids=lambda e: type(e).__name__,
)
async def test_transport_failures_are_retryable(client: httpx.AsyncClient, exc: Exception) -> None:
    with respx.mock() as mock:
        mock.put(f"{BASE}/tickets/11").mock(side_effect=exc)
        with pytest.raises(AdapterError) as info:
            await make_api(client).send({"action": "close", "ticket_id": "11"}, effect_key="k")
    assert info.value.retryable
    assert info.value.status_code is None


# --- the account-wide rate budget ----------------------------------------------------------


async def test_default_budget_is_200_calls_a_minute(client: httpx.AsyncClient) -> None:
    api = make_api(client)
    assert (api.limiter.max_rate, api.limiter.time_period) == (200, 60)


async def test_third_call_waits_for_the_budget(client: httpx.AsyncClient) -> None:
    api = make_api(client, calls_per_minute=2)
    with respx.mock() as mock:
        put = mock.put(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200))
        close = {"action": "close", "ticket_id": "11"}
        await api.send(close, effect_key="a")
        await api.send(close, effect_key="b")
        assert not api.limiter.has_capacity()
        third = asyncio.create_task(api.send(close, effect_key="c"))
        await settle()
        assert put.call_count == 2
        assert not third.done()
        # A rolling window: the third goes once the first call is a whole minute old.
        with loop_clock_advanced(59.5):
            await settle()
            assert not third.done()
        with loop_clock_advanced(61.5):
            sent = await asyncio.wait_for(third, timeout=5)
    assert sent.code == 200
    assert put.call_count == 3


async def test_group_lookups_spend_the_same_budget(client: httpx.AsyncClient) -> None:
    api = make_api(client, calls_per_minute=2)
    with respx.mock() as mock:
        mock.get(f"{BASE}/groups").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        mock.put(f"{BASE}/tickets/11").mock(return_value=httpx.Response(200))
        await api.send(
            {"action": "reassign", "ticket_id": "11", "group": LIVE_SUPPORT}, effect_key="k"
        )
    assert not api.limiter.has_capacity()


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(401, text=f"invalid credentials {API_KEY}:X"),
        httpx.Response(400, json={"description": f"bad key {API_KEY}", "auth": BASIC}),
        httpx.Response(404, headers={"x-request-id": API_KEY}),
        httpx.ConnectError(f"connect to {API_URL} with {API_KEY} failed"),
        httpx.ReadTimeout(f"timeout on {BASE}/tickets/11 ({BASIC})"),
    ],
    ids=["401-echo", "400-echo", "request-id-echo", "connect-error", "read-timeout"],
)
async def test_no_secret_leaks_into_errors_or_repr(client: httpx.AsyncClient, reply: Any) -> None:
    api = make_api(client)
    with respx.mock() as mock:
        route = mock.put(f"{BASE}/tickets/11")
        if isinstance(reply, Exception):
            route.mock(side_effect=reply)
        else:
            route.mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await api.send({"action": "close", "ticket_id": "11"}, effect_key="k")
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    text = " ".join([str(info.value), repr(info.value), repr(api), str(api)])
    for secret in (API_KEY, BASIC, BASIC.removeprefix("Basic "), API_URL):
        assert secret not in text
