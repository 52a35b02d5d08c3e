"""Signed replays are refused and ids are read as helpdesks write them.

A captured Zendesk request sent again inside its 300 s window, with a fresh (unsigned)
``X-Zendesk-Webhook-Invocation-Id``, must not reopen the ticket it came from; neither may an
old signed request that arrives after a newer one. Standard Webhooks signs its ``webhook-id``:
a fresh id breaks the signature, the same id is a duplicate. Digits outside ASCII ("²", "①",
"١٢٣") in a ticket id are a 422 naming the field on every source, never a 500 and never a
ticket 123.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import ADMIN_TOKEN, freshdesk_body
from tests.e2e.test_signed_sources import (
    SIGNED,
    generic_body,
    rows,
    standard_headers,
    zendesk_body,
    zendesk_headers,
)
from ticketbridge.app.clock import FakeClock

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def vo() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        yield mock


def signed_at(clock: FakeClock, seconds: float) -> FakeClock:
    """A clock for signing a request ``seconds`` after ``clock``'s now."""
    return FakeClock(clock.now() + timedelta(seconds=seconds))


async def pages(h: Any, source: str, ticket: str) -> list[str]:
    """The keys of the ticket's VictorOps page effects in the outbox."""
    view = await h.ticket(ticket, source=source)
    return [e["key"] for e in view["effects"] if e["kind"] == "page"]


@pytest.mark.parametrize("update_time", [False, True], ids=["no-update-time", "update-time"])
async def test_a_zendesk_request_replayed_with_a_fresh_invocation_id_does_not_reopen_the_ticket(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter, update_time: bool
) -> None:
    opened, solved = zendesk_body(41), zendesk_body(41, status="Solved", event="status_changed")
    if update_time:
        opened["zendesk_webhook"]["ticket_updated_at"] = "2026-11-26T11:59:00Z"
        solved["zendesk_webhook"]["ticket_updated_at"] = "2026-11-26T12:00:30Z"
    raw_open, raw_solved = json.dumps(opened).encode(), json.dumps(solved).encode()
    captured = {**zendesk_headers(raw_open, clock), "x-zendesk-webhook-invocation-id": "inv-1"}
    async with harness_factory(**SIGNED) as h:
        first = await h.client.post("/webhooks/zendesk", content=raw_open, headers=captured)
        await h.dispatcher.drain()
        clock.advance(60)
        headers = {**zendesk_headers(raw_solved, clock), "x-zendesk-webhook-invocation-id": "inv-2"}
        second = await h.client.post("/webhooks/zendesk", content=raw_solved, headers=headers)
        await h.dispatcher.drain()
        clock.advance(60)  # 120 s after the captured request was signed: inside the window
        replayed = {**captured, "x-zendesk-webhook-invocation-id": "inv-3"}
        replay = await h.client.post("/webhooks/zendesk", content=raw_open, headers=replayed)
        await h.dispatcher.drain()
        keys = await pages(h, "zendesk", "41")
        view = await h.ticket(41, source="zendesk")
    assert [first.status_code, second.status_code] == [202, 202]
    assert replay.status_code in (200, 202)
    assert replay.json()["outcome"] in ("duplicate", "stale")
    assert replay.json()["effects"] == 0
    print(f"re-pages {len(keys) - 1}")
    assert keys == ["victorops:zendesk/41:page:1"]
    assert view["state"]["status"] == "resolved"
    assert view["state"]["incident_open"] is False


async def test_an_older_signed_zendesk_request_arriving_after_a_newer_one_is_stale(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    """No ``ticket_updated_at`` in the bodies: the signed times order the events."""
    raw_open = json.dumps(zendesk_body(42)).encode()
    raw_update = json.dumps(zendesk_body(42, event="updated")).encode()
    raw_solved = json.dumps(zendesk_body(42, status="Solved", event="status_changed")).encode()
    async with harness_factory(**SIGNED) as h:
        answers = []
        # Signed at +0 s, +60 s and +30 s; delivered in that order, at +90 s.
        clock_at = {raw_open: 0, raw_solved: 60, raw_update: 30}
        for raw in (raw_open, raw_solved, raw_update):
            headers = zendesk_headers(raw, signed_at(clock, clock_at[raw]))
            if raw is raw_update:
                clock.advance(90)
            answers.append(await h.client.post("/webhooks/zendesk", content=raw, headers=headers))
            await h.dispatcher.drain()
        keys = await pages(h, "zendesk", "42")
    assert [a.json()["outcome"] for a in answers] == ["accepted", "accepted", "stale"]
    print(f"re-pages {len(keys) - 1}")
    assert keys == ["victorops:zendesk/42:page:1"]


async def test_standard_webhooks_replays_fail_the_signature_or_are_duplicates_or_stale(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    raw_open = json.dumps(generic_body("T-41")).encode()
    raw_solved = json.dumps(generic_body("T-41", status="resolved", event="status_changed"))
    raw_update = json.dumps(generic_body("T-41", event="updated")).encode()
    captured = standard_headers(raw_open, clock, "msg_open")
    async with harness_factory(**SIGNED) as h:
        statuses = []
        post = h.client.post
        statuses.append(await post("/webhooks/generic", content=raw_open, headers=captured))
        await h.dispatcher.drain()
        solved_headers = standard_headers(raw_solved.encode(), signed_at(clock, 60), "msg_solved")
        statuses.append(await post("/webhooks/generic", content=raw_solved, headers=solved_headers))
        await h.dispatcher.drain()
        before = rows(h)
        fresh_id = {**captured, "webhook-id": "msg_replay"}  # the id is signed: 401
        statuses.append(await post("/webhooks/generic", content=raw_open, headers=fresh_id))
        assert rows(h) == before
        statuses.append(await post("/webhooks/generic", content=raw_open, headers=captured))
        # A different message signed at +30 s, delivered after the one signed at +60 s.
        late = standard_headers(raw_update, signed_at(clock, 30), "msg_update")
        clock.advance(90)
        statuses.append(await post("/webhooks/generic", content=raw_update, headers=late))
        await h.dispatcher.drain()
        keys = await pages(h, "acme-desk", "T-41")
    assert [r.status_code for r in statuses] == [202, 202, 401, 200, 202]
    assert [r.json().get("outcome") for r in statuses[3:]] == ["duplicate", "stale"]
    print(f"re-pages {len(keys) - 1}")
    assert keys == ["victorops:acme-desk/T-41:page:1"]


UNICODE_DIGITS = ["²", "①", "١٢٣"]
FIELDS = {
    "freshdesk": "freshdesk_webhook.ticket_id",
    "zendesk": "zendesk_webhook.ticket_id",
    "generic": "ticket_id",
}


def request_for(source: str, ticket_id: str, clock: FakeClock) -> tuple[bytes, dict[str, Any]]:
    if source == "freshdesk":
        raw = json.dumps(freshdesk_body(ticket_id), ensure_ascii=False).encode()
        return raw, {"content-type": "application/json"}
    if source == "zendesk":
        body = zendesk_body(0)
        body["zendesk_webhook"]["ticket_id"] = ticket_id
        raw = json.dumps(body, ensure_ascii=False).encode()
        return raw, zendesk_headers(raw, clock)
    raw = json.dumps(generic_body(ticket_id), ensure_ascii=False).encode()
    return raw, standard_headers(raw, clock, f"msg_{ticket_id.encode().hex()}")


async def test_unicode_digits_in_ticket_ids_are_a_422_naming_the_field_on_every_source(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    answers: list[tuple[str, int, str]] = []
    async with harness_factory(**SIGNED) as h:
        for source in FIELDS:
            for ticket_id in UNICODE_DIGITS:
                raw, headers = request_for(source, ticket_id, clock)
                if source == "freshdesk":
                    response = await h.post_freshdesk(raw)
                else:
                    response = await h.client.post(
                        f"/webhooks/{source}", content=raw, headers=headers
                    )
                answers.append((source, response.status_code, response.json().get("error", "")))
        stored = rows(h)
        renumbered = 0
        for source in ("freshdesk", "zendesk", "acme-desk"):
            for number in ("2", "1", "123"):
                found = await h.client.get(f"/v1/tickets/{source}/{number}", headers=ADMIN)
                renumbered += found.status_code == 200
    codes = sorted({status for _, status, _ in answers})
    server_errors = sum(status >= 500 for _, status, _ in answers)
    print(f"{', '.join(map(str, codes))}, 5xx {server_errors}, silently renumbered {renumbered}")
    assert codes == [422]
    for source, _, error in answers:
        assert error.startswith(FIELDS[source] + ":"), error
    assert stored == (0, 0, 0, 0)
    assert renumbered == 0
