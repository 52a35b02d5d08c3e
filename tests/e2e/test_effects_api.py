"""Dead letters and replay through the admin API: list, retry once, never twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import ADMIN_TOKEN, freshdesk_body

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def dead_page(h: Any, ticket_id: int) -> dict[str, Any]:
    """Webhook an Urgent ticket and run the dispatcher: VictorOps must be answering 400."""
    await h.post_freshdesk(freshdesk_body(ticket_id))
    await h.dispatcher.drain()
    effect: dict[str, Any] = (await h.ticket(ticket_id))["effects"][0]
    assert effect["status"] == "dead", effect
    return effect


async def retry(h: Any, effect_id: int | str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", AUTH)
    response: httpx.Response = await h.client.post(
        f"/v1/effects/{effect_id}/retry", headers=headers, **kwargs
    )
    return response


async def listing(h: Any, **params: Any) -> dict[str, Any]:
    response = await h.client.get("/v1/effects", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_a_dead_effect_is_listed_replayed_and_sent_once(harness_factory: Any) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            dead = await dead_page(h, 70)
            listed = await listing(h)
            assert listed["state"] == "dead"
            assert listed["next_before_id"] is None
            [item] = listed["effects"]
            assert item == {
                "id": dead["id"],
                "key": dead["key"],
                "target": "victorops",
                "kind": "page",
                "source": "freshdesk",
                "ticket_id": "70",
                "status": "dead",
                "attempts": 1,
                "last_response_code": 400,
                "last_error": dead["last_error"],
                "created_at": dead["created_at"],
                "updated_at": dead["updated_at"],
                "next_attempt_at": None,
            }

            response = await retry(h, dead["id"])
            assert response.status_code == 202, response.text
            replayed = response.json()
            assert (replayed["id"], replayed["status"], replayed["attempts"]) == (
                dead["id"],
                "pending",
                0,
            )
            assert replayed["last_error"] == f"replayed after 1 attempt; was: {dead['last_error']}"
            assert replayed["last_response_code"] == 400  # what it died of, until the next try
            assert replayed["next_attempt_at"] is not None
            assert (await listing(h))["effects"] == []
            assert [e["id"] for e in (await listing(h, state="pending"))["effects"]] == [dead["id"]]

            route.return_value = httpx.Response(200)
            assert await h.dispatcher.drain() == 1
            view = await h.ticket(70)
            sent = (await listing(h, state="sent"))["effects"]
    assert route.call_count == 2  # the 400, then the replay: nothing else
    effect = view["effects"][0]
    assert (effect["status"], effect["attempts"], effect["last_response_code"]) == ("sent", 1, 200)
    assert effect["last_error"] is None
    assert [e["id"] for e in sent] == [dead["id"]]
    [entry] = [e for e in view["timeline"] if e["kind"] == "replayed"]
    assert entry["detail"] == {
        "effect": dead["key"],
        "id": dead["id"],
        "attempts": 1,
        "last_response_code": 400,
        "last_error": dead["last_error"],
        "via": "api",
    }


async def test_a_second_retry_is_409_and_enqueues_nothing(harness_factory: Any) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            dead = await dead_page(h, 71)
            assert (await retry(h, dead["id"])).status_code == 202
            again = await retry(h, dead["id"])
            route.return_value = httpx.Response(200)
            await h.dispatcher.drain()
            after_sent = await retry(h, dead["id"])
            effect = (await h.ticket(71))["effects"][0]
    assert (again.status_code, again.json()) == (
        409,
        {"error": f"effect {dead['id']} is not dead (status pending)"},
    )
    assert (after_sent.status_code, after_sent.json()) == (
        409,
        {"error": f"effect {dead['id']} is not dead (status sent)"},
    )
    assert route.call_count == 2
    assert (effect["status"], effect["attempts"]) == ("sent", 1)


async def test_concurrent_retries_of_one_effect_replay_it_once(harness_factory: Any) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            dead = await dead_page(h, 72)
            answers = await asyncio.gather(*(retry(h, dead["id"]) for _ in range(8)))
            route.return_value = httpx.Response(200)
            await h.dispatcher.drain()
            view = await h.ticket(72)
    assert sorted(a.status_code for a in answers) == [202] + [409] * 7
    assert route.call_count == 2
    assert [e["kind"] for e in view["timeline"]].count("replayed") == 1


async def test_retry_of_an_unknown_effect_is_404(harness_factory: Any) -> None:
    async with harness_factory() as h:
        response = await retry(h, 999)
    assert (response.status_code, response.json()) == (404, {"error": "no effect 999"})


async def test_only_a_successful_retry_wakes_the_dispatcher(
    harness_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[int] = []
    with respx.mock() as mock:
        mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            dead = await dead_page(h, 73)
            monkeypatch.setattr(h.dispatcher, "wake", lambda: woken.append(1))
            assert (await retry(h, 999)).status_code == 404
            assert woken == []
            assert (await retry(h, dead["id"])).status_code == 202
            assert woken == [1]
            assert (await retry(h, dead["id"])).status_code == 409
    assert woken == [1]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN}],
    ids=["none", "wrong", "not-bearer"],
)
async def test_the_admin_token_is_required(harness_factory: Any, headers: dict[str, str]) -> None:
    with respx.mock() as mock:
        mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            dead = await dead_page(h, 74)
            listed = await h.client.get("/v1/effects", headers=headers)
            retried = await retry(h, dead["id"], headers=headers)
            effect = (await h.ticket(74))["effects"][0]
    assert (listed.status_code, listed.json()) == (401, {"error": "unauthorized"})
    assert (retried.status_code, retried.json()) == (401, {"error": "unauthorized"})
    assert effect["status"] == "dead"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/effects?state=lost", "query.state"),
        ("/v1/effects?limit=0", "query.limit"),
        ("/v1/effects?limit=501", "query.limit"),
        ("/v1/effects?limit=many", "query.limit"),
        ("/v1/effects?before_id=0", "query.before_id"),
        ("/v1/effects?before_id=x", "query.before_id"),
    ],
)
async def test_bad_list_parameters_are_422_naming_them(
    harness_factory: Any, path: str, named: str
) -> None:
    async with harness_factory() as h:
        response = await h.client.get(path, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"].startswith(f"{named}: ")


@pytest.mark.parametrize("effect_id", ["abc", "0", "-3"])
async def test_a_bad_effect_id_is_422_naming_it(harness_factory: Any, effect_id: str) -> None:
    async with harness_factory() as h:
        response = await retry(h, effect_id)
    assert response.status_code == 422
    assert response.json()["error"].startswith("path.effect_id: ")


async def test_the_list_pages_newest_first_with_a_cursor(harness_factory: Any) -> None:
    with respx.mock() as mock:
        mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            for ticket_id in range(80, 85):
                await h.post_freshdesk(freshdesk_body(ticket_id))
            await h.dispatcher.drain()
            pages: list[dict[str, Any]] = [await listing(h, limit=2)]
            while pages[-1]["next_before_id"] is not None:
                pages.append(await listing(h, limit=2, before_id=pages[-1]["next_before_id"]))
            everything = await listing(h)
            exact = await listing(h, limit=5)
    ids = [[e["id"] for e in page["effects"]] for page in pages]
    assert [len(page) for page in ids] == [2, 2, 1]
    flat = [i for page in ids for i in page]
    assert flat == sorted(flat, reverse=True)
    assert flat == [e["id"] for e in everything["effects"]]
    assert {e["ticket_id"] for e in everything["effects"]} == {str(t) for t in range(80, 85)}
    assert [page["next_before_id"] for page in pages] == [ids[0][-1], ids[1][-1], None]
    assert exact["next_before_id"] is None  # exactly a full page: no empty page after it


async def test_dead_letter_after_the_retry_budget_then_replay(
    harness_factory: Any, clock: Any, record_property: Callable[[str, object], None]
) -> None:
    """A dead letter replayed once is delivered once: "1 delivered, 0 duplicates"."""
    outcomes: list[int] = []

    def victorops(request: httpx.Request) -> httpx.Response:
        code = 503 if len(outcomes) < 4 else 200  # down for the whole budget, then back
        outcomes.append(code)
        return httpx.Response(code)

    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(side_effect=victorops)
        async with harness_factory() as h:  # max_attempts=4 in the test settings
            await h.post_freshdesk(freshdesk_body(90))
            for _ in range(10):
                await h.dispatcher.drain()
                clock.advance(120)
            dead = (await h.ticket(90))["effects"][0]
            assert (dead["status"], dead["attempts"]) == ("dead", 4)
            assert (await retry(h, dead["id"])).status_code == 202
            assert (await retry(h, dead["id"])).status_code == 409
            for _ in range(10):  # long after: nothing more goes out
                await h.dispatcher.drain()
                clock.advance(3600)
            effect = (await h.ticket(90))["effects"][0]
    delivered = outcomes.count(200)
    duplicates = delivered - 1 if delivered else 0
    figure = f"dead letter then replay: {delivered} delivered, {duplicates} duplicates"
    print(f"\n{figure}")
    record_property("figure", figure)
    assert route.call_count == 5
    assert outcomes == [503, 503, 503, 503, 200]
    assert (delivered, duplicates) == (1, 0)
    assert (effect["status"], effect["attempts"]) == ("sent", 1)
