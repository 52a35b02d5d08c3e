"""RELIABILITY issue 18 item 8: a SIGKILL can repeat only the pages whose call was in flight.

PAGES distinct Urgent webhooks go to a real ``ticketbridge serve`` (SQLite) from sender threads
that retry each until a 2xx; the fake VictorOps answers every alert after ANSWER_SECONDS, so
``concurrency_per_target`` (8) calls are always in flight. The service is SIGKILLed KILLS times,
at even steps of delivery progress, and restarted each time. A page whose call was in flight
(or whose outcome was not yet committed) at a kill is sent again after the restart: at most
``concurrency_per_target`` per kill, since a delivery holds its slot until its outcome is
recorded, and with the same ``entity_id`` (VictorOps folds the repeat into the open incident).

Scaled from the issue's 2,000 pages to PAGES = 1,000 (``TB_CRASH_PAGES``) so the run stays
under about 90 s: at 8 calls of 0.3 s at a time, 2,000 pages take 75 s of delivery alone.

Figure: ``crash in flight: <d> doubled pages of <n>, <k> kills, at most <m> per kill (bound 8
per kill, <8k> in all); every repeat on its first's entity_id``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes.victorops import FakeVictorOps, Fault
from tests.fault.process import TicketbridgeProcess

pytestmark = pytest.mark.fault

PAGES = int(os.environ.get("TB_CRASH_PAGES", "1000"))
KILLS = 5
ANSWER_SECONDS = 0.3
CONCURRENCY = 8  # the default concurrency_per_target, set explicitly: the bound depends on it
SENDERS = 8
FIRST_TICKET = 800_001
SECRET = "s"
STARTUP_TIMEOUT = 30.0
BUDGET = 150.0
# A request the fake read up to this long before a kill was noted may still be that life's.
KILL_SLACK = 0.5


def webhook(ticket_id: int) -> bytes:
    return json.dumps(
        {
            "freshdesk_webhook": {
                "triggered_event": "{ticket_action:created}",
                "ticket_id": str(ticket_id),
                "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket_id}",
                "ticket_subject": "crash in flight",
                "ticket_status": "Open",
                "ticket_priority": "Urgent",
            }
        }
    ).encode()


def sender(
    base_url: str, tickets: list[int], acked: set[int], lock: threading.Lock, deadline: float
) -> None:
    """POST each ticket's webhook until a 2xx (through kills and restarts) or the deadline."""
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    with httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(10.0, connect=2.0),
        trust_env=False,
    ) as client:
        for ticket in tickets:
            while time.monotonic() < deadline:
                try:
                    code = client.post("/webhooks/freshdesk", content=webhook(ticket)).status_code
                except httpx.TransportError:
                    code = 0  # down, killed mid-request, restarting
                if 200 <= code < 300:
                    with lock:
                        acked.add(ticket)
                    break
                time.sleep(0.05 + random.uniform(0, 0.05))


def kill_of(first: float, second: float, kills: list[float]) -> int | None:
    """The kill between two sends of one effect (None: none, a repeat without a crash)."""
    for index, killed_at in enumerate(kills):
        if first - KILL_SLACK <= killed_at <= second:
            return index
    return None


def test_a_sigkill_repeats_at_most_the_pages_in_flight_on_the_same_entity_id(
    fake_victorops: FakeVictorOps,
    ticketbridge_process: Callable[..., TicketbridgeProcess],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    began = time.monotonic()
    deadline = began + BUDGET
    fake_victorops.schedule(
        *(Fault(status=200, act=True, delay=ANSWER_SECONDS) for _ in range(2 * PAGES))
    )
    server = ticketbridge_process(
        DATABASE_URL=f"sqlite:///{tmp_path / 'tb.db'}",
        FRESHDESK__WEBHOOK_SECRETS=SECRET,
        VICTOROPS__REST_URL=fake_victorops.rest_url("KEY", "RK"),
        DISPATCH__CONCURRENCY_PER_TARGET=str(CONCURRENCY),
        LOG_LEVEL="warning",
    )
    server.start()
    server.wait_healthy(STARTUP_TIMEOUT)
    tickets = list(range(FIRST_TICKET, FIRST_TICKET + PAGES))
    acked: set[int] = set()
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=sender,
            args=(server.base_url, tickets[i::SENDERS], acked, lock, deadline),
            daemon=True,
        )
        for i in range(SENDERS)
    ]
    for thread in threads:
        thread.start()

    def delivered() -> int:
        return len({r.entity_id for r in fake_victorops.requests})

    kills: list[float] = []
    for step in range(1, KILLS + 1):
        wanted = PAGES * step // (KILLS + 1)
        if not fake_victorops.wait_until(
            lambda _vo, n=wanted: delivered() >= n, timeout=deadline - time.monotonic()
        ):
            break
        kills.append(time.monotonic())
        server.kill()
        server.start()
        server.wait_healthy(STARTUP_TIMEOUT)
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    fake_victorops.wait_until(
        lambda _vo: delivered() >= PAGES, timeout=max(0.0, deadline - time.monotonic())
    )
    time.sleep(2 * ANSWER_SECONDS)  # a repeat still in flight lands
    seconds = time.monotonic() - began

    sends: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for r in fake_victorops.requests:
        if r.message_type == "CRITICAL" and r.effect_key is not None:
            sends[r.effect_key].append((r.at, r.entity_id))
    doubled = sum(len(times) - 1 for times in sends.values())
    per_kill: Counter[int | None] = Counter()
    rekeyed = 0
    for times in sends.values():
        times.sort()
        rekeyed += len({entity for _, entity in times}) > 1
        for (first, _), (second, _) in itertools.pairwise(times):
            per_kill[kill_of(first, second, kills)] += 1
    without_crash = per_kill.pop(None, 0)
    most = max(per_kill.values(), default=0)
    entities = Counter(entity for times in sends.values() for _, entity in times[:1])
    figure = (
        f"crash in flight: {doubled} doubled pages of {PAGES} (scaled from 2,000), "
        f"{len(kills)} kills, at most {most} per kill (bound {CONCURRENCY} per kill, "
        f"{CONCURRENCY * len(kills)} in all); "
        + (
            "every repeat on its first's entity_id"
            if not rekeyed
            else f"{rekeyed} repeats on another entity_id"
        )
    )
    detail = (
        f"crash detail: {len(acked)} acked, {len(entities)} entities paged, repeats without a "
        f"kill between {without_crash}, VictorOps requests {fake_victorops.request_count}, "
        f"cut off mid-body by a kill {fake_victorops.aborted}, {seconds:.0f} s"
    )
    print(f"\n{figure}\n{detail}")
    record_property("figure", figure)

    assert len(kills) == KILLS, f"only {len(kills)} kills happened\n{detail}"
    assert len(acked) == PAGES, detail
    assert len(entities) == PAGES, detail
    assert max(entities.values()) == 1, f"an entity_id under two effect keys\n{detail}"
    assert without_crash == 0, detail
    assert rekeyed == 0, figure
    assert most <= CONCURRENCY, figure
    assert doubled <= CONCURRENCY * len(kills), figure
