"""ticketbridge on PostgreSQL, one replica and two, side by side (issue 5's benchmark).

    .venv/bin/python bench/replicas.py          # or: make bench-replicas

A measurement, not a test: it reports the targets, it never fails on them. One run, all on
127.0.0.1, bounded (about 5 minutes), with the same generator and settings as bench/run.py:

1. Ingest throughput of ``POST /webhooks/freshdesk`` (``wrk``, unique tickets, 2 s warm-up,
   10 s measured) for: the bare FastAPI endpoint; one replica on SQLite (``synchronous=FULL``,
   the default); one replica on PostgreSQL; two replicas on one PostgreSQL database, each
   loaded by its own ``wrk`` with half the connections (what a load balancer would do), the
   two rates summed. Replicas use the database's clock and LISTEN/NOTIFY, as in production.
   The four run in ``ROUNDS`` interleaved rounds (bare, SQLite, PostgreSQL, two replicas,
   then again): each ratio is taken within a round, and the table gives each rate's and each
   ratio's median, so that the host's speed swinging between two measurements (by a third
   within minutes on a shared machine) cannot decide the verdict alone.
2. Webhook-to-VictorOps latency at a steady 100 webhooks/s on PostgreSQL (one replica; and
   two, alternating webhooks between them), against the fake VictorOps recorder.

Targets (issue 5): two replicas on PostgreSQL ≥ one replica on SQLite; p99 ≤ 25 ms.
``TICKETBRIDGE_BENCH_POSTGRESQL_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
names a server where the user may create databases; each phase gets its own, dropped after.
Writes bench/results/replicas.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base

ROUNDS = 3
TARGETS = ("bare", "sqlite", "postgresql", "postgresql x2")

ADMIN_URL = os.environ.get(
    "TICKETBRIDGE_BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    name = f"tb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_replica(
    bench: base.Bench, name: str, database_url: str, rest_url: str | None = None
) -> tuple[base.Service, str]:
    directory = bench.tmp / name
    directory.mkdir()
    env = base.ticketbridge_env(directory, "FULL", rest_url)
    env["TICKETBRIDGE_DATABASE_URL"] = database_url
    port = base.free_port()
    argv = [base.TICKETBRIDGE, "serve", "--host", base.HOST, "--port", str(port)]
    service = bench.start(name, argv, env)
    url = f"http://{base.HOST}:{port}"
    base.wait_ready(service, lambda c: c.get(f"{url}/healthz").status_code == 200)
    return service, f"{url}/webhooks/freshdesk"


def load(wrk: str, url: str, seconds: int, first: int, connections: int) -> dict[str, Any]:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    argv += ["-s", str(base.BENCH / "unique_tickets.lua"), url, "--", str(first)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    found = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    summary: dict[str, Any] = json.loads(found[0].removeprefix("WRK_JSON "))
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def loads(wrk: str, urls: list[str], seconds: int, first: int) -> dict[str, Any]:
    """Load every URL at once, the connections split between them; rates summed."""
    connections = max(1, base.CONNECTIONS // len(urls))
    results: list[dict[str, Any]] = [{} for _ in urls]

    def one(i: int, url: str) -> None:
        results[i] = load(wrk, url, seconds, first + i * 100_000_000, connections)

    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return {
        "rps": sum(r.get("rps", 0.0) for r in results),
        "requests": sum(r.get("requests", 0) for r in results),
        "non2xx": sum(r.get("non2xx", 0) for r in results),
        "per_replica": [round(r.get("rps", 0.0)) for r in results],
    }


def throughput(bench: base.Bench, wrk: str, target: str, round_no: int = 0) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        services: list[base.Service] = []
        urls: list[str] = []
        if target == "bare":
            service, url = base.start_bare(bench)
            services, urls = [service], [url]
        elif target == "sqlite":
            service, url, _db = base.start_ticketbridge(bench, f"tb-sqlite-r{round_no}", "FULL")
            services, urls = [service], [url]
        else:
            replicas = 2 if target == "postgresql x2" else 1
            database = stack.enter_context(pg_database())
            for i in range(replicas):
                service, url = start_replica(bench, f"tb-pg{replicas}-{i}-r{round_no}", database)
                services.append(service)
                urls.append(url)
        try:
            loads(wrk, urls, base.WARMUP_SECONDS, 1_000_000_000)
            window = base.CpuWindow([s.pid for s in services])
            result = loads(wrk, urls, base.THROUGHPUT_SECONDS, 2_000_000_000)
            result["cpu"] = window.result()
        finally:
            for service in services:
                bench.stop(service)
    print(f"[bench] throughput {target}: {result['rps']:.0f} req/s", flush=True)
    return result


def latency(bench: base.Bench, recorder: str, recorder_pid: int, replicas: int) -> dict[str, Any]:
    with pg_database() as database:
        services, urls = [], []
        for i in range(replicas):
            service, url = start_replica(
                bench, f"tb-pg-latency{replicas}-{i}", database, f"{recorder}{base.VO_PATH}"
            )
            services.append(service)
            urls.append(url)
        try:
            if replicas == 1:
                stats = base.latency_run(
                    urls[0],
                    recorder,
                    "victorops",
                    base.webhook_body,
                    base.WEBHOOK_HEADERS,
                    7_000_000_000,
                    [services[0].pid, recorder_pid],
                )
            else:
                stats = alternating_latency(urls, recorder, [s.pid for s in services])
        finally:
            for service in services:
                bench.stop(service)
    print(f"[bench] latency postgresql x{replicas}: p99 {stats.get('p99_ms')} ms", flush=True)
    return stats


def alternating_latency(urls: list[str], recorder: str, pids: list[int]) -> dict[str, Any]:
    """bench/run.py's paced run, webhooks alternating between the replicas."""
    first = 7_500_000_000
    tickets = [str(first + 100_000 + i) for i in range(1, base.LATENCY_COUNT + 1)]
    warm = [str(first + i) for i in range(1, base.LATENCY_WARMUP + 1)]
    targets = itertools.cycle(urls)

    async def paced_split(batch: list[str]) -> dict[str, Any]:
        groups: dict[str, list[str]] = {u: [] for u in urls}
        for ticket in batch:
            groups[next(targets)].append(ticket)
        runs = [
            base.paced(url, group, base.webhook_body, base.WEBHOOK_HEADERS)
            for url, group in groups.items()
        ]
        merged: dict[str, Any] = {}
        rate = base.RATE
        base.RATE = rate // len(urls)  # paced() reads it per request: each replica its share
        try:
            for part in await asyncio.gather(*runs):
                merged.update(part)
        finally:
            base.RATE = rate
        return merged

    asyncio.run(paced_split(warm))
    base.arrivals(recorder, "victorops", warm)
    window = base.CpuWindow(pids)
    disk = base.DiskProbe()
    sends = asyncio.run(paced_split(tickets))
    got = base.arrivals(recorder, "victorops", tickets)
    cpu = window.result()
    fsync = disk.result()
    latencies = [
        (min(got[t]) - sends[t][1]) / 1e6 if t in got and t in sends else float("inf")
        for t in tickets
    ]
    statuses: dict[str, int] = {}
    for *_times, status in sends.values():
        key = "unanswered" if status is None else ("error/timeout" if status == 0 else str(status))
        statuses[key] = statuses.get(key, 0) + 1
    # Pages of acknowledged webhooks that never arrived (within the grace period).
    acked = {t for t, (*_times, status) in sends.items() if status in (200, 202)}
    return {
        "sent": len(sends),
        "answers": statuses,
        "acked_not_delivered": sorted(acked - got.keys()),
        "delivered": sum(1 for v in latencies if v != float("inf")),
        "p50_ms": base.percentile(latencies, 50),
        "p99_ms": base.percentile(latencies, 99),
        "max_ms": max(latencies),
        "cpu": cpu,
        "disk": fsync,
    }


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratios(rounds: list[dict[str, Any]], name: str, reference: str) -> list[float]:
    """``name``'s rate over ``reference``'s, within each round that measured both."""
    found = []
    for measured in rounds:
        ours = measured.get(name, {}).get("rps")
        ref = measured.get(reference, {}).get("rps")
        if ours and ref:
            found.append(ours / ref)
    return found


def summarise(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target: the median rate, and the median of its per-round ratios to the bare
    endpoint and to one SQLite replica (with the per-round values)."""
    summary: dict[str, dict[str, Any]] = {}
    for name in TARGETS:
        rates = [m[name]["rps"] for m in rounds if m.get(name, {}).get("rps")]
        vs_sqlite = ratios(rounds, name, "sqlite")
        summary[name] = {
            "rps": median(rates),
            "rps_rounds": [round(r) for r in rates],
            "vs_bare": median(ratios(rounds, name, "bare")),
            "vs_sqlite": median(vs_sqlite),
            "vs_sqlite_rounds": [round(r, 2) for r in vs_sqlite],
        }
    return summary


def render(results: dict[str, Any]) -> str:
    t = summarise(results["throughput"])
    rounds = len(results["throughput"])
    lines = [
        f"ticketbridge replicas benchmark, {results['date']} ({os.cpu_count()} CPUs, shared)",
        "",
        f"Ingest: medians of {rounds} interleaved rounds (ratios taken within each round).",
        "",
        "| ingest | req/s (each round) | vs bare | vs 1 replica on SQLite (each round) |",
        "|---|---|---|---|",
    ]
    for name in TARGETS:
        row = t[name]
        each = ", ".join(f"{r:,}" for r in row["rps_rounds"])
        lines.append(
            f"| {name} | {base.fmt(row['rps'], 0)} ({each}) | {base.fmt(row['vs_bare'], 2)} | "
            f"{base.fmt(row['vs_sqlite'], 2)} ({', '.join(map(str, row['vs_sqlite_rounds']))}) |"
        )
    lines += [
        "",
        "| webhook → VictorOps at 100/s | p50 ms | p99 ms | delivered "
        "| disk fsyncs over 20 ms during the run (worst) |",
        "|---|---|---|---|---|",
    ]
    for name, stats in results["latency"].items():
        disk = stats.get("disk", {})
        lines.append(
            f"| {name} | {base.fmt(stats.get('p50_ms'))} | {base.fmt(stats.get('p99_ms'))} | "
            f"{stats.get('delivered')}/{stats.get('sent')} | "
            f"{disk.get('stalls_over_20ms')} of {disk.get('fsyncs')} "
            f"({base.fmt(disk.get('worst_ms'))} ms) |"
        )
    two = t["postgresql x2"]["vs_sqlite"]
    lines += [
        "",
        f"Target: two replicas on PostgreSQL ≥ one on SQLite: median {base.fmt(two, 2)} "
        f"({'met' if two is not None and two >= 1 else 'not met'}); p99 ≤ "
        f"{base.P99_TARGET_MS:g} ms.",
    ]
    return "\n".join(lines)


def main() -> int:
    wrk = base.ensure_tool("wrk", "wrk")
    if wrk is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "throughput": [],
        "latency": {},
    }
    bench = base.Bench()
    try:
        for round_no in range(ROUNDS):
            measured: dict[str, Any] = {}
            results["throughput"].append(measured)
            for target in TARGETS:
                measured[target] = throughput(bench, wrk, target, round_no)
        recorder_service, recorder = base.start_recorder(bench)
        for replicas in (1, 2):
            results["latency"][f"postgresql x{replicas}"] = latency(
                bench, recorder, recorder_service.pid, replicas
            )
    finally:
        bench.close()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    report = render(results)
    raw = json.dumps(base.finite(results), indent=2, sort_keys=True, default=str)
    text = f"{report}\n\nRaw numbers:\n\n```json\n{raw}\n```\n"
    print(f"\n{text}")
    base.RESULTS.mkdir(parents=True, exist_ok=True)
    (base.RESULTS / "replicas.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
