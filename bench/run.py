"""ticketbridge benchmark (docs/benchmarks.md). A measurement, not a test: it never fails on a
missed target, it reports it.

    .venv/bin/python bench/run.py        # or: make bench

One run, everything on 127.0.0.1, every loop bounded in count and time (about 2 minutes):

1. Ingest throughput of ``POST /webhooks/freshdesk``: ticketbridge (``synchronous=FULL``, the
   default, and ``NORMAL``) against a bare FastAPI endpoint (bench/bare_app.py), each served by
   uvicorn in its own process with the same options, loaded by the same generator (``wrk``, one
   thread, 32 connections; bench/unique_tickets.lua gives every request its own ticket id)
   for a 2 s warm-up and then 10 s. VictorOps is not configured here, so each webhook's page
   effect is stored ``skipped`` in the webhook's own transaction (no dispatcher round trip).
2. Webhook-to-VictorOps latency at a steady 100 webhooks/s (open loop, 2000 Urgent tickets):
   ticketbridge pages a fake VictorOps (bench/recorder.py) that stamps each alert's arrival;
   latency = arrival - send time of the webhook, matched by ticket id.
3. The same through Prometheus Alertmanager (``group_wait: 0s``, one group per ticket, a
   webhook receiver on the same recorder), 2000 alerts at 100/s via ``POST /api/v2/alerts``.

The latency sends come from a small raw HTTP/1.1 client in this process (cheaper than httpx,
so the pacer stays on time even when the server falls behind). Every measured window also
records CPU use: the server's, the benchmark's own, and "foreign" CPU (anything else on the
host), because a shared two-core machine can distort the numbers.

Prints one table and the raw numbers, and writes both to bench/results/latest.md (subprocess
logs go to bench/results/logs/). Missing ``wrk`` / ``prometheus-alertmanager`` are installed
with apt-get when run as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
TICKETBRIDGE = str(Path(sys.executable).parent / "ticketbridge")
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

HOST = "127.0.0.1"
SECRET = "benchsecret"
ACCOUNT = "acme"
CONNECTIONS = 32
WARMUP_SECONDS = 2
THROUGHPUT_SECONDS = 10
RATE = 100  # webhooks (or alerts) per second, open loop
LATENCY_COUNT = 2000  # 20 s at RATE
LATENCY_WARMUP = 50
REQUEST_TIMEOUT = 10.0  # per webhook / alert POST in the latency runs
IDLE_EXPIRY = 2.0  # seconds a keep-alive connection of the pacer may sit idle and be reused
DELIVERY_GRACE = 10.0  # seconds to wait for the last pages once every POST has answered
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
OVERALL_LIMIT = 600  # seconds; a safety net, the run takes about two minutes
THROUGHPUT_TARGET = 0.35
P99_TARGET_MS = 25.0
VO_PATH = "/integrations/generic/20131114/alert/BENCHAPIKEY/bench-routing"
WEBHOOK_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"}


# --- processes --------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Service:
    """One subprocess we started, with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Bench:
    """Owns the temporary directory and every subprocess; ``close`` ends them all."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tb-bench-", dir="/tmp"))
        self.services: list[Service] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Service:
        service = Service(name, argv, env or dict(os.environ), self.tmp / f"{name}.log")
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self.services:
            self.services.remove(service)

    def close(self) -> None:
        """Stop every subprocess, keep their logs in bench/results/logs/, drop the rest."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        self.services.clear()
        logs = RESULTS / "logs"
        with contextlib.suppress(OSError):
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            for log in self.tmp.glob("*.log"):
                shutil.copy(log, logs / log.name)
        shutil.rmtree(self.tmp, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(service: Service, probe: Callable[[httpx.Client], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with {service.proc.returncode}:\n{service.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if probe(client):
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready after {START_TIMEOUT} s:\n{service.tail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole host so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


def own_cpu_seconds() -> float:
    """CPU of this process plus its children already waited for (wrk)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWindow:
    """CPU spent over a measured window, in cores: by the servers under test, by the benchmark
    itself (pacer, wrk) and by everything else on the host ("foreign": other work on a shared
    machine, which the numbers cannot account for)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.host = host_ticks()
        self.procs = [cpu_seconds(pid) for pid in pids]
        self.own = own_cpu_seconds()

    def result(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        total, idle = host_ticks()
        cpus = os.cpu_count() or 1
        host = cpus * (1 - (idle - self.host[1]) / max(1, total - self.host[0]))
        procs = [
            (cpu_seconds(p) - before) / elapsed
            for p, before in zip(self.pids, self.procs, strict=True)
        ]
        own = (own_cpu_seconds() - self.own) / elapsed
        return {
            "server_cores": round(procs[0], 2),
            "helper_cores": round(sum(procs[1:]), 2),
            "bench_cores": round(own, 2),
            "host_busy_cores": round(host, 2),
            "foreign_cores": round(max(0.0, host - sum(procs) - own), 2),
        }


class DiskProbe:
    """The disk's own fsync latency over a measured window: every ``period`` seconds a thread
    writes 8 kB to a file of its own in the temporary directory and ``fdatasync``s it. A
    durable commit (SQLite FULL, PostgreSQL's WAL flush) waits for the same disk: on a shared
    virtual machine its stalls (tens to hundreds of ms, seen here) show in the page latency
    whatever the service does, and this tells a reader when they did (same disk as the
    databases here; elsewhere, point TMPDIR at theirs)."""

    STALL_MS = 20.0

    def __init__(self, period: float = 0.05) -> None:
        self._period = period
        self._times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd, path = tempfile.mkstemp(prefix="bench-fsync-")
        try:
            block = b"x" * 8192
            while not self._stop.wait(self._period):
                started = time.perf_counter()
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                self._times.append((time.perf_counter() - started) * 1000)
        finally:
            os.close(fd)
            os.unlink(path)

    def result(self) -> dict[str, float | int]:
        self._stop.set()
        self._thread.join(5)
        stalls = [t for t in self._times if t > self.STALL_MS]
        return {
            "fsyncs": len(self._times),
            "stalls_over_20ms": len(stalls),
            "worst_ms": round(max(self._times, default=0.0), 1),
        }


def background_load(seconds: float = 1.0) -> dict[str, Any]:
    """Host CPU busy % over ``seconds`` before we start anything, and who was using it."""

    def host() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]

    def per_process() -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    comm = (entry / "comm").read_text().strip()
                    seen[int(entry.name)] = (comm, cpu_seconds(int(entry.name)))
        return seen

    total0, idle0 = host()
    procs0 = per_process()
    time.sleep(seconds)
    total1, idle1 = host()
    procs1 = per_process()
    busy = [
        {"pid": pid, "comm": comm, "cpu_percent": round(100 * (cpu - procs0[pid][1]) / seconds)}
        for pid, (comm, cpu) in procs1.items()
        if pid in procs0 and pid != os.getpid() and (cpu - procs0[pid][1]) / seconds >= 0.05
    ]
    return {
        "host_busy_percent": round(100 * (1 - (idle1 - idle0) / max(1, total1 - total0)), 1),
        "busy_processes": busy,
    }


# --- tools ------------------------------------------------------------------------------------
def ensure_tool(binary: str, package: str) -> str | None:
    """The binary's path, installing the Debian package with apt-get if it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"[bench] {binary} missing and apt-get unavailable (not root?)", flush=True)
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    print(f"[bench] installing {package} with apt-get ...", flush=True)
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            break
    else:
        print(f"[bench] apt-get install {package} failed:\n{done.stderr[-2000:]}", flush=True)
    return shutil.which(binary)


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


# --- servers ----------------------------------------------------------------------------------
def ticketbridge_env(directory: Path, synchronous: str, rest_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBRIDGE_")}
    env.update(
        TICKETBRIDGE_DATABASE_URL=f"sqlite:///{directory / 'tb.db'}",
        TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS=SECRET,
        TICKETBRIDGE_LOG_LEVEL="warning",
        TICKETBRIDGE_LOG_FORMAT="json",
        TICKETBRIDGE_SQLITE_SYNCHRONOUS=synchronous,
        TICKETBRIDGE_SECRETS_DIR=str(directory / "no-secrets"),
    )
    if rest_url is not None:
        env["TICKETBRIDGE_VICTOROPS__REST_URL"] = rest_url
    return env


def start_ticketbridge(
    bench: Bench, name: str, synchronous: str, rest_url: str | None = None
) -> tuple[Service, str, Path]:
    directory = bench.tmp / name
    directory.mkdir()
    port = free_port()
    argv = [TICKETBRIDGE, "serve", "--host", HOST, "--port", str(port)]
    service = bench.start(name, argv, ticketbridge_env(directory, synchronous, rest_url))
    base = f"http://{HOST}:{port}"
    wait_ready(service, lambda c: c.get(f"{base}/healthz").status_code == 200)
    return service, f"{base}/webhooks/freshdesk", directory / "tb.db"


def start_bare(bench: Bench) -> tuple[Service, str]:
    port = free_port()
    service = bench.start("bare", [PYTHON, str(BENCH / "bare_app.py"), "--port", str(port)])
    url = f"http://{HOST}:{port}/webhooks/freshdesk"
    wait_ready(service, lambda c: c.post(url, content=b"{}").status_code == 202)
    return service, url


def start_recorder(bench: Bench) -> tuple[Service, str]:
    port = free_port()
    service = bench.start("recorder", [PYTHON, str(BENCH / "recorder.py"), "--port", str(port)])
    base = f"http://{HOST}:{port}"
    wait_ready(service, lambda c: c.get(f"{base}/healthz").status_code == 200)
    return service, base


def start_alertmanager(bench: Bench, binary: str, receiver: str) -> tuple[Service, str]:
    directory = bench.tmp / "alertmanager"
    (directory / "data").mkdir(parents=True)
    config = {  # JSON is YAML
        "route": {
            "receiver": "bench",
            "group_by": ["ticket"],
            "group_wait": "0s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {"name": "bench", "webhook_configs": [{"url": receiver, "send_resolved": False}]}
        ],
    }
    (directory / "alertmanager.yml").write_text(json.dumps(config, indent=2))
    port = free_port()
    argv = [
        binary,
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    service = bench.start("alertmanager", argv)
    base = f"http://{HOST}:{port}"
    wait_ready(service, lambda c: c.get(f"{base}/-/ready").status_code == 200)
    return service, f"{base}/api/v2/alerts"


# --- throughput -------------------------------------------------------------------------------
def run_load(wrk: str | None, url: str, seconds: int, base: int) -> dict[str, Any]:
    if wrk is not None:
        argv = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s"]
        argv += ["-s", str(BENCH / "unique_tickets.lua"), url, "--", str(base)]
    else:
        argv = [PYTHON, str(BENCH / "loadgen.py"), "--url", url, "--seconds", str(seconds)]
        argv += ["--connections", str(CONNECTIONS), "--base", str(base)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    found = re.search(r"^WRK_JSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"load generator failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    summary: dict[str, Any] = json.loads(found.group(1))
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def db_counts(db: Path) -> dict[str, Any]:
    """What ticketbridge committed: inbox rows, distinct tickets, outbox rows by status."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        conn.isolation_level = None
        conn.execute("BEGIN")  # one snapshot for all three reads
        inbox, tickets = conn.execute(
            "SELECT count(*), count(DISTINCT ticket_id) FROM inbox"
        ).fetchone()
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM inbox GROUP BY outcome"))
        outbox = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    return {"inbox": inbox, "distinct_tickets": tickets, "outcomes": outcomes, "outbox": outbox}


def log_problems(service: Service) -> dict[str, int]:
    """Warning-or-worse events in a ticketbridge JSON log, counted by event name."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in service.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                counts["<non-JSON line>"] = counts.get("<non-JSON line>", 0) + 1
                continue
            if record.get("level") in ("warning", "error", "critical"):
                event = str(record.get("event", "?"))
                if event.startswith("config."):
                    continue  # the expected "VictorOps not configured" notice
                counts[event] = counts.get(event, 0) + 1
    return counts


def throughput(bench: Bench, wrk: str | None, target: str) -> dict[str, Any]:
    db: Path | None = None
    if target == "bare":
        service, url = start_bare(bench)
    else:
        service, url, db = start_ticketbridge(bench, f"tb-ingest-{target.lower()}", target)
    try:
        warm = run_load(wrk, url, WARMUP_SECONDS, base=1_000_000_000)
        window = CpuWindow([service.pid])
        main = run_load(wrk, url, THROUGHPUT_SECONDS, base=2_000_000_000)
        main["cpu"] = window.result()
        main["warmup_requests"] = warm["requests"]
        main["warmup_non2xx"] = warm["non2xx"]
        if db is not None:
            main["db_at_end"] = db_counts(db)
    finally:
        bench.stop(service)
    if db is not None:
        counts = main["db_after_stop"] = db_counts(db)
        main["log_problems"] = log_problems(service)
        # Every 2xx answer is a 202 with a new inbox row unless it was a duplicate (a 200 that
        # adds no row); rows can exceed answers by the requests cut off when wrk stops.
        answered = main["requests"] + main["warmup_requests"] - main["non2xx"]
        answered -= main["warmup_non2xx"]
        main["duplicates_seen"] = not (
            counts["inbox"] == counts["distinct_tickets"] and counts["inbox"] >= answered
        )
    print(f"[bench] throughput {target}: {main['rps']:.0f} req/s", flush=True)
    return main


# --- latency ----------------------------------------------------------------------------------
def webhook_body(ticket: str) -> bytes:
    inner = {
        "triggered_event": "{ticket_action:created}",
        "ticket_id": ticket,
        "ticket_url": f"https://{ACCOUNT}.freshdesk.com/a/tickets/{ticket}",
        "ticket_subject": "bench",
        "ticket_status": "Open",
        "ticket_priority": "Urgent",
    }
    return json.dumps({"freshdesk_webhook": inner}).encode()


def alert_body(ticket: str) -> bytes:
    alert = {
        "labels": {"alertname": "FreshdeskUrgentTicket", "ticket": ticket, "severity": "critical"},
        "annotations": {"summary": "bench", "ticket_url": f"https://{ACCOUNT}.freshdesk.com/a/"},
    }
    return json.dumps([alert]).encode()


class RawClient:
    """A minimal HTTP/1.1 keep-alive client for the pacer.

    httpx costs about a millisecond of CPU per request and its pool slows down badly with
    hundreds of requests waiting, which on two cores would steal time from the server under
    test and make the pacer late exactly when the server falls behind. This one writes the
    request and reads the status, headers and body (Content-Length or chunked), nothing more.
    """

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port, self.path = parts.host, parts.port or 80, parts.raw_path.decode()
        # Idle connections with the time each went idle: one idle longer than IDLE_EXPIRY is
        # dropped, not reused, so that a request never races the server's keep-alive timeout
        # (uvicorn closes a connection idle for 5 s; a POST written as it closes would fail).
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        for attempt in range(2):
            now = time.monotonic()
            while self.idle and now - self.idle[-1][2] > IDLE_EXPIRY:
                self.idle.pop()[1].close()
            reused = bool(self.idle)
            if reused:
                reader, writer, _idle_since = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                status = await self._exchange(reader, writer, body, headers)
            except BaseException:
                writer.close()
                raise
            if status is None:  # the server had closed this idle connection: retry on a new one
                writer.close()
                if reused and attempt == 0:
                    continue
                raise ConnectionError("connection closed before the status line")
            return status
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: bytes,
        headers: dict[str, str],
    ) -> int | None:
        head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        status_line = await reader.readline()
        if not status_line:
            return None
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                close = value == "close"
        if chunked:
            while size := int((await reader.readline()).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readline()
        elif length:
            await reader.readexactly(length)
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return status

    def close(self) -> None:
        for _reader, writer, _idle_since in self.idle:
            writer.close()
        self.idle.clear()


async def paced(
    url: str, tickets: list[str], body: Callable[[str], bytes], headers: dict[str, str]
) -> dict[str, tuple[int, int, int | None, int | None]]:
    """Open loop: request i leaves at start + i / RATE whatever the earlier ones are doing.

    Returns ticket -> (due_ns, sent_ns, answered_ns, status); answered_ns and status are None
    for a request still unanswered REQUEST_TIMEOUT + 5 s after the last one left, status 0 for
    a transport error or timeout.
    """
    due_sent: dict[str, tuple[int, int]] = {}
    answers: dict[str, tuple[int, int]] = {}
    client = RawClient(url)

    async def one(ticket: str, content: bytes, due: int) -> None:
        due_sent[ticket] = (due, time.monotonic_ns())
        try:
            status = await asyncio.wait_for(client.post(content, headers), REQUEST_TIMEOUT)
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            status = 0
        answers[ticket] = (time.monotonic_ns(), status)

    bodies = [body(t) for t in tickets]
    tasks = []
    start = time.monotonic_ns() + 50_000_000
    try:
        for i, (ticket, content) in enumerate(zip(tickets, bodies, strict=True)):
            due = start + i * 1_000_000_000 // RATE
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(ticket, content, due)))
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client.close()
    result: dict[str, tuple[int, int, int | None, int | None]] = {}
    for ticket, (due, sent) in due_sent.items():
        answered, status = answers.get(ticket, (None, None))
        result[ticket] = (due, sent, answered, status)
    return result


def arrivals(recorder: str, kind: str, tickets: list[str]) -> dict[str, list[int]]:
    """Arrival times per ticket, waiting (bounded) until every ticket has arrived."""
    wanted = set(tickets)
    deadline = time.monotonic() + DELIVERY_GRACE
    got: dict[str, list[int]] = {}
    with httpx.Client(timeout=10.0) as client:
        while True:
            got = {}
            for _kind, ticket, at, _detail in client.get(
                f"{recorder}/records", params={"kind": kind}
            ).json():
                if ticket in wanted:
                    got.setdefault(ticket, []).append(at)
            if len(got) >= len(wanted) or time.monotonic() > deadline:
                return got
            time.sleep(0.2)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_run(
    url: str,
    recorder: str,
    kind: str,
    body: Callable[[str], bytes],
    headers: dict[str, str],
    base: int,
    pids: list[int],
) -> dict[str, Any]:
    """Warm up, then LATENCY_COUNT paced sends; a page that never arrives counts as infinite.

    ``pids``: the server under test, then the recorder (for the CPU accounting).
    """
    warm = [str(base + i) for i in range(1, LATENCY_WARMUP + 1)]
    asyncio.run(paced(url, warm, body, headers))
    arrivals(recorder, kind, warm)
    tickets = [str(base + 100_000 + i) for i in range(1, LATENCY_COUNT + 1)]
    window = CpuWindow(pids)
    disk = DiskProbe()
    sends = asyncio.run(paced(url, tickets, body, headers))
    sent_ns = [s[1] for s in sends.values()]
    span = (max(sent_ns) - min(sent_ns)) / 1e9
    got = arrivals(recorder, kind, tickets)
    cpu = window.result()
    fsync = disk.result()
    latencies = [
        (min(got[t]) - sends[t][1]) / 1e6 if t in got and t in sends else math.inf for t in tickets
    ]
    acks = [
        (answered - sent) / 1e6 if answered is not None else math.inf
        for _due, sent, answered, _status in sends.values()
    ]
    late = [(sent - due) / 1e6 for due, sent, _answered, _status in sends.values()]
    statuses: dict[str, int] = {}
    for *_times, status in sends.values():
        key = "unanswered" if status is None else ("error/timeout" if status == 0 else str(status))
        statuses[key] = statuses.get(key, 0) + 1
    delivered = [v for v in latencies if v != math.inf]
    return {
        "sent": len(sends),
        "send_rate_per_s": (len(sends) - 1) / span if span else 0.0,
        "answers": statuses,
        "delivered": len(delivered),
        "missing": len(tickets) - len(delivered),
        "extra_deliveries": sum(len(v) - 1 for v in got.values()),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_delivered_ms": sum(delivered) / len(delivered) if delivered else None,
        "ack_p50_ms": percentile(acks, 50),
        "ack_p99_ms": percentile(acks, 99),
        "pacer_late_p99_ms": percentile(late, 99),
        "pacer_late_max_ms": max(late),
        "cpu": cpu,
        "disk": fsync,
    }


def latency_ticketbridge(
    bench: Bench, recorder: str, recorder_pid: int, synchronous: str, base: int
) -> dict[str, Any]:
    name = f"tb-latency-{synchronous.lower()}"
    service, url, db = start_ticketbridge(bench, name, synchronous, f"{recorder}{VO_PATH}")
    try:
        stats = latency_run(
            url,
            recorder,
            "victorops",
            webhook_body,
            WEBHOOK_HEADERS,
            base,
            [service.pid, recorder_pid],
        )
    finally:
        bench.stop(service)
    stats["db_after_stop"] = db_counts(db)
    stats["log_problems"] = log_problems(service)
    stats["duplicates_seen"] = bool(stats["answers"].get("200") or stats["extra_deliveries"])
    print(f"[bench] latency ticketbridge {synchronous}: p99 {stats.get('p99_ms')} ms", flush=True)
    return stats


def latency_alertmanager(
    bench: Bench, binary: str, recorder: str, recorder_pid: int, base: int
) -> dict[str, Any]:
    service, url = start_alertmanager(bench, binary, f"{recorder}/alertmanager")
    headers = {"Content-Type": "application/json"}
    try:
        stats = latency_run(
            url, recorder, "alertmanager", alert_body, headers, base, [service.pid, recorder_pid]
        )
    finally:
        bench.stop(service)
    print(f"[bench] latency alertmanager: p99 {stats.get('p99_ms')} ms", flush=True)
    return stats


# --- report -----------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if value == math.inf:
        return "never (lost)"
    return f"{value:,.{digits}f}"


def ratio(ours: float | None, reference: float | None) -> str:
    if not ours or not reference or math.inf in (ours, reference):
        return "n/a"
    return f"{ours / reference:.2f}"


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    put, lat = results["throughput"], results["latency"]
    bare, am = put.get("bare", {}), lat.get("alertmanager", {})
    busy = ", ".join(
        f"pid {p['pid']} {p['comm']} {p['cpu_percent']}%"
        for p in env["background"]["busy_processes"]
    )

    def foreign(ours: dict[str, Any], ref: dict[str, Any]) -> str:
        parts = [
            f"{run['cpu']['foreign_cores']:.2f}" if "cpu" in run else "-" for run in (ours, ref)
        ]
        return " / ".join(parts)

    lines = [
        f"### ticketbridge benchmark, {env['date']}",
        "",
        f"{env['cpus']} CPUs, {env['kernel']}, Python {env['python']}; both apps under uvicorn, "
        f"1 worker. Throughput: {env['loadgen']}, 1 thread, {CONNECTIONS} connections, "
        f"{WARMUP_SECONDS} s warm-up + {THROUGHPUT_SECONDS} s, every request a new Urgent ticket "
        "(VictorOps unset, so each page is stored skipped in the webhook's transaction). "
        f"Latency: {LATENCY_COUNT} Urgent tickets at {RATE}/s open loop after "
        f"{LATENCY_WARMUP} warm-up; receive time at a loopback recorder minus send time; a page "
        f"not received within {DELIVERY_GRACE:g} s of the last answer counts as never. Reference: "
        f"{env['alertmanager']}, group_wait 0s, group_by [ticket]. SQLite on {env['db_fs']}. "
        f"Host CPU busy before the run: {env['background']['host_busy_percent']}% "
        f"({busy or 'no single process >= 5%'}). Foreign CPU = cores used during the "
        "measurement by processes other than the server under test and the benchmark "
        "(other work on this shared host).",
        "",
        "| measurement | ticketbridge | reference | ours / ref | target | verdict "
        "| foreign CPU ours / ref |",
        "|---|--:|--:|--:|--:|---|--:|",
    ]
    for mode in ("FULL", "NORMAL"):
        ours = put.get(mode, {})
        rps, ref = ours.get("rps"), bare.get("rps")
        verdict = "n/a"
        if rps and ref:
            verdict = "met" if rps / ref >= THROUGHPUT_TARGET else "MISSED"
        label = "default, fsync per commit" if mode == "FULL" else "less durable"
        lines.append(
            f"| ingest req/s, synchronous={mode} ({label}) | {fmt(rps, 0)} | "
            f"{fmt(ref, 0)} (bare FastAPI) | {ratio(rps, ref)} | "
            f">= {THROUGHPUT_TARGET} | {verdict} | {foreign(ours, bare)} |"
        )
    for mode in ("FULL", "NORMAL"):
        ours = lat.get(mode, {})
        for key, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
            value, ref = ours.get(key), am.get(key)
            target, verdict = "", ""
            if key == "p99_ms":
                target = f"<= {P99_TARGET_MS:g} ms"
                verdict = (
                    "n/a" if value is None else ("met" if value <= P99_TARGET_MS else "MISSED")
                )
            lines.append(
                f"| webhook->page {name} ms at {RATE}/s, synchronous={mode} "
                f"(paged {ours.get('delivered', 0)}/{LATENCY_COUNT}; Alertmanager "
                f"{am.get('delivered', 0)}/{LATENCY_COUNT}) | {fmt(value, 2)} | "
                f"{fmt(ref, 2)} (Alertmanager) | {ratio(value, ref)} | {target} | {verdict} "
                f"| {foreign(ours, am)} |"
            )
    runs = [put.get("FULL", {}), put.get("NORMAL", {}), lat.get("FULL", {}), lat.get("NORMAL", {})]
    dups = [run.get("duplicates_seen") for run in runs if "duplicates_seen" in run]
    errors = sum(run.get("non2xx", 0) + run.get("warmup_non2xx", 0) for run in put.values())
    lines += [
        "",
        "Checks: duplicates "
        + ("SEEN" if any(dups) else "none" if dups else "not checked")
        + " (inbox rows = distinct tickets >= 2xx answers; no 200; one page per ticket); "
        + f"non-2xx answers under wrk: {errors}; wall time {results.get('elapsed_s', '?')} s.",
        "Disk fsyncs over 20 ms during each latency run (worst; a durable commit waits for "
        "the same disk): "
        + "; ".join(
            f"{name} {run['disk']['stalls_over_20ms']} of {run['disk']['fsyncs']} "
            f"({run['disk']['worst_ms']} ms)"
            for name, run in lat.items()
            if "disk" in run
        )
        + ".",
    ]
    if env["loadgen"].startswith("bench/loadgen.py"):
        lines.append(
            "Note: wrk was unavailable; the Python fallback generator saturates before the bare "
            "app does, so the throughput ratio flatters ticketbridge."
        )
    return "\n".join(lines)


@contextlib.contextmanager
def phase(results: dict[str, Any], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        results.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)


def finite(value: Any) -> Any:
    """``results`` with infinities (pages that never arrived) spelled "inf", for JSON."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


@contextlib.contextmanager
def signals_end_the_run() -> Iterator[None]:
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    def overtime(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"benchmark exceeded {OVERALL_LIMIT} s")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, overtime)
    signal.alarm(OVERALL_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> int:
    started = time.monotonic()
    wrk = ensure_tool("wrk", "wrk")
    alertmanager = ensure_tool(ALERTMANAGER, "prometheus-alertmanager")
    fs = subprocess.run(["stat", "-f", "-c", "%T", "/tmp"], capture_output=True, text=True)
    results: dict[str, Any] = {
        "environment": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "loadgen": tool_version([wrk, "-v"]) if wrk else "bench/loadgen.py (httpx)",
            "alertmanager": (
                tool_version([alertmanager, "--version"]) if alertmanager else "(not installed)"
            ),
            "db_fs": f"/tmp ({fs.stdout.strip() or '?'})",
            "background": background_load(),
        },
        "throughput": {},
        "latency": {},
    }
    bench = Bench()
    try:
        with signals_end_the_run():
            for target in ("bare", "FULL", "NORMAL"):
                with phase(results, f"throughput {target}"):
                    results["throughput"][target] = throughput(bench, wrk, target)
            recorder_service, recorder = start_recorder(bench)
            recorder_pid = recorder_service.pid
            for i, mode in enumerate(("FULL", "NORMAL")):
                base = 5_000_000_000 + i * 1_000_000_000
                with phase(results, f"latency {mode}"):
                    results["latency"][mode] = latency_ticketbridge(
                        bench, recorder, recorder_pid, mode, base
                    )
            if alertmanager is not None:
                with phase(results, "latency alertmanager"):
                    results["latency"]["alertmanager"] = latency_alertmanager(
                        bench, alertmanager, recorder, recorder_pid, 8_000_000_000
                    )
    except BaseException:
        for service in bench.services:
            print(f"--- {service.name} log (last lines) ---\n{service.tail()}", file=sys.stderr)
        raise
    finally:
        bench.close()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    table = render(results)
    raw = json.dumps(finite(results), indent=2, sort_keys=True, default=str)
    report = f"{table}\n\nRaw numbers:\n\n```json\n{raw}\n```\n"
    print()
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
