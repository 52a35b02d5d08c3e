"""SIGTERM drains in-flight work; what is left resumes after restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import PostgresServer
from tests.fakes.victorops import FakeVictorOps, Fault
from tests.fault.process import TicketbridgeProcess

TICKETS = 60


def webhook(ticket: int) -> bytes:
    return json.dumps(
        {
            "freshdesk_webhook": {
                "triggered_event": "{ticket_action:created}",
                "ticket_id": str(ticket),
                "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket}",
                "ticket_subject": "sigterm",
                "ticket_status": "Open",
                "ticket_priority": "Urgent",
            }
        }
    ).encode()


@pytest.mark.fault
@pytest.mark.parametrize("store_backend", ["sqlite", "postgresql"])
def test_sigterm_drains_and_nothing_acknowledged_is_lost(
    store_backend: str,
    request: pytest.FixtureRequest,
    fake_victorops: FakeVictorOps,
    ticketbridge_process: Callable[..., TicketbridgeProcess],
    tmp_path: Path,
) -> None:
    vo = fake_victorops
    # Every page takes 0.3 s to answer, so a SIGTERM finds deliveries in flight.
    vo.schedule(*[Fault(status=200, delay=0.3, act=True) for _ in range(TICKETS)])
    if store_backend == "postgresql":
        # The database clock's sync loop runs only here: shutdown must end it too.
        server_pg: PostgresServer = request.getfixturevalue("postgresql_server")
        name = server_pg.migrated()
        request.addfinalizer(lambda: server_pg.drop(name))
        database_url = server_pg.url(name)
    else:
        database_url = f"sqlite:///{tmp_path / 'tb.db'}"
    server = ticketbridge_process(
        DATABASE_URL=database_url,
        FRESHDESK__WEBHOOK_SECRETS="s",
        VICTOROPS__REST_URL=vo.rest_url(),
        LOG_LEVEL="warning",
    )
    server.start()
    server.wait_healthy(30)
    headers = {"authorization": "Bearer s", "content-type": "application/json"}
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:

        def send(ticket: int) -> int:
            return client.post(
                "/webhooks/freshdesk", content=webhook(ticket), headers=headers
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(1, TICKETS + 1)))
    assert answers == [202] * TICKETS
    in_flight_at_term = TICKETS - len(vo.incidents_opened())
    started = time.monotonic()
    server.stop(grace=30)  # SIGTERM, and SIGKILL only if it has not exited after 30 s
    exit_seconds = time.monotonic() - started
    delivered_before_exit = len(vo.incidents_opened())
    server.start()
    server.wait_healthy(30)
    done = vo.wait_until(lambda v: len(v.incidents_opened()) >= TICKETS, timeout=60)
    opened = vo.incidents_opened()
    lost = [t for t in range(1, TICKETS + 1) if opened[f"freshdesk/acme/ticket/{t}"] == 0]
    doubled = [entity for entity, n in opened.items() if n > 1]
    figure = (
        f"sigterm: 0 lost of {TICKETS} -> lost {len(lost)}, doubled {len(doubled)}; "
        f"{in_flight_at_term} not yet delivered at SIGTERM, {delivered_before_exit} delivered "
        f"before exit, exit after {exit_seconds:.1f} s, raw re-sends {vo.raw_resends()}"
    )
    print(figure)
    assert done, figure
    assert not lost, figure
    assert not doubled, figure
    assert exit_seconds < 25, figure
    assert in_flight_at_term > 0, f"nothing was in flight when SIGTERM came: {figure}"
    assert "Traceback" not in server.log_path.read_text(), server.log_tail()
