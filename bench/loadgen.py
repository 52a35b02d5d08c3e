"""Fallback closed-loop load generator (used only when ``wrk`` is unavailable).

``--connections`` asyncio workers, each with its own keep-alive connection, post unique
Freshdesk tickets (ids ``base + 1, 2, ...``) for ``--seconds`` and print the same
``WRK_JSON {...}`` summary line as bench/unique_tickets.lua. Runs in its own process so it
does not share a core's event loop with the server under test.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8090/webhooks/freshdesk \
        --seconds 10 --connections 32 --base 2000000000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import httpx

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer benchsecret"}


def body(ticket: int) -> bytes:
    inner = {
        "triggered_event": "{ticket_action:created}",
        "ticket_id": str(ticket),
        "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket}",
        "ticket_subject": "bench",
        "ticket_status": "Open",
        "ticket_priority": "Urgent",
    }
    return json.dumps({"freshdesk_webhook": inner}).encode()


async def run(url: str, seconds: float, connections: int, base: int) -> dict[str, int]:
    ids = itertools.count(base + 1)
    latencies: list[int] = []
    counts = {"non2xx": 0, "errors": 0}
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=5.0) as client:
            while time.monotonic() < deadline:
                started = time.monotonic_ns()
                try:
                    response = await client.post(url, content=body(next(ids)), headers=HEADERS)
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                latencies.append(time.monotonic_ns() - started)
                if not 200 <= response.status_code < 300:
                    counts["non2xx"] += 1

    started = time.monotonic_ns()
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(connections))), timeout=seconds + 10
    )
    elapsed = time.monotonic_ns() - started
    latencies.sort()

    def pct(p: float) -> int:
        if not latencies:
            return 0
        return latencies[min(len(latencies) - 1, max(0, round(p / 100 * len(latencies)) - 1))]

    return {
        "requests": len(latencies),
        "duration_us": elapsed // 1000,
        "non2xx": counts["non2xx"],
        "connect": 0,
        "read": counts["errors"],
        "write": 0,
        "timeout": 0,
        "p50_us": pct(50) // 1000,
        "p99_us": pct(99) // 1000,
        "max_us": (latencies[-1] if latencies else 0) // 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--base", type=int, default=1_000_000_000)
    args = parser.parse_args()
    summary = asyncio.run(run(args.url, args.seconds, args.connections, args.base))
    print("WRK_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
