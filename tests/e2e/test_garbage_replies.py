"""Garbage vendor replies each end as an outcome, never stuck pending.

A raw asyncio server on 127.0.0.1 stands in for VictorOps and answers each case's bytes (broken
gzip, invalid JSON, absurd or non-ASCII ``Retry-After``, a reset mid-body, TLS-like bytes, no
answer at all); one case swaps the adapter for one that raises something unexpected. The
dispatcher is stepped with the fake clock until the effect is final (max_attempts 3).

Outcomes decided per case: the VictorOps REST status line is its answer (it acts on the alert
before it answers, and ticketbridge needs nothing from the body), so a 2xx whose body is broken
or cut off is ``sent``; everything else is retried with backoff (never for longer than
MAX_RETRY_AFTER at once) and ends ``dead`` with the reason as ``last_error``.

Figure: ``stuck pending 0; each recorded as an attempt with its reason``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, freshdesk_body
from ticketbridge.adapters.outbound.errors import MAX_RETRY_AFTER, parse_retry_after

MAX_ATTEMPTS = 3
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ALERT_PATH = "/integrations/generic/20131114/alert/KEY/RK"
CLOSE = b"Connection: close\r\n"
# A TLS ClientHello's first bytes: what a port speaking TLS sends to a plain HTTP client.
TLS_HELLO = bytes.fromhex("160301020001") + bytes(range(64))


def reply(status: str, headers: bytes, body: bytes, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {size}\r\n".encode() + headers + CLOSE + b"\r\n"
    ) + body


@dataclass(frozen=True)
class Case:
    name: str
    answer: bytes | None  # None: never answer
    reset: bool  # close with RST after the answer (or instead of one)
    status: str  # the effect's final status
    reason: str  # in last_error ("" for sent)


CASES = [
    Case(
        "200, gzip header, body not gzip",
        reply("200 OK", b"Content-Encoding: gzip\r\n", b"this is not gzip"),
        False,
        "sent",
        "",
    ),
    Case(
        "200, invalid JSON",
        reply("200 OK", b"Content-Type: application/json\r\n", b'{"result": "succ'),
        False,
        "sent",
        "",
    ),
    Case("200, reset mid-body", reply("200 OK", b"", b'{"res', length=400), True, "sent", ""),
    Case(
        "503, gzip header, body not gzip",
        reply("503 Service Unavailable", b"Content-Encoding: gzip\r\n", b"nope"),
        False,
        "dead",
        "HTTP 503",
    ),
    Case(
        "429, Retry-After 1 and 400 zeros",
        reply("429 Too Many Requests", b"Retry-After: 1" + b"0" * 400 + b"\r\n", b""),
        False,
        "dead",
        "HTTP 429",
    ),
    Case(
        "429, Retry-After superscript two",
        reply("429 Too Many Requests", "Retry-After: \u00b2\r\n".encode("latin-1"), b""),
        False,
        "dead",
        "HTTP 429",
    ),
    Case(
        "429, Retry-After Arabic-Indic 120",
        reply("429 Too Many Requests", "Retry-After: \u0661\u0662\u0660\r\n".encode(), b""),
        False,
        "dead",
        "HTTP 429",
    ),
    Case("reset before any answer", None, True, "dead", "unreachable"),
    Case("TLS-like garbage", TLS_HELLO, True, "dead", "unreachable"),
    Case("no answer at all", None, False, "dead", "timed out"),
]


class GarbageServer:
    """Answers every request with ``case``'s bytes, then closes (RST when ``reset``)."""

    def __init__(self) -> None:
        self.case: Case = CASES[0]
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        case = self.case
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests += 1
            if case.answer is None and not case.reset:
                await asyncio.sleep(30)  # the dispatcher's deadline ends the call first
            if case.answer is not None:
                writer.write(case.answer)
                await writer.drain()
            if case.reset:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def garbage_server() -> AsyncIterator[GarbageServer]:
    garbage = GarbageServer()
    server = await asyncio.start_server(garbage.handle, "127.0.0.1", 0)
    garbage.port = server.sockets[0].getsockname()[1]
    try:
        yield garbage
    finally:
        server.close()
        await server.wait_closed()


class Unexpected:
    """An adapter whose response handling raises something no adapter classified."""

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Any:
        raise KeyError("incidentNumber")


async def listing(h: Any, state: str) -> list[dict[str, Any]]:
    response = await h.client.get("/v1/effects", params={"state": state}, headers=AUTH)
    assert response.status_code == 200, response.text
    effects: list[dict[str, Any]] = response.json()["effects"]
    return effects


async def run_until_final(h: Any, clock: Any, ticket: int) -> dict[str, Any]:
    """Step the dispatcher, an hour and a second apart, until the page is final."""
    effect: dict[str, Any] = {}
    for _ in range(MAX_ATTEMPTS + 1):
        await h.dispatcher.run_once()
        effect = (await h.ticket(ticket))["effects"][0]
        if effect["status"] in ("sent", "dead", "skipped"):
            break
        assert effect["attempts"] >= 1, effect  # each failure counted at once
        clock.advance(MAX_RETRY_AFTER + 1)
    return effect


async def test_every_garbage_reply_ends_sent_or_dead_as_an_attempt_with_its_reason(
    harness_factory: Any, clock: Any
) -> None:
    rows: list[tuple[str, dict[str, Any]]] = []
    async with garbage_server() as server:
        dispatch = {
            "backoff_initial": 1.0,
            "backoff_max": 60.0,
            "max_attempts": MAX_ATTEMPTS,
            # A short lease makes the delivery deadline short (0.7 of it): "no answer" ends soon.
            "lease_seconds": 1.0,
        }
        vo = {"rest_url": f"http://127.0.0.1:{server.port}{ALERT_PATH}"}
        async with harness_factory(dispatch=dispatch, victorops=vo) as h:
            for ticket, case in enumerate(CASES, start=2601):
                server.case = case
                assert (await h.post_freshdesk(freshdesk_body(ticket))).status_code == 202
                rows.append((case.name, await run_until_final(h, clock, ticket)))
            h.services.senders["victorops"] = Unexpected()
            assert (await h.post_freshdesk(freshdesk_body(2700))).status_code == 202
            rows.append(("adapter raises KeyError", await run_until_final(h, clock, 2700)))
            dead_listed = {e["id"]: e for e in await listing(h, "dead")}
            open_left = await listing(h, "pending") + await listing(h, "retrying")

    expected = [(c.status, c.reason) for c in CASES] + [("dead", "call failed: KeyError")]
    print()
    for (name, effect), (status, _) in zip(rows, expected, strict=True):
        print(
            f"  {name:<36} {effect['status']:<5} attempts {effect['attempts']} "
            f"(expected {status}); last_error {effect['last_error']!r}"
        )
    stuck = [e for e in open_left if e["attempts"] == 0]
    unrecorded = [
        name for name, effect in rows if effect["status"] == "dead" and not effect["last_error"]
    ]
    print(
        f"stuck pending {len(stuck)}; "
        + (
            "each recorded as an attempt with its reason"
            if not unrecorded
            else f"without a reason: {unrecorded}"
        )
    )
    assert not open_left, open_left
    for (name, effect), (status, reason) in zip(rows, expected, strict=True):
        assert effect["status"] == status, (name, effect)
        if status == "dead":
            assert effect["attempts"] == MAX_ATTEMPTS, (name, effect)
            assert reason in effect["last_error"], (name, effect)
            assert "127.0.0.1" not in effect["last_error"], (name, effect)
            assert effect["id"] in dead_listed, (name, sorted(dead_listed))
        else:
            assert (effect["attempts"], effect["last_response_code"]) == (1, 200), (name, effect)
    assert server.requests == sum(MAX_ATTEMPTS if c.status == "dead" else 1 for c in CASES), (
        server.requests
    )


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 007 ", 7.0),
        ("1" + "0" * 400, MAX_RETRY_AFTER),
        ("99999999", MAX_RETRY_AFTER),
        ("\u00b2", None),
        ("\u0661\u0662\u0660", None),
        ("12.5", None),
        ("-5", None),
        ("", None),
        ("soon", None),
        ("Thu, 26 Nov 2026 12:02:00 GMT", 120.0),
        ("Thu, 26 Nov 2126 12:02:00 GMT", MAX_RETRY_AFTER),
        ("Thu, 26 Nov 2025 12:02:00 GMT", 0.0),
        ("Thu, 26 Nov 99999 12:02:00 GMT", None),
    ],
)
def test_retry_after_takes_ascii_seconds_or_a_date_capped_and_nothing_else(
    value: str, seconds: float | None
) -> None:
    assert parse_retry_after(value, now=NOW) == seconds
