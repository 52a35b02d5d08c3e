"""Zendesk and Standard Webhooks routes through the app: verify, parse, commit, page."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import freshdesk_body
from ticketbridge.adapters.inbound.signatures import (
    standard_secret,
    standard_signature,
    zendesk_signature,
)
from ticketbridge.app.clock import FakeClock

ZD_SECRET = "zd-secret-do-not-log"
WH_SECRET = "whsec_" + base64.b64encode(b"generic-secret-do-not-log").decode()
SIGNED = {
    "zendesk": {"webhook_secrets": [ZD_SECRET]},
    "generic": {"webhook_secrets": [WH_SECRET]},
}


def zendesk_body(
    ticket_id: int, *, priority: str = "Urgent", status: str = "Open", event: str = "created"
) -> dict[str, Any]:
    return {
        "zendesk_webhook": {
            "ticket_id": str(ticket_id),
            "ticket_url": f"acme.zendesk.com/agent/tickets/{ticket_id}",
            "ticket_subject": "Checkout fails",
            "ticket_status": status,
            "ticket_priority": priority,
            "ticketbridge_event": event,
        }
    }


def generic_body(ticket_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": "acme-desk",
        "ticket_id": ticket_id,
        "priority": "urgent",
        "status": "open",
        "event": "created",
        "domain": "acme",
        "subject": "Checkout fails",
        **extra,
    }


def zendesk_headers(
    raw: bytes, clock: FakeClock, *, secret: str = ZD_SECRET, skew: float = 0
) -> dict[str, str]:
    ts = (clock.now() + timedelta(seconds=skew)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "content-type": "application/json",
        "x-zendesk-webhook-signature": zendesk_signature(secret.encode(), ts, raw),
        "x-zendesk-webhook-signature-timestamp": ts,
    }


def standard_headers(
    raw: bytes, clock: FakeClock, msg_id: str, *, secret: str = WH_SECRET
) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()))
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": standard_signature(standard_secret(secret), msg_id, ts, raw),
    }


def rows(h: Any) -> tuple[int, ...]:
    return tuple(h.services.store.count(t) for t in ("inbox", "tickets", "timeline", "outbox"))


@pytest.fixture
def vo() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        yield mock


def sent(vo: respx.MockRouter) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in vo.routes[0].calls]


async def test_signed_zendesk_urgent_ticket_pages_victorops(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    raw = json.dumps(zendesk_body(11)).encode()
    async with harness_factory(**SIGNED) as h:
        response = await h.client.post(
            "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw, clock)
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"outcome": "accepted", "ticket_id": "11", "effects": 1}
        assert await h.dispatcher.drain() == 1
    (body,) = sent(vo)
    assert body["message_type"] == "CRITICAL"
    assert body["entity_id"] == "zendesk/acme/ticket/11"
    assert body["entity_display_name"] == "[Urgent] Zendesk #11: Checkout fails"


async def test_generic_signed_ticket_pages_and_a_redelivery_is_a_duplicate(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    raw = json.dumps(generic_body("T-1")).encode()
    headers = standard_headers(raw, clock, "msg_1")
    async with harness_factory(**SIGNED) as h:
        first = await h.client.post("/webhooks/generic", content=raw, headers=headers)
        again = await h.client.post("/webhooks/generic", content=raw, headers=headers)
        assert [first.status_code, again.status_code] == [202, 200]
        await h.dispatcher.drain()
        view = await h.ticket("T-1", source="acme-desk")
    (body,) = sent(vo)
    assert body["entity_id"] == "acme-desk/acme/ticket/T-1"
    assert view["state"]["incident_open"] is True


async def test_one_scenario_gives_the_same_effects_through_freshdesk_and_zendesk(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    """Conformance: open Urgent, then resolve; both sources page once and recover once."""
    async with harness_factory(**SIGNED) as h:
        await h.post_freshdesk(freshdesk_body(7, priority="Urgent"))
        await h.post_freshdesk(
            freshdesk_body(
                7, priority="Urgent", status="Resolved", triggered="{status:{from:2,to:4}}"
            )
        )
        for body in (zendesk_body(7), zendesk_body(7, status="Solved", event="status_changed")):
            raw = json.dumps(body).encode()
            response = await h.client.post(
                "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw, clock)
            )
            assert response.status_code == 202
        await h.dispatcher.drain()
        views = [await h.ticket(7, source=s) for s in ("freshdesk", "zendesk")]
    by_source: dict[str, list[str]] = {}
    for body in sent(vo):
        by_source.setdefault(body["entity_id"].split("/")[0], []).append(body["message_type"])
    assert by_source == {"freshdesk": ["CRITICAL", "RECOVERY"], "zendesk": ["CRITICAL", "RECOVERY"]}
    effects = [[(e["target"], e["kind"], e["status"]) for e in v["effects"]] for v in views]
    assert effects[0] == effects[1]
    assert views[0]["state"]["status"] == views[1]["state"]["status"] == "resolved"


@pytest.mark.parametrize(
    "case", ["unsigned", "wrong-secret", "301s-old", "tampered-body", "no-secrets-configured"]
)
async def test_zendesk_refusals_are_401_and_store_nothing(
    harness_factory: Any, clock: FakeClock, case: str
) -> None:
    raw = json.dumps(zendesk_body(3)).encode()
    headers = zendesk_headers(raw, clock)
    settings: dict[str, Any] = dict(SIGNED)
    if case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case == "wrong-secret":
        headers = zendesk_headers(raw, clock, secret="guess")
    elif case == "301s-old":
        headers = zendesk_headers(raw, clock, skew=-301)
    elif case == "tampered-body":
        raw = raw.replace(b"Urgent", b"Low")
    else:
        settings = {}
    async with harness_factory(**settings) as h:
        response = await h.client.post("/webhooks/zendesk", content=raw, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
        assert ZD_SECRET not in response.text
        assert rows(h) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "signature",
    ["v1", "v1,!!!", "v1,\u00ff\u00fe", "v1," + "A" * 65536, None],
    ids=["no-comma", "bad-base64", "non-ascii", "64KiB", "missing"],
)
async def test_generic_malformed_signatures_are_401_and_store_nothing(
    harness_factory: Any, clock: FakeClock, signature: str | None
) -> None:
    raw = json.dumps(generic_body("T-2")).encode()
    headers = standard_headers(raw, clock, "msg_2")
    del headers["webhook-signature"]
    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    if signature is not None:
        raw_headers.append((b"webhook-signature", signature.encode("latin-1")))
    async with harness_factory(**SIGNED) as h:
        response = await h.client.post("/webhooks/generic", content=raw, headers=raw_headers)
        assert response.status_code == 401
        assert rows(h) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps(generic_body("T-3", source="freshdesk")).encode(), 422, "reserved"),
        (json.dumps(generic_body("T-3", priority="p1")).encode(), 422, "priority"),
        (json.dumps(generic_body("a/b")).encode(), 422, "ticket_id"),
    ],
)
async def test_generic_signed_but_bad_body_is_4xx(
    harness_factory: Any, clock: FakeClock, body: bytes, status: int, message: str
) -> None:
    async with harness_factory(**SIGNED) as h:
        response = await h.client.post(
            "/webhooks/generic", content=body, headers=standard_headers(body, clock, "msg_3")
        )
        assert response.status_code == status
        assert message in response.json()["error"]
        assert rows(h) == (0, 0, 0, 0)


async def test_no_signing_secret_appears_in_logs_or_answers(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    from structlog.testing import capture_logs

    raw_zd = json.dumps(zendesk_body(21)).encode()
    raw_wh = json.dumps(generic_body("T-21")).encode()
    outputs: list[str] = []
    with capture_logs() as logs:
        async with harness_factory(**SIGNED) as h:
            for headers in (
                zendesk_headers(raw_zd, clock),
                zendesk_headers(raw_zd, clock, secret="x"),
            ):
                outputs.append(
                    (await h.client.post("/webhooks/zendesk", content=raw_zd, headers=headers)).text
                )
            for headers in (
                standard_headers(raw_wh, clock, "msg_21"),
                standard_headers(
                    raw_wh, clock, "msg_22", secret="whsec_" + base64.b64encode(b"x").decode()
                ),
            ):
                outputs.append(
                    (await h.client.post("/webhooks/generic", content=raw_wh, headers=headers)).text
                )
            await h.dispatcher.drain()
            outputs.append(json.dumps(await h.ticket(21, source="zendesk")))
            outputs.append(repr(h.services.settings))
    assert [json.loads(o).get("error") for o in outputs[:4]] == [
        None,
        "unauthorized",
        None,
        "unauthorized",
    ]
    blob = "\n".join(outputs + [json.dumps(entry, default=str) for entry in logs])
    raw_generic = base64.b64decode(WH_SECRET.removeprefix("whsec_"))
    for secret in (ZD_SECRET, WH_SECRET, raw_generic.decode()):
        assert secret not in blob
