"""Hostile clients cannot exhaust a real ``ticketbridge serve``'s memory
or its connections, and stalled requests are let go."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fault.process import TicketbridgeProcess

SLOW_BODIES = 400
IDLE_CONNECTIONS = 500
BODY_BYTES = 1024 * 1024
HUGE_HEADER = 1024 * 1024
FITTING_HEADER = 15 * 1024  # under the default cap of 16 KiB, with the request line
RSS_LIMIT_MB = 50


def rss_mb(pid: int) -> float:
    """The process's resident set, in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def zendesk_head(length: int) -> bytes:
    """A Zendesk webhook's request head with a well-formed signature that is wrong."""
    signature = base64.b64encode(os.urandom(32)).decode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "POST /webhooks/zendesk HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"X-Zendesk-Webhook-Signature: {signature}\r\n"
        f"X-Zendesk-Webhook-Signature-Timestamp: {stamp}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def status_of(port: int, request: bytes, timeout: float) -> int | None:
    """The status code answered to ``request`` on a new connection; None if the connection
    closed (or stayed silent for ``timeout`` s) without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def hold_slow_body(port: int, body: bytes) -> asyncio.StreamWriter | None:
    """Headers and all of a 1 MiB body but its last byte, then silence."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(zendesk_head(len(body)) + body[:-1])
        await asyncio.wait_for(writer.drain(), 20)
    except (OSError, TimeoutError):
        return None
    return writer


async def attack(
    server: TicketbridgeProcess, samples: list[float]
) -> tuple[int | None, int | None]:
    """Idle connections, slow bodies and a huge header at once; returns the header's status
    and /healthz's, asked while all of it is held."""
    pid, port = server.pid, server.port
    assert pid is not None
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    idle = [(await asyncio.open_connection("127.0.0.1", port))[1] for _ in range(IDLE_CONNECTIONS)]
    body = b'{"ticket": "' + b"x" * (BODY_BYTES - 15) + b'"}'
    writers = await asyncio.gather(*(hold_slow_body(port, body) for _ in range(SLOW_BODIES)))
    huge = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * HUGE_HEADER
    header_status = await status_of(port, huge + b"\r\n\r\n", timeout=10)
    fitting = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * FITTING_HEADER
    assert await status_of(port, fitting + b"\r\n\r\n", timeout=10) == 200
    await asyncio.sleep(1.0)  # the server has read what it will read
    health_status = await status_of(port, HEALTHZ, timeout=5)
    stop.set()
    await sampler
    for writer in [*idle, *(w for w in writers if w is not None)]:
        writer.close()
    return header_status, health_status


@pytest.mark.fault
def test_slow_bodies_a_huge_header_and_idle_connections_leave_memory_bounded(
    ticketbridge_process: Callable[..., TicketbridgeProcess], tmp_path: Path
) -> None:
    server = ticketbridge_process(
        DATABASE_URL=f"sqlite:///{tmp_path / 'tb.db'}",
        ZENDESK__WEBHOOK_SECRETS="zendesk-secret",
        LOG_LEVEL="warning",
    )
    server.start()
    server.wait_healthy(timeout=30)
    assert server.pid is not None
    started = time.monotonic()
    before = rss_mb(server.pid)
    samples: list[float] = []
    header_status, health_status = asyncio.run(asyncio.wait_for(attack(server, samples), 50))
    growth = max(samples) - before
    print(
        f"RSS growth {growth:.0f} MB < {RSS_LIMIT_MB} MB, header refused {header_status}, "
        f"/healthz answers {health_status} ({time.monotonic() - started:.1f} s)"
    )
    assert server.running, server.log_tail()
    assert header_status == 431
    assert health_status == 200
    assert growth < RSS_LIMIT_MB, f"RSS grew {growth:.0f} MB"


async def seconds_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes, limit: float
) -> tuple[float, bytes]:
    """Send ``trickle`` a byte every 0.2 s until the server closes the connection; the
    seconds that took and what the server answered."""
    started = time.monotonic()
    answer = b""
    for byte in trickle:
        if time.monotonic() - started > limit:
            break
        try:
            writer.write(bytes([byte]))
            answer += await asyncio.wait_for(reader.read(4096), 0.2)
        except TimeoutError:
            continue
        except OSError:
            break
        if reader.at_eof():
            break
    return time.monotonic() - started, answer


async def stall(port: int) -> dict[str, tuple[float, bytes]]:
    """A head trickled a byte at a time, and a Freshdesk body that stops halfway."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = zendesk_head(64) + b"x" * 64
    slow_head = await seconds_until_closed(reader, writer, head, limit=8)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"freshdesk_webhook": {"ticket_id": "7", "ticket_status": "Open"}}'
    writer.write(
        b"POST /webhooks/freshdesk HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body[: len(body) // 2]
    )
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(reader.read(), 8)
    except (OSError, TimeoutError):
        answer = b""
    writer.close()
    return {"head": slow_head, "body": (time.monotonic() - started, answer)}


async def over_the_cap(port: int, cap: int) -> tuple[int | None, int | None]:
    """``cap`` idle connections held: a request on one more is answered; /healthz once the
    idle ones have been let go."""
    idle = [(await asyncio.open_connection("127.0.0.1", port))[1] for _ in range(cap)]
    await asyncio.sleep(0.2)
    refused = await status_of(port, HEALTHZ, timeout=5)
    await asyncio.sleep(2.0)  # past the head deadline: the idle connections are closed
    after = await status_of(port, HEALTHZ, timeout=5)
    for writer in idle:
        writer.close()
    return refused, after


@pytest.mark.fault
def test_stalled_heads_and_bodies_are_let_go_and_connections_are_capped(
    ticketbridge_process: Callable[..., TicketbridgeProcess], tmp_path: Path
) -> None:
    database = tmp_path / "tb.db"
    server = ticketbridge_process(
        DATABASE_URL=f"sqlite:///{database}",
        FRESHDESK__WEBHOOK_SECRETS="s",
        ZENDESK__WEBHOOK_SECRETS="zendesk-secret",
        HTTP__HEADER_TIMEOUT_SECONDS="1",
        HTTP__BODY_TIMEOUT_SECONDS="2",
        HTTP__MAX_CONNECTIONS="20",
        LOG_LEVEL="warning",
    )
    server.start()
    server.wait_healthy(timeout=30)
    stalled = asyncio.run(asyncio.wait_for(stall(server.port), 30))
    refused, after = asyncio.run(asyncio.wait_for(over_the_cap(server.port, 20), 30))
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT count(*) FROM inbox").fetchone()[0]
    head_seconds, head_answer = stalled["head"]
    body_seconds, body_answer = stalled["body"]
    print(
        f"slow head closed after {head_seconds:.1f} s ({head_answer[:12]!r}), stalled body after "
        f"{body_seconds:.1f} s ({body_answer[:12]!r}), stored {stored}; "
        f"over the connection cap {refused}, after the idle ones were let go {after}"
    )
    assert head_seconds < 3
    assert head_answer.startswith(b"HTTP/1.1 408")
    assert body_seconds < 4
    assert body_answer.startswith(b"HTTP/1.1 408")
    assert stored == 0
    assert refused == 503
    assert after == 200
    assert server.running, server.log_tail()
