"""A slow VictorOps and a backlog double no page without a crash.

A real ``ticketbridge serve`` takes PAGES distinct Urgent webhooks within about a second; the
fake VictorOps (a threaded HTTP server on 127.0.0.1) answers each alert after ANSWER_SECONDS.
The lease is shortened to LEASE_SECONDS, so most effects wait for a slot longer than their
lease: a claim takes them over while their first holder still waits. Each must still be sent
by one task only. Concurrency is raised from 8 to CONCURRENCY to keep the run short; the
backlog (PAGES / CONCURRENCY rounds of ANSWER_SECONDS) still outlasts the lease twice over.

Figure: ``doubled without a crash <d>, delivered <n>`` from the fake's records (distinct
``entity_id`` CRITICALs; doubled: an entity alerted more than once).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import PostgresServer
from tests.fakes.victorops import FakeVictorOps, Fault
from tests.fault.process import TicketbridgeProcess, service_env

pytestmark = pytest.mark.slow

PAGES = 200
ANSWER_SECONDS = 5.0
LEASE_SECONDS = 10.0
CONCURRENCY = 40
SENDERS = 20
FIRST_TICKET = 240_001
SECRET = "s"
STARTUP_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 90.0
# Once every page arrived, no request for this long means no stale holder is left to send.
QUIET_SECONDS = ANSWER_SECONDS + 1.0


def webhook(ticket_id: int) -> bytes:
    return json.dumps(
        {
            "freshdesk_webhook": {
                "triggered_event": "{ticket_action:created}",
                "ticket_id": str(ticket_id),
                "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket_id}",
                "ticket_subject": "slow vendor",
                "ticket_status": "Open",
                "ticket_priority": "Urgent",
            }
        }
    ).encode()


def post_all(base_url: str, tickets: list[int]) -> list[int]:
    """POST every webhook from SENDERS threads, a client each; the status codes answered."""

    def share(part: list[int]) -> list[int]:
        headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        with httpx.Client(
            base_url=base_url, headers=headers, timeout=10.0, trust_env=False
        ) as client:
            return [
                client.post("/webhooks/freshdesk", content=webhook(t)).status_code for t in part
            ]

    with ThreadPoolExecutor(SENDERS) as pool:
        parts = pool.map(share, [tickets[i::SENDERS] for i in range(SENDERS)])
        return [code for part in parts for code in part]


def wait_quiet(vo: FakeVictorOps, *, until: float) -> None:
    """Return once no request arrived for QUIET_SECONDS (or at ``until``)."""
    last = (vo.request_count, time.monotonic())
    while time.monotonic() < until:
        time.sleep(0.2)
        count = vo.request_count
        if count != last[0]:
            last = (count, time.monotonic())
        elif time.monotonic() - last[1] >= QUIET_SECONDS:
            return


@pytest.mark.parametrize("store_backend", ["sqlite", "postgresql"])
def test_a_slow_vendor_with_a_backlog_past_the_lease_doubles_no_page(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if store_backend == "postgresql":
        server_pg: PostgresServer = request.getfixturevalue("postgresql_server")
        name = server_pg.migrated()
        request.addfinalizer(lambda: server_pg.drop(name))
        database_url = server_pg.url(name)
    else:
        database_url = f"sqlite:///{tmp_path / 'tb.db'}"
    tickets = list(range(FIRST_TICKET, FIRST_TICKET + PAGES))
    with FakeVictorOps() as vo:
        vo.schedule(*(Fault(status=200, act=True, delay=ANSWER_SECONDS) for _ in range(3 * PAGES)))
        env = service_env(
            tmp_path,
            DATABASE_URL=database_url,
            FRESHDESK__WEBHOOK_SECRETS=SECRET,
            VICTOROPS__REST_URL=vo.rest_url("KEY", "RK"),
            DISPATCH__LEASE_SECONDS=str(LEASE_SECONDS),
            DISPATCH__CONCURRENCY_PER_TARGET=str(CONCURRENCY),
            LOG_LEVEL="warning",
        )
        service = TicketbridgeProcess(env=env, log_path=tmp_path / "ticketbridge.log")
        try:
            service.start()
            service.wait_healthy(STARTUP_TIMEOUT)
            began = time.monotonic()
            codes = post_all(service.base_url, tickets)
            intake_seconds = time.monotonic() - began
            assert Counter(codes) == {202: PAGES}, Counter(codes)
            vo.wait_until(
                lambda v: len({r.entity_id for r in v.requests}) >= PAGES,
                timeout=DELIVERY_TIMEOUT,
            )
            wait_quiet(vo, until=time.monotonic() + DELIVERY_TIMEOUT)
            total_seconds = time.monotonic() - began
            log_tail = service.log_tail(10)
            log_text = service.log_path.read_text(encoding="utf-8", errors="replace")
        finally:
            service.stop()
        criticals = Counter(r.entity_id for r in vo.requests if r.message_type == "CRITICAL")

    delivered = len(criticals)
    doubled = sum(1 for n in criticals.values() if n > 1)
    figure = f"doubled without a crash {doubled}, delivered {delivered}"
    detail = (
        f"slow vendor ({store_backend}): {PAGES} webhooks in {intake_seconds:.1f} s, VictorOps "
        f"answering in {ANSWER_SECONDS:g} s, lease {LEASE_SECONDS:g} s, concurrency "
        f"{CONCURRENCY}; {sum(criticals.values())} CRITICALs in {total_seconds:.0f} s; "
        f"holders that found their lease taken before sending "
        f"{log_text.count('outbox.lease_lost_before_send')}"
    )
    print(f"\n{figure}\n{detail}")
    assert delivered == PAGES, f"{figure}\n{detail}\n{log_tail}"
    assert doubled == 0, f"{figure}\n{detail}\n{log_tail}"
