"""Bad input is a 4xx that says what is wrong, stores nothing, and is never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import WEBHOOK_SECRET, freshdesk_body

GOOD = json.dumps(freshdesk_body(77)).encode()


def rows(h: Any) -> tuple[int, int, int, int]:
    store = h.services.store
    return tuple(store.count(t) for t in ("inbox", "tickets", "timeline", "outbox"))  # type: ignore[return-value]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic " + base64.b64encode(b"freshdesk:wrong").decode()},
        {"authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"authorization": "Basic !!!not-base64!!!"},
        {"authorization": "Bearer wrong"},
        {"authorization": "Bearer "},
        {"authorization": "Basic " + base64.b64encode(b"freshdesk:").decode()},
        {"authorization": "Digest " + WEBHOOK_SECRET},
        {"authorization": "Bearer " + "x" * 65536},
    ],
    ids=[
        "missing",
        "wrong-password",
        "no-colon",
        "bad-base64",
        "wrong-bearer",
        "empty-bearer",
        "empty-password",
        "other-scheme",
        "64KiB",
    ],
)
async def test_wrong_or_missing_credentials_are_401_without_detail(
    harness_factory: Any, headers: dict[str, str]
) -> None:
    async with harness_factory() as h:
        response = await h.client.post(
            "/webhooks/freshdesk",
            content=GOOD,
            headers={"content-type": "application/json", **headers},
        )
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
        assert rows(h) == (0, 0, 0, 0)


async def test_non_ascii_authorization_header_is_401(harness_factory: Any) -> None:
    async with harness_factory() as h:
        response = await h.client.post(
            "/webhooks/freshdesk",
            content=GOOD,
            headers=[
                (b"content-type", b"application/json"),
                (b"authorization", b"Bearer \xff\xfe"),
            ],
        )
        assert response.status_code == 401


async def test_every_configured_secret_is_accepted_for_rotation(harness_factory: Any) -> None:
    async with harness_factory() as h:
        first = await h.post_freshdesk(freshdesk_body(1), secret=WEBHOOK_SECRET)
        second = await h.post_freshdesk(freshdesk_body(2), secret="rotated-second-secret")
        bearer = await h.client.post(
            "/webhooks/freshdesk",
            content=json.dumps(freshdesk_body(3)).encode(),
            headers={
                "content-type": "application/json",
                "authorization": "Bearer " + WEBHOOK_SECRET,
            },
        )
    assert [r.status_code for r in (first, second, bearer)] == [202, 202, 202]


async def test_no_configured_secret_refuses_everything(harness_factory: Any) -> None:
    async with harness_factory(freshdesk={"webhook_secrets": []}) as h:
        response = await h.post_freshdesk(freshdesk_body(1), secret="")
        assert response.status_code == 401
        assert rows(h) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "body is not valid JSON"),
        (b"", "application/json", 400, "body is not valid JSON"),
        (b"\xff\xfe\x00", "application/json", 400, "body is not valid JSON"),
        (b'{"a": NaN}', "application/json", 400, "NaN is not allowed"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 400, "body is not valid JSON"),
        (
            b'{"freshdesk_webhook": {"ticket_id": ' + b"9" * 5000 + b"}}",
            "application/json",
            400,
            "body is not valid JSON",
        ),
        (
            b'{"freshdesk_webhook": {"ticket_id": "1", "ticket_priority": "Low", '
            b'"ticket_status": "Open", "ticket_subject": "\\ud800"}}',
            "application/json",
            400,
            "unpaired surrogate",
        ),
        (GOOD, "text/plain", 415, "Content-Type must be application/json"),
        (GOOD, "application/x-www-form-urlencoded", 415, "Content-Type must be application/json"),
        (b"[]", "application/json", 422, "freshdesk_webhook: the body must be a JSON object"),
        (b'{"freshdesk_webhook": "x"}', "application/json", 422, "freshdesk_webhook: must be"),
        (
            json.dumps(
                {"freshdesk_webhook": {"ticket_priority": "Urgent", "ticket_status": "Open"}}
            ),
            "application/json",
            422,
            "freshdesk_webhook.ticket_id: is required",
        ),
        (
            json.dumps(freshdesk_body("abc")),
            "application/json",
            422,
            "freshdesk_webhook.ticket_id: must be a ticket number",
        ),
        (
            json.dumps(freshdesk_body(1, priority="Critical")),
            "application/json",
            422,
            "freshdesk_webhook.ticket_priority: unknown priority",
        ),
        (
            json.dumps(freshdesk_body(1, priority="")),
            "application/json",
            422,
            "freshdesk_webhook.ticket_priority: must not be empty",
        ),
        (
            json.dumps(
                {
                    "freshdesk_webhook": {
                        **freshdesk_body(1)["freshdesk_webhook"],
                        "ticket_priority": ["Urgent"],
                    }
                }
            ),
            "application/json",
            422,
            "freshdesk_webhook.ticket_priority: must be a string",
        ),
        (
            json.dumps(
                {
                    "freshdesk_webhook": {
                        **freshdesk_body(1)["freshdesk_webhook"],
                        "ticket_status": None,
                    }
                }
            ),
            "application/json",
            422,
            "freshdesk_webhook.ticket_status: is required",
        ),
        (
            json.dumps(freshdesk_body(1, triggered="{status:")),
            "application/json",
            422,
            "freshdesk_webhook.triggered_event:",
        ),
        (
            json.dumps(freshdesk_body(1, ticket_updated_at="yesterday")),
            "application/json",
            422,
            "freshdesk_webhook.ticket_updated_at: must be an ISO-8601 timestamp",
        ),
        (
            json.dumps(freshdesk_body(1, ticket_url="http://[::1/a/tickets/1")),
            "application/json",
            422,
            "freshdesk_webhook.ticket_url: is not a URL",
        ),
    ],
    ids=[
        "broken-json",
        "empty",
        "binary",
        "nan",
        "deep-nesting",
        "huge-integer",
        "lone-surrogate",
        "text-plain",
        "form",
        "array",
        "wrapper-not-object",
        "no-ticket-id",
        "ticket-id-not-number",
        "unknown-priority",
        "empty-priority",
        "type-confused-priority",
        "null-status",
        "bad-triggered-event",
        "bad-timestamp",
        "unparseable-url",
    ],
)
async def test_bad_bodies_are_4xx_naming_the_problem_and_store_nothing(
    harness_factory: Any, body: bytes | str, content_type: str, status: int, message: str
) -> None:
    raw = body.encode() if isinstance(body, str) else body
    async with harness_factory() as h:
        response = await h.post_freshdesk(raw, headers={"content-type": content_type})
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert rows(h) == (0, 0, 0, 0)


async def test_body_over_the_cap_is_413_by_content_length(harness_factory: Any) -> None:
    async with harness_factory(max_body_bytes=4096) as h:
        big = json.dumps(freshdesk_body(1, ticket_subject="x" * 5000)).encode()
        response = await h.post_freshdesk(big)
        assert response.status_code == 413
        assert rows(h) == (0, 0, 0, 0)


async def test_body_over_the_cap_is_413_while_streaming(harness_factory: Any) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1024

    async with harness_factory(max_body_bytes=4096) as h:
        response = await h.client.post(
            "/webhooks/freshdesk",
            content=chunks(),  # chunked: no Content-Length
            headers={"content-type": "application/json"},
            auth=("freshdesk", WEBHOOK_SECRET),
        )
        assert response.status_code == 413
        assert rows(h) == (0, 0, 0, 0)


async def _post_raw(
    h: Any, messages: list[dict[str, Any]], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, bytes]:
    """POST /webhooks/freshdesk straight through the ASGI app, the request body arriving as
    ``messages`` (``http.request`` chunks, or an ``http.disconnect``)."""
    auth = base64.b64encode(f"freshdesk:{WEBHOOK_SECRET}".encode())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/freshdesk",
        "raw_path": b"/webhooks/freshdesk",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", b"Basic " + auth),
            *extra,
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("tb.test", 80),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await h.app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_body_in_several_chunks_is_read_whole(harness_factory: Any) -> None:
    parts = [GOOD[:10], b"", GOOD[10:40], GOOD[40:]]
    async with harness_factory() as h:
        status, _ = await _post_raw(
            h,
            [{"type": "http.request", "body": p, "more_body": True} for p in parts]
            + [{"type": "http.request", "body": b"", "more_body": False}],
        )
        assert status == 202
        assert rows(h)[0] == 1


async def test_a_client_gone_before_the_body_ended_is_400_and_stores_nothing(
    harness_factory: Any,
) -> None:
    async with harness_factory() as h:
        status, body = await _post_raw(
            h,
            [
                {"type": "http.request", "body": GOOD[:20], "more_body": True},
                {"type": "http.disconnect"},
            ],
        )
        assert status == 400
        assert b"disconnected" in body
        assert rows(h) == (0, 0, 0, 0)


@pytest.mark.parametrize("declared", ["\u00b2".encode("latin-1"), b"1e3", b"-1", b" "])
async def test_a_content_length_that_is_not_ascii_digits_is_400(
    harness_factory: Any, declared: bytes
) -> None:
    async with harness_factory() as h:
        status, body = await _post_raw(
            h,
            [{"type": "http.request", "body": GOOD, "more_body": False}],
            extra=((b"content-length", declared),),
        )
        assert (status, json.loads(body)) == (400, {"error": "invalid Content-Length header"})
        assert rows(h) == (0, 0, 0, 0)
