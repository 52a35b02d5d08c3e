"""Timer benchmark (docs/reliability.md, timers, at scale). A measurement, not a test: it never
fails on a missed target, it reports it.

    .venv/bin/python bench/timers.py

Everything goes through the real store, rules, scheduler and dispatcher code; nothing is faked
but the vendors (an in-process sender that records when each effect was handed to it, or the
fake VictorOps of tests/fakes on loopback).

0. Prefill: 100,000 pending timers on SQLite, written by ``ingest`` itself (the same rows a
   webhook writes; 1,000 tickets per transaction, ``synchronous=OFF`` only for the prefill):
   10,000 Urgent tickets (3 timers each: Tier-One, engagement, customer update) opened within
   one second, so their Tier-One timers come due within one second T..T+1 s, and 35,000
   Medium/Low tickets (2 timers each) due hours later. The built-in policy. Their pages count
   as delivered long ago (outbox rows marked ``sent``), so only timer work is measured.
1. Due together: the app (``create_app`` with its lifespan: scheduler and dispatcher as the
   service runs them, ``synchronous=FULL``) on a copy, its clock real time shifted so that T
   is 3 s ahead. Lateness = ``fired_at - due_at`` of the 10,000 timers (the timers table), and
   due -> effect handed to the sender; effects created.
2. Catch-up after a restart: a fresh copy, the clock real time shifted to T + 61 s (all 10,000
   overdue, as after a 1-minute outage): time from start until all 10,000 fired (committed)
   and until every effect is delivered.
3. RSS: ``ticketbridge serve`` (a real process, the real clock) on a copy whose 10,000
   Tier-One timers are already overdue, the fake VictorOps bridging by routing key: VmRSS
   once all 10,000 bridges arrived, the peak (VmHWM), and VmRSS after a few seconds at rest.

Prints a markdown table and appends it to bench/results/timers.md (git-ignored); the
service's log goes to bench/results/logs/. Every wait is bounded; the subprocess and the fake
are stopped in ``finally``. About 1-2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fakes / tests.fault helpers are reused, not copied

from tests.fakes.victorops import FakeVictorOps  # noqa: E402
from tests.fault.process import TicketbridgeProcess, service_env  # noqa: E402

from ticketbridge.adapters.inbound.freshdesk import parse_webhook  # noqa: E402
from ticketbridge.adapters.outbound.ports import Sent  # noqa: E402
from ticketbridge.adapters.store.engine import Store  # noqa: E402
from ticketbridge.app.bootstrap import Services  # noqa: E402
from ticketbridge.app.http.app import create_app  # noqa: E402
from ticketbridge.app.logging import configure_logging  # noqa: E402
from ticketbridge.app.policy_file import load_policy  # noqa: E402
from ticketbridge.app.services.ingest import PolicyBook, ingest_in  # noqa: E402
from ticketbridge.app.settings import Settings  # noqa: E402
from ticketbridge.rules import Policy, Priority  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BATCH = 1000  # tickets per prefill transaction
LEAD = 3.0  # seconds between the app's start and T in run 1
OUTAGE = 60.0  # seconds the 10,000 are overdue in run 2 (plus the 1 s they are spread over)
RUN_BOUND = 120.0  # seconds: any one run gives up after this and reports what it saw
STEADY = 5.0  # seconds at rest before the last RSS reading
POLL = 0.02  # seconds between progress reads of the database
TIER_TWO_KEY = "tier2"
P99_TARGET = 1.0
CATCH_UP_TARGET = 10.0
RSS_TARGET_MB = 150.0


class ShiftedClock:
    """Real time, shifted by a constant: it ticks like the wall clock, so lateness is real."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)


@dataclass
class RecordingSender:
    """Takes every effect at once (HTTP 200) and records when it was handed over."""

    clock: ShiftedClock
    sent: list[tuple[str, float]] = field(default_factory=list)

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        self.sent.append((effect_key, self.clock.now().timestamp()))
        return Sent(200, {"incident_number": "1"} if effect_key.startswith("victorops_b") else {})


@dataclass
class Prefilled:
    path: Path
    due_from: float  # T: the first of the 10,000 Tier-One timers
    due_to: float
    tickets: int
    pending: int
    seconds: float


def webhook(ticket_id: int, priority: str) -> bytes:
    return json.dumps(
        {
            "freshdesk_webhook": {
                "triggered_event": "{ticket_action:created}",
                "ticket_id": str(ticket_id),
                "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket_id}",
                "ticket_subject": "timer bench",
                "ticket_status": "Open",
                "ticket_priority": priority,
            }
        }
    ).encode()


def prefill(path: Path, *, due: int, pending: int, policy: Policy, base: datetime) -> Prefilled:
    """Write ``pending`` timers through ``ingest``: ``due`` Urgent tickets opened within one
    second from ``base`` (3 timers each) and Medium/Low ones (2 each) for the rest."""
    urgent_timers = 3
    others = (pending - due * urgent_timers) // 2
    if others < 0 or due * urgent_timers + others * 2 != pending:
        raise SystemExit(f"cannot make exactly {pending} timers with {due} Urgent tickets")
    started = time.perf_counter()
    store = Store(f"sqlite:///{path}", sqlite_synchronous="OFF")
    try:
        store.migrate()
        book = PolicyBook(policy)
        book.remember_current(store, at=base.timestamp())
        plan = [(i + 1, "Urgent", base + timedelta(seconds=i / due)) for i in range(due)]
        plan += [
            (due + j + 1, "Medium" if j % 2 else "Low", base + timedelta(seconds=1 + j / 1e4))
            for j in range(others)
        ]
        for start in range(0, len(plan), BATCH):
            with store.unit_of_work() as uow:
                for ticket_id, priority, opened in plan[start : start + BATCH]:
                    event, key = parse_webhook(webhook(ticket_id, priority))
                    ingest_in(uow, event=event, dedup_key=key, now=opened, policies=book)
        with store.engine.begin() as conn:  # the pages went out long ago
            conn.exec_driver_sql("UPDATE outbox SET status = 'sent', attempts = 1")
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = db.execute("SELECT count(*) FROM timers WHERE status = 'pending'").fetchone()[0]
        lo, hi, n = db.execute(
            "SELECT min(due_at), max(due_at), count(*) FROM timers "
            "WHERE status = 'pending' AND kind = 'tier_one' AND due_at < ?",
            (
                base.timestamp()
                + policy.for_priority(Priority.URGENT).tier_one.within.total_seconds()
                + 2,
            ),
        ).fetchone()
    db.close()
    if count != pending or n != due or hi - lo >= 1.0:
        raise SystemExit(f"prefill wrong: {count} pending, {n} due in [{lo}, {hi}]")
    return Prefilled(path, lo, hi, len(plan), count, time.perf_counter() - started)


def copy_db(snapshot: Path, name: str) -> Path:
    target = snapshot.with_name(name)
    shutil.copyfile(snapshot, target)
    return target


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class AppRun:
    fired: int = 0
    all_fired_s: float | None = None  # from the start of the lifespan, committed
    drained_s: float | None = None  # ... and every effect delivered
    startup_s: float = 0.0
    lateness: list[float] = field(default_factory=list)  # fired_at - due_at (timers table)
    to_sender: list[float] = field(default_factory=list)  # bridge handed over - due_at
    effects: Counter[str] = field(default_factory=Counter)  # created by the timers
    statuses: Counter[str] = field(default_factory=Counter)


def progress(path: Path) -> tuple[int, int]:
    """(timers fired, effects still open), read on a connection of our own."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        fired = db.execute("SELECT count(*) FROM timers WHERE status = 'fired'").fetchone()[0]
        open_ = db.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'retrying')"
        ).fetchone()[0]
    db.close()
    return int(fired), int(open_)


async def run_app(path: Path, *, clock: ShiftedClock, expect: int, policy: Policy) -> AppRun:
    """The app's lifespan (scheduler + dispatcher as in the service) until ``expect`` timers
    fired and the outbox is empty, or RUN_BOUND."""
    settings = Settings.model_validate({"database_url": f"sqlite:///{path}"})
    targets = ("victorops", "victorops_bridge", "freshdesk")
    senders = {target: RecordingSender(clock) for target in targets}
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    services = Services(
        settings=settings,
        store=store,
        policy=policy,
        clock=clock,
        senders=dict(senders),
        readers={},
    )
    app = create_app(settings, services=services)
    result = AppRun()
    start_wall = clock.now().timestamp()
    began = time.monotonic()
    try:
        async with app.router.lifespan_context(app):
            result.startup_s = time.monotonic() - began
            while time.monotonic() - began < RUN_BOUND:
                fired, still_open = await asyncio.to_thread(progress, path)
                elapsed = time.monotonic() - began
                if fired >= expect and result.all_fired_s is None:
                    result.all_fired_s = elapsed
                if fired >= expect and still_open == 0:
                    result.drained_s = elapsed
                    break
                await asyncio.sleep(POLL)
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT ticket_id, due_at, lateness FROM timers WHERE status = 'fired'"
        ).fetchall()
        created = db.execute(
            "SELECT kind, status, count(*) FROM outbox WHERE created_at >= ? GROUP BY kind, status",
            (start_wall,),
        ).fetchall()
    db.close()
    result.fired = len(rows)
    result.lateness = [late for _, _, late in rows]
    due_by_ticket = {ticket: due for ticket, due, _ in rows}
    for key, at in senders["victorops_bridge"].sent:
        ticket = key.split(":")[1].rsplit("/", 1)[-1]
        if ticket in due_by_ticket:
            result.to_sender.append(at - due_by_ticket[ticket])
    for kind, status, n in created:
        result.effects[kind] += n
        result.statuses[status] += n
    return result


@dataclass
class ServeRun:
    bridges: int = 0
    doubled: int = 0
    healthy_s: float = 0.0
    fired_s: float | None = None  # from spawn until all timers fired (committed)
    caught_up_s: float | None = None  # from spawn to the last bridge's arrival
    rss_mb: float | None = None
    hwm_mb: float | None = None
    steady_rss_mb: float | None = None


def proc_status_mb(pid: int, field_name: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024  # kB
    return None


def run_serve(path: Path, *, expect: int, workdir: Path) -> ServeRun:
    result = ServeRun()
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "timers-serve.log"
    log_path.unlink(missing_ok=True)
    with FakeVictorOps() as vo:
        server = TicketbridgeProcess(
            env=service_env(
                workdir,
                DATABASE_URL=f"sqlite:///{path}",
                VICTOROPS__REST_URL=vo.rest_url("BENCHKEY", "RK"),
                VICTOROPS__TIER_TWO_ROUTING_KEY=TIER_TWO_KEY,
                LOG_LEVEL="warning",
                LOG_FORMAT="json",
            ),
            log_path=log_path,
        )
        try:
            spawned = time.monotonic()
            server.start()
            result.healthy_s = server.wait_healthy(30.0)
            pid = server.pid
            assert pid is not None
            while time.monotonic() - spawned < RUN_BOUND and vo.request_count < expect:
                if result.fired_s is None and progress(path)[0] >= expect:
                    result.fired_s = time.monotonic() - spawned
                time.sleep(0.1)
            if result.fired_s is None and progress(path)[0] >= expect:
                result.fired_s = time.monotonic() - spawned
            requests = vo.requests
            bridges = [
                r
                for r in requests
                if r.routing_key == TIER_TWO_KEY and (r.entity_id or "").endswith("/bridge")
            ]
            per_entity = Counter(r.entity_id for r in bridges)
            result.bridges = len(per_entity)
            result.doubled = sum(1 for n in per_entity.values() if n > 1)
            if result.bridges >= expect:
                result.caught_up_s = max(r.at for r in bridges) - spawned
            result.rss_mb = proc_status_mb(pid, "VmRSS")
            result.hwm_mb = proc_status_mb(pid, "VmHWM")
            time.sleep(STEADY)  # bounded: at rest, nothing due for half an hour
            result.steady_rss_mb = proc_status_mb(pid, "VmRSS")
        finally:
            server.stop()
    return result


def fmt_s(value: float | None, unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    return "not reached" if value is None else f"{value * scale:.{digits}f} {unit}"


def met(value: float | None, target: float) -> str:
    return "no" if value is None or value != value or value > target else "yes"


def git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=100_000, help="pending timers in all")
    parser.add_argument("--due", type=int, default=10_000, help="of which due within 1 s")
    args = parser.parse_args()
    configure_logging(fmt="json", level="error")  # not the unset-vendor warnings
    policy = load_policy(None)
    tier_one = policy.for_priority(Priority.URGENT).tier_one.within
    began = time.monotonic()
    # T lies 30 s before now, so in run 3 (the real clock) the 10,000 are already overdue
    # while every other timer (engagement at +60 min, Medium/Low at +2 h) is still ahead.
    base = datetime.now(UTC) - tier_one - timedelta(seconds=30)

    with tempfile.TemporaryDirectory(prefix="tb-timers-") as tmp:
        workdir = Path(tmp)
        print(f"prefill: {args.pending:,} pending timers ({args.due:,} due within 1 s) ...")
        snap = prefill(
            workdir / "snapshot.db", due=args.due, pending=args.pending, policy=policy, base=base
        )
        print(
            f"prefill: {snap.tickets:,} tickets, {snap.pending:,} timers in {snap.seconds:.1f} s "
            f"({snap.tickets / snap.seconds:,.0f} tickets/s), "
            f"{snap.path.stat().st_size / 2**20:.0f} MB"
        )

        print("run 1: due together ...")
        clock = ShiftedClock(snap.due_from - LEAD - time.time())
        due = asyncio.run(
            run_app(copy_db(snap.path, "due.db"), clock=clock, expect=args.due, policy=policy)
        )
        print(
            f"run 1: fired {due.fired:,}, lateness p50 {percentile(due.lateness, 50):.3f} s, "
            f"p99 {percentile(due.lateness, 99):.3f} s; effects {dict(due.effects)}"
        )

        print("run 2: catch-up ...")
        clock = ShiftedClock(snap.due_to + OUTAGE - time.time())
        catch = asyncio.run(
            run_app(copy_db(snap.path, "catchup.db"), clock=clock, expect=args.due, policy=policy)
        )
        print(f"run 2: fired {catch.fired:,} in {fmt_s(catch.all_fired_s)}")

        print("run 3: ticketbridge serve ...")
        serve = run_serve(copy_db(snap.path, "serve.db"), expect=args.due, workdir=workdir)
        print(f"run 3: {serve.bridges:,} bridges, RSS {fmt_s(serve.rss_mb, 'MB', digits=0)}")

    n = f"{args.due:,}"
    p50, p99 = percentile(due.lateness, 50), percentile(due.lateness, 99)
    rows = [
        (
            "prefill (through ingest)",
            f"{snap.tickets:,} tickets, {snap.pending:,} timers",
            f"{snap.seconds:.1f} s",
            "",
            "",
        ),
        (
            f"1. {n} due within 1 s: lateness p50 (fired_at - due_at)",
            f"{due.fired:,} fired",
            f"{p50 * 1000:.0f} ms",
            "",
            "",
        ),
        (
            f"1. {n} due within 1 s: lateness p99",
            "",
            f"{p99 * 1000:.0f} ms",
            f"<= {P99_TARGET:g} s",
            met(p99, P99_TARGET),
        ),
        ("1. lateness max", "", f"{max(due.lateness, default=float('nan')) * 1000:.0f} ms", "", ""),
        (
            "1. due -> bridge handed to sender p50 / p99",
            f"{len(due.to_sender):,} bridges",
            f"{percentile(due.to_sender, 50) * 1000:.0f} / "
            f"{percentile(due.to_sender, 99) * 1000:.0f} ms",
            "",
            "",
        ),
        (
            "1. effects created by the timers",
            ", ".join(f"{k} {v:,}" for k, v in sorted(due.effects.items())),
            ", ".join(f"{k} {v:,}" for k, v in sorted(due.statuses.items())),
            "",
            "",
        ),
        (
            f"2. catch-up: {n} overdue by {OUTAGE:.0f} s, start -> all fired (committed)",
            f"{catch.fired:,} fired; app started in {catch.startup_s:.2f} s",
            fmt_s(catch.all_fired_s),
            f"<= {CATCH_UP_TARGET:g} s",
            met(catch.all_fired_s, CATCH_UP_TARGET),
        ),
        (
            "2. ... and every effect delivered",
            ", ".join(f"{k} {v:,}" for k, v in sorted(catch.effects.items())),
            fmt_s(catch.drained_s),
            "",
            "",
        ),
        (
            f"3. `ticketbridge serve`: RSS after catching up {n} bridges",
            f"{serve.bridges:,} bridges, doubled {serve.doubled}",
            fmt_s(serve.rss_mb, "MB", digits=0),
            f"<= {RSS_TARGET_MB:g} MB",
            met(serve.rss_mb, RSS_TARGET_MB),
        ),
        (
            "3. RSS peak (VmHWM) / at rest after 5 s",
            "",
            f"{fmt_s(serve.hwm_mb, 'MB', digits=0)} / {fmt_s(serve.steady_rss_mb, 'MB', digits=0)}",
            f"<= {RSS_TARGET_MB:g} MB",
            met(serve.hwm_mb, RSS_TARGET_MB),
        ),
        (
            f"3. catch-up in the service: spawn -> all {n} fired (committed)",
            f"healthy after {serve.healthy_s:.2f} s",
            fmt_s(serve.fired_s),
            f"<= {CATCH_UP_TARGET:g} s",
            met(serve.fired_s, CATCH_UP_TARGET),
        ),
        (
            "3. spawn -> last bridge at the fake VictorOps (stdlib HTTP server)",
            "",
            fmt_s(serve.caught_up_s),
            "",
            "",
        ),
    ]
    header = ("measure", "count", "figure", "target", "met")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    stamp = dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    context = (
        f"{stamp}, git {git_rev()}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"SQLite synchronous=FULL in runs 1-3; total {time.monotonic() - began:.0f} s"
    )
    table = "\n".join(lines)
    print(f"\n{context}\n\n{table}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "timers.md").open("a", encoding="utf-8") as out:
        out.write(f"## Timers, {context}\n\n{table}\n\n")
    print(f"appended to {RESULTS / 'timers.md'}")


if __name__ == "__main__":
    main()
