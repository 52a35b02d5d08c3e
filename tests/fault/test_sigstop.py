"""A paused replica (SIGSTOP past its lease) cannot write after
resuming → "stale writes 0".

Replica A takes a webhook and sends its page at once (the effect was committed leased to A,
fencing token 1); the fake VictorOps holds that request. A is SIGSTOPped. Replica B starts on
the same PostgreSQL database; once A's lease (2 s) has expired, B claims the page (token 2),
sends it and records it sent. Then A is SIGCONTed: its held call returns, and its attempt to
record the outcome must change nothing — the row stays exactly as B left it, and A logs that
it lost the lease. VictorOps folds the second CRITICAL into the incident of the first
(``entity_id``): incidents opened 1.

Figure: ``sigstop: stale writes 0; A's late finish rejected by the fencing token (token 2 held
by B); incidents opened 1``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PostgresServer, freshdesk_body
from tests.fakes.victorops import FakeVictorOps, Fault
from tests.fault.process import TicketbridgeProcess
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import outbox

pytestmark = pytest.mark.fault

LEASE_SECONDS = 2.0
HOLD_SECONDS = 6.0  # the fake VictorOps answers A's call this late
STARTUP_TIMEOUT = 30.0
SETTLE_TIMEOUT = 20.0
SECRET = "s"


def page_row(engine: sa.Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(outbox).where(outbox.c.kind == "page")).mappings().first()
    return dict(row) if row is not None else None


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_replica_paused_past_its_lease_cannot_write_after_resuming(
    postgresql_server: PostgresServer,
    fake_victorops: FakeVictorOps,
    ticketbridge_process: Callable[..., TicketbridgeProcess],
    record_property: Callable[[str, object], None],
) -> None:
    name = postgresql_server.migrated()
    url = postgresql_server.url(name)
    engine = sa.create_engine(Store(url).url)
    settings = {
        "DATABASE_URL": url,
        "FRESHDESK__WEBHOOK_SECRETS": SECRET,
        "VICTOROPS__REST_URL": fake_victorops.rest_url("KEY", "RK"),
        "DISPATCH__LEASE_SECONDS": str(LEASE_SECONDS),
        "DISPATCH__HTTP_TIMEOUT": "30",
        "LOG_FORMAT": "json",
    }
    a, b = ticketbridge_process(**settings), ticketbridge_process(**settings)
    paused = False
    try:
        a.start()
        a.wait_healthy(STARTUP_TIMEOUT)
        fake_victorops.schedule(Fault(status=200, act=True, delay=HOLD_SECONDS))
        answer = httpx.post(
            f"{a.base_url}/webhooks/freshdesk",
            json=freshdesk_body(31),
            headers={"Authorization": f"Bearer {SECRET}"},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        assert wait_for(lambda: fake_victorops.request_count >= 1, 10), "A never sent the page"
        held = page_row(engine)
        assert held is not None
        assert held["lease_token"] == 1, held  # A holds it (the fast path's lease)
        assert a.pid is not None
        os.kill(a.pid, signal.SIGSTOP)
        paused = True

        b.start()
        b.wait_healthy(STARTUP_TIMEOUT)
        assert wait_for(lambda: (page_row(engine) or {}).get("status") == "sent", SETTLE_TIMEOUT), (
            f"B never delivered the page\n{b.log_tail()}"
        )
        by_b = page_row(engine)
        assert by_b is not None
        assert by_b["lease_token"] == 2, by_b

        os.kill(a.pid, signal.SIGCONT)
        paused = False
        resumed = time.monotonic()
        # A's held call comes back (HOLD_SECONDS after it was made); give A time to try.
        lost = wait_for(lambda: "outbox.lease_lost" in a.log_path.read_text(), SETTLE_TIMEOUT)
        after = page_row(engine)
        stale = 0 if after == by_b else 1
        opened = fake_victorops.incidents_opened()["freshdesk/acme/ticket/31"]
        figure = (
            f"sigstop: stale writes {stale}; A's late finish rejected by the fencing token "
            f"(token {by_b['lease_token']} held by B): {lost}; CRITICALs sent "
            f"{fake_victorops.request_count}, incidents opened {opened}; A tried "
            f"{time.monotonic() - resumed:.1f} s after SIGCONT"
        )
        print(f"\n{figure}")
        record_property("figure", figure)
        assert lost, f"A never tried to record its outcome\n{a.log_tail()}"
        assert stale == 0, f"{figure}\nB left {by_b}\nnow {after}"
        assert opened == 1, figure
    finally:
        if paused and a.pid is not None:
            os.kill(a.pid, signal.SIGCONT)
        engine.dispose()
        a.stop()
        b.stop()
        postgresql_server.drop(name)
