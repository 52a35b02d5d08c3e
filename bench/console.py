"""Console benchmark (docs/benchmarks.md, console). A measurement, not a test: it never fails
on a missed target, it reports it.

    .venv/bin/python bench/console.py [--tickets 100000] [--open 10000] [--no-postgresql]

Server time to render the console's Now page and Tickets list with 100,000 tickets in the
store, 10,000 of them open (Urgent ones with three armed timers, the others with two; 5 % of
the open ones breached; the Urgent and High ones paged, their pages sent, 200 dead), seeded
directly through the store's batched writes (``save_tickets``, ``set_timers_many``,
``enqueue_many``), on SQLite and, unless told not to, on PostgreSQL at 127.0.0.1:5432 in a
database of its own that is dropped afterwards.

The app (``create_app``, workers off) answers in process through an ASGI client after an
admin sign-in; the time of each request is the server's (routing, queries, rendering), the
in-process transport adding well under a millisecond. Prints p50/p99 per page against the
150 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import TicketWrite, TimerUpdate
from ticketbridge.adapters.store.schema import outbox, timers
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.app.logging import configure_logging
from ticketbridge.app.policy_file import load_policy
from ticketbridge.app.settings import Settings

TARGET_MS = 150.0
ADMIN_TOKEN = "bench-admin-token-0123456789"
PG_ADMIN = os.environ.get("TICKETBRIDGE_BENCH_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432")
BASE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BATCH = 2000
PRIORITIES = ("urgent", "high", "medium", "low")
PAGES = {
    "Now": "/ui/",
    "Tickets": "/ui/tickets",
    "Tickets, 2nd page": None,  # the first page's "Next page" link
    "Tickets, breached": "/ui/tickets?breached=1",
    "Tickets, search": "/ui/tickets?q=printer",
}


def state_of(i: int, is_open: bool, policy: str) -> dict[str, Any]:
    priority = PRIORITIES[i % 4]
    opened = BASE - timedelta(minutes=i % 600)
    return {
        "source": "freshdesk",
        "ticket_id": str(i),
        "url": f"https://acme.freshdesk.com/a/tickets/{i}",
        "subject": f"{'Printer' if i % 50 == 0 else 'Checkout'} fails for customer {i}",
        "priority": priority,
        "status": ("open" if i % 5 else "pending") if is_open else "closed",
        "status_label": ("Open" if i % 5 else "Pending") if is_open else "Closed",
        "opened_at": opened.isoformat(),
        "last_event_at": opened.isoformat(),
        "policy": policy,
        "incident_open": is_open and priority in ("urgent", "high"),
        "page_generation": 1 if priority in ("urgent", "high") else 0,
        "engagement_breached": is_open and i % 20 == 0,
        "update_reminders": 0,
        "history": [],
        "tags": [],
    }


def seed(store: Store, *, total: int, open_: int, policy: str) -> float:
    """Write ``total`` tickets (the first ``open_`` open) with their timers and pages."""
    started = time.perf_counter()
    for start in range(0, total, BATCH):
        ids = range(start, min(total, start + BATCH))
        states = [TicketWrite("freshdesk", str(i), state_of(i, i < open_, policy)) for i in ids]
        changes: list[TimerUpdate] = []
        effects: list[dict[str, Any]] = []
        for i in ids:
            priority = PRIORITIES[i % 4]
            if i < open_:
                due = BASE.timestamp() + 60 * (i % 240)
                kinds = ["engagement", "customer_update"]
                if priority == "urgent":
                    kinds.append("tier_one")
                changes += [
                    TimerUpdate("freshdesk", str(i), k, due + n * 600, f"rule {k}")
                    for n, k in enumerate(kinds)
                ]
            if priority in ("urgent", "high"):
                effects.append(
                    {
                        "key": f"victorops:freshdesk:{i}:page:1",
                        "target": "victorops",
                        "kind": "page",
                        "source": "freshdesk",
                        "ticket_id": str(i),
                        "payload": {"entity_id": f"freshdesk/acme/ticket/{i}"},
                        "reason": "pages VictorOps",
                    }
                )
        # Oldest first, so the list's newest are the last batch (updated_at per batch).
        at = BASE.timestamp() - 86400 + start
        with store.unit_of_work() as uow:
            uow.save_tickets(states, at=at)
            uow.set_timers_many(changes, at=at)
            uow.enqueue_many(effects, at=at)
    with store.transaction() as conn:  # the pages went out; a few died; 5 % breached
        conn.execute(sa.update(outbox).values(status="sent", attempts=1, last_code=202))
        dead = sa.select(outbox.c.id).order_by(outbox.c.id).limit(200).scalar_subquery()
        conn.execute(
            sa.update(outbox).where(outbox.c.id.in_(dead)).values(status="dead", last_code=400)
        )
        breached = [str(i) for i in range(0, open_, 20)]
        conn.execute(
            sa.update(timers)
            .where(timers.c.kind == "engagement", timers.c.ticket_id.in_(breached))
            .values(status="fired")
        )
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def measure(store: Store, runs: int) -> dict[str, list[float]]:
    settings = Settings(database_url="sqlite:///unused.db", admin_token=ADMIN_TOKEN)
    services = Services(
        settings=settings,
        store=store,
        policy=load_policy(None),
        clock=FakeClock(BASE + timedelta(minutes=30)),
    )
    app = create_app(settings, services=services, start_workers=False)
    timings: dict[str, list[float]] = {name: [] for name in PAGES}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tb.bench") as client:
            login = await client.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
            assert csrf is not None
            signed = await client.post(
                "/ui/login", data={"csrf": csrf.group(1), "token": ADMIN_TOKEN}
            )
            assert signed.status_code == 303, signed.text
            first = (await client.get("/ui/tickets")).text
            nxt = re.search(r'href="(/ui/tickets\?[^"]*after_at[^"]*)"', first)
            assert nxt is not None, "the Tickets page has no next page"
            paths = {**PAGES, "Tickets, 2nd page": nxt.group(1).replace("&amp;", "&")}
            for _ in range(3):  # warm the caches and the template compiler
                for path in paths.values():
                    assert path is not None
                    await client.get(path)
            for _ in range(runs):
                for name, path in paths.items():
                    assert path is not None
                    began = time.perf_counter()
                    answer = await client.get(path)
                    timings[name].append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
    return timings


def report(backend: str, seconds: float, timings: dict[str, list[float]]) -> None:
    print(f"\n{backend}: seeded in {seconds:.1f} s")
    print("| page | p50 ms | p99 ms | target p99 ≤ 150 ms |")
    print("|---|---:|---:|---|")
    for name, values in timings.items():
        p99 = percentile(values, 99)
        verdict = "met" if p99 <= TARGET_MS else f"MISSED ({p99 / TARGET_MS:.1f}x)"
        print(f"| {name} | {percentile(values, 50):.1f} | {p99:.1f} | {verdict} |")


def run(url: str, backend: str, args: argparse.Namespace) -> None:
    store = Store(url, sqlite_synchronous="OFF")
    try:
        store.migrate()
        policy = load_policy(None)
        seconds = seed(store, total=args.tickets, open_=args.open, policy=policy.fingerprint)
        report(backend, seconds, asyncio.run(measure(store, args.runs)))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    configure_logging(level="warning")  # a log line per request would be measured too
    print(f"{args.tickets} tickets, {args.open} open, {args.runs} requests per page")
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'console.db'}", "SQLite", args)
    if args.no_postgresql:
        return
    name = f"tb_bench_console_{os.getpid()}"
    with psycopg.connect(f"{PG_ADMIN}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        run(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "PostgreSQL", args)
    finally:
        with psycopg.connect(f"{PG_ADMIN}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
