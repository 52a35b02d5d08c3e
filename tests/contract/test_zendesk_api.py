"""Zendesk Support API v2 adapter against recorded request/response samples (respx)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.contract.loop import loop_clock_advanced, settle
from ticketbridge.adapters.inbound import zendesk as inbound
from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import HelpdeskTicket, Sent
from ticketbridge.adapters.outbound.zendesk import STATUS_CODES, STATUS_NAMES, ZendeskApi
from ticketbridge.rules import Priority, Status

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors" / "zendesk_api"
EMAIL = "bridge-agent@acme.example"
API_TOKEN = "zd-api-token-do-not-log"
API_URL = "https://acme.zendesk.com"
BASE = f"{API_URL}/api/v2"
CREDENTIALS = base64.b64encode(f"{EMAIL}/token:{API_TOKEN}".encode()).decode()
BASIC = f"Basic {CREDENTIALS}"
SECRETS = (EMAIL, API_TOKEN, CREDENTIALS)
ALPHA_TOKEN = "zdapitokendonotlog"  # letters only, like an error name
LIVE_SUPPORT = "DDEV Live Support"
LIVE_SUPPORT_ID = 360001234568
TLS = ssl.create_default_context()  # built once: a client per test would otherwise build its own


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def ticket_reply(**changes: Any) -> dict[str, Any]:
    return {"ticket": {**recorded("ticket.json")["ticket"], **changes}}


def groups_reply(groups: list[dict[str, Any]], next_page: str | None = None) -> dict[str, Any]:
    return {"groups": groups, "next_page": next_page, "previous_page": None, "count": len(groups)}


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(verify=TLS) as c:
        yield c


def make_api(client: httpx.AsyncClient, **kwargs: Any) -> ZendeskApi:
    return ZendeskApi(
        api_url=kwargs.pop("api_url", API_URL),
        email=EMAIL,
        api_token=API_TOKEN,
        client=client,
        **kwargs,
    )


def assert_authenticated(request: httpx.Request) -> None:
    assert request.headers["authorization"] == BASIC
    assert request.headers["accept"] == "application/json"


def assert_put_of(request: httpx.Request, body: Any) -> None:
    assert request.method == "PUT"
    assert request.url == f"{BASE}/tickets/11.json"
    assert_authenticated(request)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == body


# --- the exact requests -------------------------------------------------------------------


async def test_get_ticket_request_and_reply(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        ticket = await make_api(client).get_ticket("11")
    request = route.calls[0].request
    assert request.method == "GET"
    assert request.url == f"{BASE}/tickets/11.json"
    assert request.content == b""
    assert_authenticated(request)
    assert ticket == HelpdeskTicket(
        ticket_id="11",
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_code=2,
        group_id=360001234567,
        responder_id=360202020202,
        updated_at=datetime(2026, 11, 26, 12, 5, 30, tzinfo=UTC),
    )


async def test_new_ticket_without_priority_group_or_agent(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/12.json").mock(
            return_value=httpx.Response(200, json=recorded("ticket_no_priority.json"))
        )
        ticket = await make_api(client).get_ticket("12")
    assert (ticket.priority, ticket.status, ticket.status_code) == (Priority.MEDIUM, Status.OPEN, 1)
    assert (ticket.group_id, ticket.responder_id) == (None, None)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("urgent", Priority.URGENT),
        ("high", Priority.HIGH),
        ("normal", Priority.MEDIUM),
        ("low", Priority.LOW),
        (None, Priority.MEDIUM),
    ],
)
async def test_priorities_read_as_the_webhook_reads_them(
    client: httpx.AsyncClient, priority: str | None, expected: Priority
) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=ticket_reply(priority=priority))
        )
        ticket = await make_api(client).get_ticket("11")
    # A trigger renders "no priority" as an empty placeholder.
    webhook = {"ticket_id": "11", "ticket_status": "Open", "ticket_priority": priority or ""}
    event, _ = inbound.parse_webhook(json.dumps(webhook).encode())
    assert ticket.priority is expected
    assert ticket.priority is event.priority


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        ("new", Status.OPEN, 1),
        ("open", Status.OPEN, 2),
        ("pending", Status.PENDING, 3),
        ("solved", Status.RESOLVED, 4),
        ("closed", Status.CLOSED, 5),
        ("hold", Status.PENDING, 6),
    ],
)
async def test_statuses_read_as_the_webhook_reads_them_with_stable_codes(
    client: httpx.AsyncClient, status: str, expected: Status, code: int
) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=ticket_reply(status=status))
        )
        ticket = await make_api(client).get_ticket("11")
    webhook = {"ticket_id": "11", "ticket_status": status.capitalize(), "ticket_priority": "High"}
    event, _ = inbound.parse_webhook(json.dumps(webhook).encode())
    assert (ticket.status, ticket.status_code) == (expected, code)
    assert ticket.status is event.status
    assert STATUS_NAMES[code].lower().replace("on-", "") == status


@pytest.mark.parametrize(
    "change",
    [
        {"priority": "Urgent"},
        {"priority": "-"},
        {"priority": 4},
        {"priority": ["urgent"]},
        {"status": "Open"},
        {"status": "deleted"},
        {"status": None},
        {"status": 2},
        {"status": {"open": True}},
        {"id": None},
        {"id": "11"},
        {"id": 12},
        {"group_id": "360001234567"},
        {"assignee_id": True},
        {"updated_at": "yesterday"},
    ],
    ids=str,
)
async def test_malformed_ticket_reply_is_final(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=ticket_reply(**change))
        )
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert not info.value.retryable
    assert "malformed" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json=recorded("ticket.json")["ticket"]),  # not wrapped in "ticket"
        httpx.Response(200, json={"ticket": None}),
        httpx.Response(200, json=[recorded("ticket.json")]),
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, content=b""),
    ],
    ids=["bare", "null", "list", "html", "empty"],
)
async def test_reply_that_is_no_ticket_document_is_final(
    client: httpx.AsyncClient, reply: httpx.Response
) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert not info.value.retryable
    assert "malformed" in str(info.value)


async def test_note_is_one_put_with_a_private_html_comment(client: httpx.AsyncClient) -> None:
    body = recorded("note_request.json")["ticket"]["comment"]["html_body"]
    with respx.mock() as mock:
        route = mock.put(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=recorded("note_updated.json"))
        )
        sent = await make_api(client).send(
            {"action": "note", "ticket_id": "11", "body": body}, effect_key="k"
        )
    assert route.call_count == 1
    assert_put_of(route.calls[0].request, recorded("note_request.json"))
    assert sent == Sent(200, {"audit_id": "360987654321", "note_id": "360987654322"})


@pytest.mark.parametrize(
    "reply",
    [b"", b"<html>ok</html>", b"[]", b'{"ticket": {}}', b'{"audit": {"events": "x"}}'],
    ids=["empty", "html", "list", "no-audit", "odd-events"],
)
async def test_note_saved_with_an_odd_reply_still_counts(
    client: httpx.AsyncClient, reply: bytes
) -> None:
    with respx.mock() as mock:
        mock.put(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(200, content=reply))
        sent = await make_api(client).send(
            {"action": "note", "ticket_id": "11", "body": "<p>x</p>"}, effect_key="k"
        )
    assert sent == Sent(200, {})


async def test_add_private_note_returns_the_status(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.put(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=recorded("note_updated.json"))
        )
        assert await make_api(client).add_private_note("11", "<p>hi</p>") == 200
    assert_put_of(
        route.calls[0].request, {"ticket": {"comment": {"html_body": "<p>hi</p>", "public": False}}}
    )


async def test_reassign_is_one_put_with_group_and_no_agent(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        sent = await make_api(client).send(
            {"action": "reassign", "ticket_id": "11", "group": LIVE_SUPPORT}, effect_key="k"
        )
    assert groups.call_count == 1
    assert dict(groups.calls[0].request.url.params) == {"page": "1", "per_page": "100"}
    assert_authenticated(groups.calls[0].request)
    assert put.call_count == 1
    assert_put_of(put.calls[0].request, recorded("reassign_request.json"))
    assert sent == Sent(200, {"group_id": LIVE_SUPPORT_ID})


async def test_close_solves_the_ticket(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        put = mock.put(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=ticket_reply(status="solved"))
        )
        sent = await make_api(client).send({"action": "close", "ticket_id": 11}, effect_key="k")
    assert_put_of(put.calls[0].request, recorded("close_request.json"))
    assert sent == Sent(200, {})


async def test_update_ticket_wraps_the_given_fields(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        put = mock.put(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(200, json={}))
        assert await make_api(client).update_ticket("11", {"priority": "high"}) == 200
    assert_put_of(put.calls[0].request, {"ticket": {"priority": "high"}})


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("https://acme.zendesk.com/", "https://acme.zendesk.com/api/v2/tickets/11.json"),
        ("http://127.0.0.1:9000/zd", "http://127.0.0.1:9000/zd/api/v2/tickets/11.json"),
    ],
)
async def test_any_base_url(client: httpx.AsyncClient, api_url: str, expected: str) -> None:
    with respx.mock() as mock:
        route = mock.get(expected).mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        await make_api(client, api_url=api_url).get_ticket("11")
    assert route.call_count == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_url": "ftp://acme.zendesk.com"},
        {"api_url": "acme.zendesk.com"},
        {"api_url": f"https://{EMAIL.split('@')[0]}:{API_TOKEN}@acme.zendesk.com"},
        {"api_url": "https://acme.zendesk.com/?x=1"},
        {"email": ""},
        {"email": f"{EMAIL}/token"},
        {"email": "a:b@acme.example"},
        {"email": f" {EMAIL}"},
        {"api_token": ""},
        {"calls_per_minute": 0},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
async def test_bad_settings_are_refused_without_echoing_them(
    client: httpx.AsyncClient, kwargs: dict[str, Any]
) -> None:
    settings: dict[str, Any] = {"api_url": API_URL, "email": EMAIL, "api_token": API_TOKEN}
    with pytest.raises(ValueError, match="Zendesk") as info:
        ZendeskApi(client=client, **{**settings, **kwargs})
    assert API_TOKEN not in str(info.value)
    assert EMAIL not in str(info.value)


# --- groups: cache, pagination, unknown name ---------------------------------------------


async def test_group_map_is_cached_across_reassigns(client: httpx.AsyncClient) -> None:
    api = make_api(client)
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(url__regex=rf"{BASE}/tickets/\d+\.json").mock(
            return_value=httpx.Response(200)
        )
        for ticket_id in ("11", "12"):
            await api.send(
                {"action": "reassign", "ticket_id": ticket_id, "group": LIVE_SUPPORT},
                effect_key=ticket_id,
            )
        assert await api.group_id("Tier One") == 360001234567
    assert groups.call_count == 1
    assert put.call_count == 2


def page_of(page: int, size: int, *, extra: list[dict[str, Any]] | None = None) -> list[Any]:
    items = [{"id": page * 1000 + i, "name": f"group {page}-{i}"} for i in range(size)]
    return items + (extra or [])


async def test_groups_are_paginated_while_next_page_says_so(client: httpx.AsyncClient) -> None:
    pages = {
        1: page_of(1, 100),
        2: page_of(2, 99, extra=[{"id": LIVE_SUPPORT_ID, "name": LIVE_SUPPORT}]),
        3: page_of(3, 7),
    }

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.params["per_page"] == "100"
        assert_authenticated(request)
        page = int(request.url.params["page"])
        # next_page is a URL, even on a short page: only its presence matters.
        following = f"{BASE}/groups.json?page={page + 1}&per_page=100" if page < 3 else None
        return httpx.Response(200, json=groups_reply(pages[page], following))

    with respx.mock() as mock:
        route = mock.get(f"{BASE}/groups.json").mock(side_effect=reply)
        api = make_api(client)
        assert await api.group_id(LIVE_SUPPORT) == LIVE_SUPPORT_ID
        assert await api.group_id("group 3-6") == 3006
        assert await api.group_id("group 1-0") == 1000
    assert [c.request.url.params["page"] for c in route.calls] == ["1", "2", "3"]


async def test_next_page_url_is_never_followed_with_our_credentials(
    client: httpx.AsyncClient,
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        following = "https://collector.evil.example/steal?page=2" if page == 1 else None
        return httpx.Response(200, json=groups_reply(page_of(page, 2), following))

    with respx.mock() as mock:  # a request anywhere else is unrouted and would fail the test
        route = mock.get(f"{BASE}/groups.json").mock(side_effect=reply)
        assert await make_api(client).group_id("group 2-1") == 2001
        assert mock.calls.call_count == route.call_count == 2


async def test_endless_groups_list_stops_at_the_page_bound(client: httpx.AsyncClient) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json=groups_reply(page_of(page, 1), f"{BASE}/groups.json"))

    with respx.mock() as mock:
        route = mock.get(f"{BASE}/groups.json").mock(side_effect=reply)
        with pytest.raises(AdapterError) as info:
            await make_api(client).group_id(LIVE_SUPPORT)
    assert not info.value.retryable
    assert "100 pages" in str(info.value)
    assert route.call_count == 100


async def test_deleted_groups_are_skipped(client: httpx.AsyncClient) -> None:
    listed = [
        {"id": 7, "name": LIVE_SUPPORT, "deleted": True},
        {"id": LIVE_SUPPORT_ID, "name": LIVE_SUPPORT, "deleted": False},
        {"id": 8, "name": "Old Team", "deleted": True},
    ]
    with respx.mock() as mock:
        mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=groups_reply(listed))
        )
        api = make_api(client)
        assert await api.group_id(LIVE_SUPPORT) == LIVE_SUPPORT_ID
        with pytest.raises(AdapterError, match="Old Team"):
            await api.group_id("Old Team")


async def test_unknown_group_is_final_and_named(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        put = mock.put(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(200))
        with pytest.raises(AdapterError) as info:
            await make_api(client).send(
                {"action": "reassign", "ticket_id": "11", "group": "Night Shift"}, effect_key="k"
            )
    assert not info.value.retryable
    assert "Night Shift" in str(info.value)
    assert put.call_count == 0


@pytest.mark.parametrize(
    "reply",
    [
        [{"id": 7, "name": "x"}],
        {"groups": [{"id": 7, "name": "x"}]},  # no next_page: not the offset-paginated shape
        {"groups": {"id": 7}, "next_page": None},
        {"groups": [{"id": "7", "name": "x"}], "next_page": None},
        {"groups": [{"id": 7}], "next_page": None},
        {"groups": [{"id": True, "name": "x"}], "next_page": None},
        {"groups": ["x"], "next_page": None},
        {"groups": [], "next_page": 2},
    ],
    ids=str,
)
async def test_malformed_groups_list_is_final(client: httpx.AsyncClient, reply: Any) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/groups.json").mock(return_value=httpx.Response(200, json=reply))
        with pytest.raises(AdapterError) as info:
            await make_api(client).group_id(LIVE_SUPPORT)
    assert not info.value.retryable
    assert "malformed" in str(info.value)


async def test_failed_groups_call_fails_the_lookup_and_is_not_cached(
    client: httpx.AsyncClient,
) -> None:
    api = make_api(client)
    with respx.mock() as mock:
        groups = mock.get(f"{BASE}/groups.json").mock(
            side_effect=[httpx.Response(503), httpx.Response(200, json=recorded("groups.json"))]
        )
        with pytest.raises(AdapterError) as info:
            await api.group_id(LIVE_SUPPORT)
        assert info.value.retryable
        assert await api.group_id(LIVE_SUPPORT) == LIVE_SUPPORT_ID
    assert groups.call_count == 2


# --- refused before sending ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "delete", "ticket_id": "11"},
        {"ticket_id": "11"},
        {"action": "close", "ticket_id": "11/../../groups"},
        {"action": "close", "ticket_id": "11.json"},
        {"action": "close", "ticket_id": "11?page=2"},
        {"action": "close", "ticket_id": "11#x"},
        {"action": "close", "ticket_id": "%31%31"},
        {"action": "close", "ticket_id": "11\n"},
        {"action": "close", "ticket_id": " 11"},
        {"action": "close", "ticket_id": "\u0661\u0661"},  # Arabic-Indic digits: isdigit() is True
        {"action": "close", "ticket_id": "abc"},
        {"action": "close", "ticket_id": ""},
        {"action": "close", "ticket_id": "0"},
        {"action": "close", "ticket_id": 0},
        {"action": "close", "ticket_id": -3},
        {"action": "close", "ticket_id": 10**20},
        {"action": "close", "ticket_id": "1" * 21},
        {"action": "close", "ticket_id": True},
        {"action": "close", "ticket_id": 11.0},
        {"action": "close", "ticket_id": None},
        {"action": "close"},
        {"action": "note", "ticket_id": "11", "body": ""},
        {"action": "note", "ticket_id": "11", "body": "   "},
        {"action": "note", "ticket_id": "11", "body": ["<p>x</p>"]},
        {"action": "note", "ticket_id": "11"},
        {"action": "reassign", "ticket_id": "11"},
        {"action": "reassign", "ticket_id": "11", "group": ""},
        {"action": "reassign", "ticket_id": "11", "group": 360001234568},
    ],
    ids=repr,
)
async def test_bad_payloads_are_refused_before_any_call(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    with respx.mock() as mock:  # any request at all would fail: nothing is routed
        with pytest.raises(AdapterError) as info:
            await make_api(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


@pytest.mark.parametrize("ticket_id", ["11/../../users/me", "11.json?x=", "-1", ""])
async def test_get_ticket_refuses_a_bad_id_before_any_call(
    client: httpx.AsyncClient, ticket_id: str
) -> None:
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket(ticket_id)
        assert mock.calls.call_count == 0
    assert not info.value.retryable


async def test_leading_zeros_name_the_same_ticket(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(200, json=recorded("ticket.json"))
        )
        ticket = await make_api(client).get_ticket("011")
    assert (route.call_count, ticket.ticket_id) == (1, "11")


# --- classification -----------------------------------------------------------------------

RETRY_TABLE = [
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (429, True),
    (408, True),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (409, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
@pytest.mark.parametrize("action", ["close", "note", "reassign", "get"])
async def test_status_classification(
    client: httpx.AsyncClient, status: int, retryable: bool, action: str
) -> None:
    reply = httpx.Response(status, json=recorded("error_response.json"))
    api = make_api(client)
    payload = {"action": action, "ticket_id": "11", "body": "<p>x</p>", "group": LIVE_SUPPORT}
    call = api.get_ticket("11") if action == "get" else api.send(payload, effect_key="k")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        mock.route(url__regex=rf"{BASE}/tickets/11\.json").mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await call
    assert (info.value.retryable, info.value.status_code) == (retryable, status)
    assert "RecordInvalid" in str(info.value)
    assert "Made-up validation message" not in str(info.value)  # free text stays out


async def test_recorded_429_carries_retry_after_and_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    sample = recorded("rate_limited_response.json")
    with respx.mock() as mock:
        mock.put(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(
                sample["status"], headers=sample["headers"], text=sample["body"]
            )
        )
        with pytest.raises(AdapterError) as info:
            await make_api(client).send({"action": "close", "ticket_id": "11"}, effect_key="k")
    assert info.value.retryable
    assert info.value.retry_after == 37
    assert info.value.status_code == 429
    assert str(info.value) == "zendesk answered HTTP 429 (x-request-id 70b48ed9ef145866-IAD)"


async def test_retry_after_as_an_http_date_counts_from_the_server_clock(
    client: httpx.AsyncClient,
) -> None:
    headers = {
        "Date": "Thu, 26 Nov 2026 12:00:00 GMT",
        "Retry-After": "Thu, 26 Nov 2026 12:01:30 GMT",
    }
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(503, headers=headers))
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert (info.value.retryable, info.value.retry_after) == (True, 90)


async def test_final_error_has_no_retry_after(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(f"{BASE}/tickets/11.json").mock(
            return_value=httpx.Response(
                404,
                headers={"Retry-After": "5", "X-Zendesk-Request-Id": "f1e2d3c4b5a6"},
                json={"error": "RecordNotFound", "description": "Not found"},
            )
        )
        with pytest.raises(AdapterError) as info:
            await make_api(client).get_ticket("11")
    assert (info.value.retryable, info.value.retry_after) == (False, None)
    assert (
        str(info.value) == "zendesk answered HTTP 404 (RecordNotFound, x-request-id f1e2d3c4b5a6)"
    )


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("x"), httpx.ReadTimeout("x"), httpx.RemoteProtocolError("x")],
    ids=lambda e: type(e).__name__,
)
async def test_transport_failures_are_retryable(client: httpx.AsyncClient, exc: Exception) -> None:
    with respx.mock() as mock:
        mock.put(f"{BASE}/tickets/11.json").mock(side_effect=exc)
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
        put = mock.put(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(200))
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
        mock.get(f"{BASE}/groups.json").mock(
            return_value=httpx.Response(200, json=recorded("groups.json"))
        )
        mock.put(f"{BASE}/tickets/11.json").mock(return_value=httpx.Response(200))
        await api.send(
            {"action": "reassign", "ticket_id": "11", "group": LIVE_SUPPORT}, effect_key="k"
        )
    assert not api.limiter.has_capacity()


# --- secrets ------------------------------------------------------------------------------


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(401, text=f"Couldn't authenticate {EMAIL}/token:{API_TOKEN}"),
        httpx.Response(400, json={"error": API_TOKEN, "description": BASIC}),
        httpx.Response(400, json={"error": ALPHA_TOKEN, "description": EMAIL}),
        httpx.Response(404, headers={"x-request-id": API_TOKEN}),
        httpx.Response(404, headers={"x-request-id": f"{CREDENTIALS[:20]}, abc"}),
        httpx.ConnectError(f"connect to {API_URL} as {EMAIL} with {API_TOKEN} failed"),
        httpx.ReadTimeout(f"timeout on {BASE}/tickets/11.json ({BASIC})"),
    ],
    ids=[
        "401-echo",
        "error-echo",
        "alpha-token-echo",
        "request-id-echo",
        "request-id-credentials",
        "connect-error",
        "read-timeout",
    ],
)
async def test_no_secret_leaks_into_errors_or_repr(client: httpx.AsyncClient, reply: Any) -> None:
    # An all-letter token would pass the error-name filter: it is checked against the secrets.
    for token in (API_TOKEN, ALPHA_TOKEN):
        adapter = ZendeskApi(api_url=API_URL, email=EMAIL, api_token=token, client=client)
        with respx.mock() as mock:
            route = mock.put(f"{BASE}/tickets/11.json")
            if isinstance(reply, Exception):
                route.mock(side_effect=reply)
            else:
                route.mock(return_value=reply)
            with pytest.raises(AdapterError) as info:
                await adapter.send({"action": "close", "ticket_id": "11"}, effect_key="k")
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
        text = " ".join([str(info.value), repr(info.value), repr(adapter), str(adapter)])
        credentials = base64.b64encode(f"{EMAIL}/token:{token}".encode()).decode()
        for secret in (EMAIL, token, credentials, credentials[:20], API_URL):
            assert secret not in text


def header(head: bytes, name: str) -> str | None:
    """One header's value from a raw HTTP/1.1 request head."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@asynccontextmanager
async def loopback(replies: list[tuple[int, bytes]], seen: list[bytes]) -> AsyncIterator[str]:
    """A real HTTP/1.1 server on 127.0.0.1 answering ``replies`` in turn; ``seen`` gets each
    request's head. Real sockets, so httpcore runs (and logs) as in production."""
    answers = iter(replies)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        await reader.readexactly(int(header(head, "content-length") or 0))
        status, body = next(answers)
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, len(body), body)
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_no_secret_in_any_log_record_down_to_httpcore_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):  # the app quiets them; turn them all the way up here
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[bytes] = []
    replies = [
        (200, json.dumps(recorded("ticket.json")).encode()),
        (200, json.dumps(recorded("groups.json")).encode()),
        (200, json.dumps(recorded("ticket.json")).encode()),
        (401, b'{"error": "Couldn\'t authenticate you"}'),
    ]
    async with loopback(replies, seen) as url, httpx.AsyncClient(verify=TLS) as http:
        api = make_api(http, api_url=url)
        assert (await api.get_ticket("11")).priority is Priority.URGENT
        await api.send(
            {"action": "reassign", "ticket_id": "11", "group": LIVE_SUPPORT}, effect_key="k"
        )
        with pytest.raises(AdapterError):
            await api.send({"action": "close", "ticket_id": "11"}, effect_key="k")
    # The credentials did go over the wire, in the Authorization header of every request...
    assert [header(head, "authorization") for head in seen] == [BASIC] * 4
    # ...and httpx and httpcore logged those requests, without them.
    loggers = {record.name.split(".")[0] for record in caplog.records}
    assert {"httpx", "httpcore"} <= loggers
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    for record in caplog.records:
        assert_no_secret(record.getMessage())
    assert_no_secret(caplog.text)


def test_status_names_cover_every_code() -> None:
    assert sorted(STATUS_NAMES) == sorted(STATUS_CODES.values())
    assert len(set(STATUS_CODES.values())) == len(STATUS_CODES)
