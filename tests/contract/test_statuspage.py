"""Atlassian Statuspage adapter and the status-page Sender against recorded samples (respx)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.contract.loop import loop_clock_advanced, settle
from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.outbound.statuspage.atlassian import AtlassianStatuspage
from ticketbridge.adapters.outbound.statuspage.sender import (
    COMPONENT_STATUSES,
    IMPACTS,
    INCIDENT_STATUSES,
    NO_INCIDENT,
    StatusPage,
    StatusPageSender,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vendors" / "statuspage"
TLS = ssl.create_default_context()  # built once: a client per test would otherwise build its own
API_KEY = "sp-oauth-key-do-not-log"
OAUTH = f"OAuth {API_KEY}"
API_URL = "https://api.statuspage.io"
PAGE_ID = "kctbh9vrtdwd"
PAGE = f"{API_URL}/v1/pages/{PAGE_ID}"
INCIDENTS = f"{PAGE}/incidents"
UNRESOLVED = f"{PAGE}/incidents/unresolved"
INCIDENT_ID = "p31zjtct2jer"
INCIDENT = f"{INCIDENTS}/{INCIDENT_ID}"
SHORTLINK = "https://stspg.io/3xk7m9q2r"
COMPONENTS = {"Checkout API": "ftgks51sfs2d", "EU Storefront": "0l2p9nhqnxpd"}
NAMES = ["Checkout API", "EU Storefront"]
MARKER = "freshdesk/acme/ticket/11/status-page"
NAME = "Freshdesk #11: Checkout fails for EU customers"
FAST = 1000.0  # requests a second for tests that are not about the budget: no real waits
OPEN: dict[str, Any] = {
    "action": "open",
    "marker": MARKER,
    "name": NAME,
    "status": "investigating",
    "impact": "major",
    "body": "We are investigating failed checkouts for customers in the EU. "
    "Next update within the hour.",
    "components": NAMES,
    "component_status": "partial_outage",
}
REFS: dict[str, Any] = {
    "incident": {"incident_id": INCIDENT_ID, "shortlink": SHORTLINK, "existing": False}
}
UPDATE: dict[str, Any] = {
    "action": "update",
    "refs": REFS,
    "status": "identified",
    "body": "The cause is a failing payment provider in the EU region; we are switching providers.",
    "components": NAMES,
    "component_status": "major_outage",
}
RESOLVE: dict[str, Any] = {
    "action": "resolve",
    "refs": REFS,
    "body": "Checkout works again for all customers. We are sorry for the disruption.",
    "components": NAMES,
}


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(verify=TLS) as c:
        yield c


def make_page(client: httpx.AsyncClient, **kwargs: Any) -> AtlassianStatuspage:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "page_id": PAGE_ID,
        "client": client,
        "components": COMPONENTS,
        "requests_per_second": FAST,
    }
    values.update(kwargs)
    return AtlassianStatuspage(**values)


def sender(client: httpx.AsyncClient, **kwargs: Any) -> StatusPageSender:
    return StatusPageSender(make_page(client, **kwargs))


def assert_authenticated(request: httpx.Request) -> None:
    assert request.headers["authorization"] == OAUTH
    assert request.headers["accept"] == "application/json"


def unmarked(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list as it would look if Statuspage did not echo ``metadata``."""
    items = copy.deepcopy(incidents)
    for item in items:
        item.pop("metadata", None)
    return items


# --- open: the exact requests -------------------------------------------------------------


async def test_open_lists_unresolved_then_creates(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        listed = mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        sent = await sender(client).send(OPEN, effect_key="k")
        assert [call.request.method for call in mock.calls] == ["GET", "POST"]
    get = listed.calls[0].request
    assert_authenticated(get)
    assert dict(get.url.params) == {"page": "1", "per_page": "100"}
    assert get.content == b""
    post = created.calls[0].request
    assert post.url == INCIDENTS
    assert_authenticated(post)
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.content) == recorded("create_request.json")
    assert sent == Sent(
        201,
        {
            "incident_id": INCIDENT_ID,
            "shortlink": SHORTLINK,
            "status": "investigating",
            "existing": False,
        },
    )


async def test_unmapped_names_are_ids_and_duplicates_collapse(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client).send(
            {**OPEN, "components": ["EU Storefront", "k8s1x0y2z3w4", "EU Storefront"]},
            effect_key="k",
        )
    incident = json.loads(created.calls[0].request.content)["incident"]
    assert incident["component_ids"] == ["0l2p9nhqnxpd", "k8s1x0y2z3w4"]
    assert incident["components"] == {
        "0l2p9nhqnxpd": "partial_outage",
        "k8s1x0y2z3w4": "partial_outage",
    }


async def test_open_without_components_sends_neither_ids_nor_map(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client).send({**OPEN, "components": []}, effect_key="k")
    expected = recorded("create_request.json")
    del expected["incident"]["component_ids"], expected["incident"]["components"]
    assert json.loads(created.calls[0].request.content) == expected


async def test_long_name_and_body_are_cut_to_the_documented_limits(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client).send({**OPEN, "name": "n" * 300, "body": "b" * 30_000}, effect_key="k")
    incident = json.loads(created.calls[0].request.content)["incident"]
    assert incident["name"] == "n" * 255
    assert incident["body"] == "b" * 25_000


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("https://api.statuspage.io/", f"{PAGE}/incidents"),
        ("http://127.0.0.1:9200/sp", f"http://127.0.0.1:9200/sp/v1/pages/{PAGE_ID}/incidents"),
    ],
)
async def test_any_base_url(client: httpx.AsyncClient, api_url: str, expected: str) -> None:
    with respx.mock() as mock:
        mock.get(f"{expected}/unresolved").mock(return_value=httpx.Response(200, json=[]))
        route = mock.post(expected).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client, api_url=api_url).send(OPEN, effect_key="k")
    assert route.call_count == 1


# --- open: one incident per ticket, whatever the retries ----------------------------------


async def test_marked_unresolved_incident_is_reused_without_a_post(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(UNRESOLVED).mock(
            return_value=httpx.Response(200, json=recorded("incidents_unresolved.json"))
        )
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        sent = await sender(client).send(OPEN, effect_key="k")
    assert created.call_count == 0
    assert sent == Sent(
        201,
        {
            "incident_id": INCIDENT_ID,
            "shortlink": SHORTLINK,
            "status": "investigating",
            "existing": True,
        },
    )


async def test_exact_name_is_the_fallback_when_metadata_is_not_echoed(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(UNRESOLVED).mock(
            return_value=httpx.Response(200, json=unmarked(recorded("incidents_unresolved.json")))
        )
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        sent = await sender(client).send(OPEN, effect_key="k")
    assert created.call_count == 0
    assert (sent.info["incident_id"], sent.info["existing"]) == (INCIDENT_ID, True)


async def test_name_fallback_uses_the_name_as_it_was_cut(client: httpx.AsyncClient) -> None:
    listed = unmarked(recorded("incidents_unresolved.json"))
    listed[1]["name"] = "n" * 255
    with respx.mock(assert_all_called=False) as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=listed))
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        sent = await sender(client).send({**OPEN, "name": "n" * 300}, effect_key="k")
    assert created.call_count == 0
    assert sent.info["incident_id"] == INCIDENT_ID


@pytest.mark.parametrize(
    "name", [NAME + " ", NAME.lower(), "Freshdesk #1: Checkout fails for EU customers"], ids=repr
)
async def test_name_must_match_exactly(client: httpx.AsyncClient, name: str) -> None:
    listed = unmarked(recorded("incidents_unresolved.json"))
    listed[1]["name"] = name
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=listed))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        sent = await sender(client).send(OPEN, effect_key="k")
    assert created.call_count == 1
    assert sent.info["existing"] is False


@pytest.mark.parametrize(
    "metadata",
    [
        {"ticketbridge": {"key": "freshdesk/acme/ticket/12/status-page"}},
        {"ticketbridge": {"key": None}},
        {"ticketbridge": "freshdesk/acme/ticket/11/status-page"},
    ],
    ids=["other-ticket", "null-key", "not-an-object"],
)
async def test_incident_marked_otherwise_is_never_reused_by_name(
    client: httpx.AsyncClient, metadata: dict[str, Any]
) -> None:
    listed = recorded("incidents_unresolved.json")
    listed[1]["metadata"] = metadata  # same name as ours
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=listed))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client).send(OPEN, effect_key="k")
    assert created.call_count == 1


async def test_marker_wins_over_an_earlier_name_match(client: httpx.AsyncClient) -> None:
    ours = recorded("incident_created.json")
    same_name = {**unmarked([ours])[0], "id": "y7x6w5v4u3t2", "metadata": None}
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[same_name, ours]))
        sent = await sender(client).send(OPEN, effect_key="k")
    assert sent.info["incident_id"] == INCIDENT_ID


def other_incidents(page: int, size: int) -> list[dict[str, Any]]:
    base = recorded("incidents_unresolved.json")[0]
    return [{**base, "id": f"p{page:03d}i{i:03d}"} for i in range(size)]


async def test_unresolved_list_is_walked_page_by_page(client: httpx.AsyncClient) -> None:
    ours = recorded("incident_created.json")
    pages = {1: other_incidents(1, 100), 2: [*other_incidents(2, 40), ours]}

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.params["per_page"] == "100"
        return httpx.Response(200, json=pages[int(request.url.params["page"])])

    with respx.mock() as mock:
        listed = mock.get(UNRESOLVED).mock(side_effect=reply)
        sent = await sender(client).send(OPEN, effect_key="k")
    assert [c.request.url.params["page"] for c in listed.calls] == ["1", "2"]
    assert sent.info["existing"] is True


async def test_a_server_ignoring_pagination_does_not_loop(client: httpx.AsyncClient) -> None:
    everything = other_incidents(1, 100)
    with respx.mock() as mock:
        listed = mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=everything))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        await sender(client).send(OPEN, effect_key="k")
    assert listed.call_count == 2  # page 2 brought nothing new
    assert created.call_count == 1


async def test_an_endless_unresolved_list_is_final(client: httpx.AsyncClient) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=other_incidents(int(request.url.params["page"]), 100))

    with respx.mock(assert_all_called=False) as mock:
        listed = mock.get(UNRESOLVED).mock(side_effect=reply)
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        with pytest.raises(AdapterError) as info:
            await sender(client).send(OPEN, effect_key="k")
    assert not info.value.retryable
    assert listed.call_count == 10
    assert created.call_count == 0


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={"incidents": []}),
        httpx.Response(200, json=[{"name": NAME}]),
        httpx.Response(200, json=[{"id": 7, "name": NAME}]),
        httpx.Response(200, json=["p31zjtct2jer"]),
        httpx.Response(200, text="<html>maintenance</html>"),
    ],
    ids=["object", "no-id", "int-id", "strings", "html"],
)
async def test_malformed_unresolved_list_is_final_and_nothing_is_created(
    client: httpx.AsyncClient, reply: httpx.Response
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(UNRESOLVED).mock(return_value=reply)
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        with pytest.raises(AdapterError) as info:
            await sender(client).send(OPEN, effect_key="k")
    assert not info.value.retryable
    assert "malformed" in str(info.value)
    assert created.call_count == 0


async def test_ambiguous_timeout_then_retry_creates_exactly_one_incident(
    client: httpx.AsyncClient,
) -> None:
    page = sender(client)
    with respx.mock() as mock:
        listed = mock.get(UNRESOLVED).mock(
            side_effect=[
                httpx.Response(200, json=[]),
                # The server committed the create whose reply we never got.
                httpx.Response(200, json=recorded("incidents_unresolved.json")),
            ]
        )
        created = mock.post(INCIDENTS).mock(side_effect=httpx.ReadTimeout("read timed out"))
        with pytest.raises(AdapterError) as info:
            await page.send(OPEN, effect_key="k")
        assert info.value.retryable
        assert info.value.status_code is None
        sent = await page.send(OPEN, effect_key="k")
    assert created.call_count == 1
    assert listed.call_count == 2
    assert sent == Sent(
        201,
        {
            "incident_id": INCIDENT_ID,
            "shortlink": SHORTLINK,
            "status": "investigating",
            "existing": True,
        },
    )


async def run_for_a_while() -> None:
    """Let every task run, moving the loop clock on so that no rate-limit wait holds it."""
    for step in range(1, 11):
        with loop_clock_advanced(step * 10.0):
            await settle()


async def test_concurrent_opens_of_one_ticket_create_once(client: httpx.AsyncClient) -> None:
    page = sender(client, requests_per_second=1.0)
    incident = recorded("incident_created.json")
    answer = asyncio.Event()
    posted: list[httpx.Request] = []

    async def create(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        await answer.wait()  # a slow create: the other open runs meanwhile
        return httpx.Response(201, json=incident)

    def listed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[incident] if answer.is_set() else [])

    with respx.mock() as mock:
        mock.post(INCIDENTS).mock(side_effect=create)
        mock.get(UNRESOLVED).mock(side_effect=listed)
        tasks = [asyncio.create_task(page.send(OPEN, effect_key="k")) for _ in range(2)]
        await run_for_a_while()
        assert len(posted) == 1
        answer.set()
        await run_for_a_while()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert len(posted) == 1
    assert [sent.info["existing"] for sent in results] == [False, True]
    assert {sent.info["incident_id"] for sent in results} == {INCIDENT_ID}


# --- update and resolve -------------------------------------------------------------------


async def test_update_request_and_reply(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        route = mock.patch(INCIDENT).mock(
            return_value=httpx.Response(200, json=recorded("incident_updated.json"))
        )
        sent = await sender(client).send(UPDATE, effect_key="k")
    request = route.calls[0].request
    assert request.method == "PATCH"
    assert request.url == INCIDENT
    assert_authenticated(request)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == recorded("update_request.json")
    assert sent == Sent(
        200, {"incident_id": INCIDENT_ID, "shortlink": SHORTLINK, "status": "identified"}
    )


@pytest.mark.parametrize(
    "change", [{"component_status": None}, {"components": []}], ids=["no-status", "no-components"]
)
async def test_update_can_leave_the_components_alone(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    with respx.mock() as mock:
        route = mock.patch(INCIDENT).mock(
            return_value=httpx.Response(200, json=recorded("incident_updated.json"))
        )
        await sender(client).send({**UPDATE, **change}, effect_key="k")
    assert json.loads(route.calls[0].request.content) == {
        "incident": {"status": "identified", "body": UPDATE["body"]}
    }


async def test_resolve_restores_every_component_to_operational(
    client: httpx.AsyncClient,
) -> None:
    with respx.mock() as mock:
        route = mock.patch(INCIDENT).mock(
            return_value=httpx.Response(200, json=recorded("incident_resolved.json"))
        )
        sent = await sender(client).send(RESOLVE, effect_key="k")
    request = route.calls[0].request
    assert request.method == "PATCH"
    assert_authenticated(request)
    body = json.loads(request.content)
    assert body == recorded("resolve_request.json")
    assert set(body["incident"]["components"].values()) == {"operational"}
    assert sent == Sent(
        200, {"incident_id": INCIDENT_ID, "shortlink": SHORTLINK, "status": "resolved"}
    )


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={}),
        httpx.Response(200, json={"id": 5}),
        httpx.Response(200, json={"id": "../pages"}),
    ],
    ids=["html", "list", "empty", "int-id", "odd-id"],
)
@pytest.mark.parametrize("payload", [UPDATE, RESOLVE], ids=["update", "resolve"])
async def test_malformed_2xx_patch_reply_is_final(
    client: httpx.AsyncClient, reply: httpx.Response, payload: dict[str, Any]
) -> None:
    with respx.mock() as mock:
        mock.patch(INCIDENT).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
    assert not info.value.retryable
    assert "malformed" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(201, text=""),
        httpx.Response(201, json=[]),
        httpx.Response(201, json={"name": NAME}),
    ],
    ids=["empty", "list", "no-id"],
)
async def test_malformed_2xx_create_reply_is_final(
    client: httpx.AsyncClient, reply: httpx.Response
) -> None:
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        mock.post(INCIDENTS).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(OPEN, effect_key="k")
    assert not info.value.retryable
    assert "malformed created incident" in str(info.value)


# --- classification -----------------------------------------------------------------------


def call_for(action: str, mock: respx.MockRouter, reply: httpx.Response | Exception) -> Any:
    """Route ``reply`` to the request ``action`` makes; the open's listing comes back empty."""
    if action == "open":
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        route = mock.post(INCIDENTS)
        payload = OPEN
    elif action == "list":
        route = mock.get(UNRESOLVED)
        payload = OPEN
    else:
        route = mock.patch(INCIDENT)
        payload = UPDATE if action == "update" else RESOLVE
    if isinstance(reply, Exception):
        route.mock(side_effect=reply)
    else:
        route.mock(return_value=reply)
    return payload


ACTIONS = ["open", "list", "update", "resolve"]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, 1.0),
        ({"Retry-After": "0"}, 1.0),
        ({"Retry-After": "30"}, 30.0),
        (
            {
                "Retry-After": "Thu, 26 Nov 2026 12:32:00 GMT",
                "Date": "Thu, 26 Nov 2026 12:30:00 GMT",
            },
            120.0,
        ),
    ],
    ids=["none", "zero", "seconds", "http-date"],
)
@pytest.mark.parametrize("status", [420, 429])
@pytest.mark.parametrize("action", ACTIONS)
async def test_420_and_429_are_rate_limits_honouring_retry_after(
    client: httpx.AsyncClient, action: str, status: int, headers: dict[str, str], wait: float
) -> None:
    reply = httpx.Response(status, json=recorded("rate_limited.json"), headers=headers)
    with respx.mock() as mock:
        payload = call_for(action, mock, reply)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
    assert info.value.retryable
    assert info.value.status_code == status
    assert info.value.retry_after == wait
    assert "rate limit" in str(info.value)


async def test_rate_limit_wait_is_at_least_the_bucket_period(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.patch(INCIDENT).mock(return_value=httpx.Response(429))
        with pytest.raises(AdapterError) as info:
            await sender(client, requests_per_second=0.25).send(UPDATE, effect_key="k")
    assert info.value.retry_after == 4.0


RETRY_TABLE = [
    (500, True),
    (502, True),
    (503, True),
    (504, True),
    (408, True),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (409, False),
    (422, False),
]


@pytest.mark.parametrize(("status", "retryable"), RETRY_TABLE)
@pytest.mark.parametrize("action", ACTIONS)
async def test_status_classification(
    client: httpx.AsyncClient, action: str, status: int, retryable: bool
) -> None:
    reply = httpx.Response(status, json=recorded("error_response.json"))
    with respx.mock() as mock:
        payload = call_for(action, mock, reply)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
    assert (info.value.retryable, info.value.status_code) == (retryable, status)


async def test_failed_listing_creates_nothing(client: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(503))
        created = mock.post(INCIDENTS).mock(return_value=httpx.Response(201))
        with pytest.raises(AdapterError) as info:
            await sender(client).send(OPEN, effect_key="k")
    assert info.value.retryable
    assert created.call_count == 0


async def test_503_carries_retry_after(client: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.patch(INCIDENT).mock(return_value=httpx.Response(503, headers={"Retry-After": "45"}))
        with pytest.raises(AdapterError) as info:
            await sender(client).send(RESOLVE, effect_key="k")
    assert (info.value.retryable, info.value.retry_after, info.value.status_code) == (
        True,
        45,
        503,
    )


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (httpx.Response(422, json=recorded("error_response.json")), "Name can't be blank"),
        (
            httpx.Response(422, json={"error": ["Status is invalid", "Body is too long"]}),
            "Status is invalid; Body is too long",
        ),
        (httpx.Response(401, json={"error": "Could not authenticate"}), "Could not authenticate"),
        (httpx.Response(422, json={"message": "x" * 500}), "x" * 200),
    ],
    ids=["message", "error-list", "error-string", "long"],
)
async def test_final_errors_say_why(
    client: httpx.AsyncClient, reply: httpx.Response, words: str
) -> None:
    with respx.mock() as mock:
        mock.patch(INCIDENT).mock(return_value=reply)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(UPDATE, effect_key="k")
    assert not info.value.retryable
    assert str(info.value).endswith(words)
    assert len(str(info.value)) < 260


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ConnectTimeout("x"),
        httpx.ReadTimeout("x"),
        httpx.RemoteProtocolError("x"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("action", ACTIONS)
async def test_transport_failures_are_retryable(
    client: httpx.AsyncClient, action: str, exc: Exception
) -> None:
    with respx.mock() as mock:
        payload = call_for(action, mock, exc)
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
    assert info.value.retryable
    assert info.value.status_code is None


# --- the 1 request/s budget ----------------------------------------------------------------


async def test_default_budget_is_one_request_a_second(client: httpx.AsyncClient) -> None:
    page = AtlassianStatuspage(api_key=API_KEY, page_id=PAGE_ID, client=client)
    assert (page.limiter.max_rate, page.limiter.time_period) == (1, 1.0)
    slower = make_page(client, requests_per_second=0.5)
    assert (slower.limiter.max_rate, slower.limiter.time_period) == (1, 2.0)


async def test_the_create_waits_a_second_after_the_listing(client: httpx.AsyncClient) -> None:
    page = make_page(client, requests_per_second=1.0)
    with respx.mock() as mock:
        listed = mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        created = mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        task = asyncio.create_task(StatusPageSender(page).send(OPEN, effect_key="k"))
        await settle()
        assert (listed.call_count, created.call_count) == (1, 0)
        assert not task.done()
        assert not page.limiter.has_capacity()
        with loop_clock_advanced(1.05):
            sent = await asyncio.wait_for(task, timeout=5)
    assert created.call_count == 1
    assert sent.info["existing"] is False


async def test_every_call_passes_the_same_bucket(client: httpx.AsyncClient) -> None:
    page = make_page(client, requests_per_second=1.0)
    with respx.mock() as mock:
        route = mock.patch(INCIDENT).mock(
            return_value=httpx.Response(200, json=recorded("incident_updated.json"))
        )
        await page.update_incident(
            INCIDENT_ID, status="identified", body="b", components=[], component_status=None
        )
        second = asyncio.create_task(page.resolve_incident(INCIDENT_ID, body="b", components=[]))
        await settle()
        assert route.call_count == 1
        assert not second.done()
        with loop_clock_advanced(1.05):
            await asyncio.wait_for(second, timeout=5)
    assert route.call_count == 2


@pytest.mark.parametrize("status", [429, 503, 401])
async def test_failed_calls_spend_the_budget_too(client: httpx.AsyncClient, status: int) -> None:
    page = make_page(client, requests_per_second=1.0)
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(status))
        with pytest.raises(AdapterError):
            await StatusPageSender(page).send(OPEN, effect_key="k")
    assert not page.limiter.has_capacity()


# --- the Sender: payloads refused before any call ------------------------------------------


BAD_PAYLOADS: list[Any] = [
    [],
    {},
    {"action": "delete"},
    {**OPEN, "action": "OPEN"},
    {**OPEN, "marker": ""},
    {**OPEN, "marker": 11},
    {k: v for k, v in OPEN.items() if k != "marker"},
    {**OPEN, "name": "  "},
    {**OPEN, "name": None},
    {**OPEN, "status": "resolved"},
    {**OPEN, "status": "INVESTIGATING"},
    {**OPEN, "impact": "severe"},
    {**OPEN, "impact": None},
    {**OPEN, "body": ""},
    {**OPEN, "body": ["text"]},
    {**OPEN, "components": "Checkout API"},
    {**OPEN, "components": [""]},
    {**OPEN, "components": [7]},
    {**OPEN, "components": None},
    {**OPEN, "component_status": "down"},
    {**OPEN, "component_status": None},
    {**UPDATE, "status": "resolved"},
    {**UPDATE, "status": "fixed"},
    {**UPDATE, "body": ""},
    {**UPDATE, "component_status": "fine"},
    {**UPDATE, "components": ("Checkout API",)},
    {**RESOLVE, "body": None},
    {**RESOLVE, "components": {"Checkout API": "operational"}},
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=str)
async def test_malformed_payloads_are_refused_before_any_call(
    client: httpx.AsyncClient, payload: Any
) -> None:
    with respx.mock() as mock:  # any request at all would fail: nothing is routed
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


@pytest.mark.parametrize(
    "refs",
    [
        None,
        {},
        {"incident": None},
        {"incident": {}},
        {"incident": {"incident_id": ""}},
        {"incident": {"incident_id": 12}},
        {"incident": "p31zjtct2jer"},
        "p31zjtct2jer",
    ],
    ids=str,
)
@pytest.mark.parametrize("base", [UPDATE, RESOLVE], ids=["update", "resolve"])
async def test_no_incident_ref_means_none_was_opened(
    client: httpx.AsyncClient, refs: Any, base: dict[str, Any]
) -> None:
    payload = {**base, "refs": refs}
    if refs is None:
        del payload["refs"]
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable
    assert str(info.value) == NO_INCIDENT


@pytest.mark.parametrize("incident_id", ["../../incidents", "p31 zjt", "a" * 65, "x?y=1"])
async def test_incident_id_cannot_reach_another_path(
    client: httpx.AsyncClient, incident_id: str
) -> None:
    payload = {**RESOLVE, "refs": {"incident": {"incident_id": incident_id}}}
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await sender(client).send(payload, effect_key="k")
        assert mock.calls.call_count == 0
    assert not info.value.retryable


@pytest.mark.parametrize(
    "change",
    [{"status": "resolved"}, {"impact": "maintenance"}, {"component_status": "down"}],
    ids=str,
)
async def test_the_adapter_checks_canonical_values_itself(
    client: httpx.AsyncClient, change: dict[str, str]
) -> None:
    values = {k: v for k, v in OPEN.items() if k != "action"} | change
    with respx.mock() as mock:
        with pytest.raises(AdapterError) as info:
            await make_page(client).open_incident(**values)
        assert mock.calls.call_count == 0
    assert not info.value.retryable


# --- the Sender depends only on the port ---------------------------------------------------


class FakeStatusPage:
    """A second StatusPage (as a Cachet or Instatus adapter would be): records the calls."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.result = result

    def _answer(self, incident_id: str) -> dict[str, Any]:
        return {"incident_id": incident_id} if self.result is None else self.result

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
        self.calls.append(
            (
                "open",
                (),
                {
                    "marker": marker,
                    "name": name,
                    "status": status,
                    "impact": impact,
                    "body": body,
                    "components": list(components),
                    "component_status": component_status,
                },
            )
        )
        return self._answer("cachet-41")

    async def update_incident(
        self,
        incident_id: str,
        *,
        status: str,
        body: str,
        components: Sequence[str],
        component_status: str | None,
    ) -> dict[str, Any]:
        self.calls.append(
            (
                "update",
                (incident_id,),
                {
                    "status": status,
                    "body": body,
                    "components": list(components),
                    "component_status": component_status,
                },
            )
        )
        return self._answer(incident_id)

    async def resolve_incident(
        self, incident_id: str, *, body: str, components: Sequence[str]
    ) -> dict[str, Any]:
        self.calls.append(
            ("resolve", (incident_id,), {"body": body, "components": list(components)})
        )
        return self._answer(incident_id)


async def test_sender_drives_any_status_page_through_the_port() -> None:
    fake = FakeStatusPage()
    port: StatusPage = fake  # type-checked structurally: no base class, no vendor import
    page = StatusPageSender(port)
    refs = {"incident": {"incident_id": "cachet-41"}}
    with respx.mock() as mock:  # the port is all there is: no HTTP at all
        opened = await page.send(OPEN, effect_key="a")
        updated = await page.send({**UPDATE, "refs": refs}, effect_key="b")
        kept = await page.send({**UPDATE, "refs": refs, "component_status": None}, effect_key="c")
        resolved = await page.send({**RESOLVE, "refs": refs}, effect_key="d")
        assert mock.calls.call_count == 0
    assert opened == Sent(201, {"incident_id": "cachet-41"})
    assert updated == kept == resolved == Sent(200, {"incident_id": "cachet-41"})
    assert fake.calls == [
        ("open", (), {k: v for k, v in OPEN.items() if k != "action"}),
        (
            "update",
            ("cachet-41",),
            {
                "status": "identified",
                "body": UPDATE["body"],
                "components": NAMES,
                "component_status": "major_outage",
            },
        ),
        (
            "update",
            ("cachet-41",),
            {
                "status": "identified",
                "body": UPDATE["body"],
                "components": NAMES,
                "component_status": None,
            },
        ),
        ("resolve", ("cachet-41",), {"body": RESOLVE["body"], "components": NAMES}),
    ]


@pytest.mark.parametrize("result", [{}, {"incident_id": 41}, {"id": "cachet-41"}], ids=str)
async def test_a_port_answer_without_an_incident_id_is_final(result: dict[str, Any]) -> None:
    with pytest.raises(AdapterError) as info:
        await StatusPageSender(FakeStatusPage(result)).send(OPEN, effect_key="k")
    assert not info.value.retryable


def test_canonical_values() -> None:
    assert set(INCIDENT_STATUSES) == {"investigating", "identified", "monitoring", "resolved"}
    assert set(IMPACTS) == {"none", "minor", "major", "critical"}
    assert set(COMPONENT_STATUSES) == {
        "operational",
        "degraded_performance",
        "partial_outage",
        "major_outage",
        "under_maintenance",
    }


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"api_url": "api.statuspage.io"},
        {"api_url": "ftp://api.statuspage.io"},
        {"api_key": ""},
        {"api_key": f"{API_KEY} "},
        {"api_key": f"{API_KEY}\nX-Evil: 1"},
        {"api_key": f"{API_KEY}é"},
        {"page_id": ""},
        {"page_id": "kctb/../h9"},
        {"page_id": "kctbh9vrtdwd?x=1"},
        {"components": {"Checkout API": ""}},
        {"components": {"": "ftgks51sfs2d"}},
        {"requests_per_second": 0},
        {"requests_per_second": -1.0},
        {"requests_per_second": float("nan")},
        {"requests_per_second": float("inf")},
    ],
    ids=str,
)
async def test_bad_configuration_is_refused_without_echo(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="Statuspage") as info:
        make_page(client, **change)
    assert API_KEY not in str(info.value)


# --- secrets ------------------------------------------------------------------------------


def error_text(error: AdapterError, *objects: object) -> str:
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return " ".join([str(error), repr(error), *(repr(o) for o in objects)])


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(401, text=f"invalid credentials: {OAUTH}"),
        httpx.Response(401, json={"error": f"Could not authenticate with {API_KEY}"}),
        httpx.Response(422, json={"message": f"{OAUTH} may not create incidents"}),
        httpx.Response(429, json={"error": f"rate limit for token {API_KEY}"}),
        httpx.Response(420, text=API_KEY),
        httpx.Response(503, json={"errors": [f"upstream refused {API_KEY}"]}),
        httpx.ConnectError(f"connect to {API_URL} with {OAUTH} failed"),
        httpx.ReadTimeout(f"timeout on {INCIDENTS} ({OAUTH})"),
    ],
    ids=["401-text", "401-json", "422", "429", "420", "503", "connect-error", "read-timeout"],
)
@pytest.mark.parametrize("action", ["open", "update"])
async def test_no_secret_leaks_into_errors_or_repr(
    client: httpx.AsyncClient, reply: Any, action: str
) -> None:
    adapter = make_page(client)
    with respx.mock() as mock:
        payload = call_for(action, mock, reply)
        with pytest.raises(AdapterError) as info:
            await StatusPageSender(adapter).send(payload, effect_key="k")
    text = error_text(info.value, adapter, StatusPageSender(adapter)) + str(adapter)
    assert API_KEY not in text


async def test_no_secret_in_log_records_even_at_debug(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "ticketbridge"):
        caplog.set_level(logging.DEBUG, logger=name)
    page = sender(client)
    with respx.mock() as mock:
        mock.get(UNRESOLVED).mock(return_value=httpx.Response(200, json=[]))
        mock.post(INCIDENTS).mock(
            return_value=httpx.Response(201, json=recorded("incident_created.json"))
        )
        mock.patch(INCIDENT).mock(
            side_effect=[
                httpx.Response(200, json=recorded("incident_updated.json")),
                httpx.Response(401, json={"error": f"bad token {API_KEY}"}),
                httpx.ReadTimeout(f"timeout ({OAUTH})"),
            ]
        )
        await page.send(OPEN, effect_key="a")
        await page.send(UPDATE, effect_key="b")
        for _ in range(2):
            with pytest.raises(AdapterError):
                await page.send(RESOLVE, effect_key="c")
    assert any(record.name.startswith("httpx") for record in caplog.records)
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.args)
        assert API_KEY not in repr(record.__dict__)
