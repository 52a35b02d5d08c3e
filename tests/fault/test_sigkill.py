"""kill -9 mid-burst: every acknowledged webhook pages once, none twice.

N unique Urgent webhooks go to a real ``ticketbridge serve`` from several concurrent senders
that retry each one until it is acknowledged with a 2xx (Freshdesk's own behaviour, compressed).
Meanwhile the service is SIGKILLed every ~1.5 s of uptime, or sooner once a sixth of the burst
was acknowledged since the last restart (so a fast machine cannot take the burst in between two
kills), and restarted. Once every webhook is acked the
service is left running until the fake VictorOps has an incident for each ticket, or a deadline.

Figure: ``sigkill: <lost> lost, <doubled> doubled side effects of <N>, <K> crashes
(raw re-sends <R>)``. *lost*: acked tickets with no incident; *doubled*: entities with more
than one incident opened (VictorOps semantics: a repeated CRITICAL folds into the open
incident); *raw re-sends*: requests beyond one per effect key (at-least-once delivery: a kill
between the send and the commit of ``sent`` re-sends, and VictorOps folds it).

``TB_FAULT_WEBHOOKS`` (default 1500, up to 10000) sets N; ``TB_FAULT_BUDGET`` the time budget
in seconds (default 90 for 1500, scaled up for more); ``TB_FAULT_SEED`` the kill schedule.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PostgresServer
from tests.fakes.victorops import AlertRequest, FakeVictorOps
from tests.fault.process import TicketbridgeProcess

WEBHOOKS = int(os.environ.get("TB_FAULT_WEBHOOKS", "1500"))
BUDGET = float(os.environ.get("TB_FAULT_BUDGET", str(max(90.0, 90.0 * WEBHOOKS / 1500))))
# The run ends itself within BUDGET; the timeout is for a hang past it (start-up, teardown).
pytestmark = [pytest.mark.fault, pytest.mark.timeout(max(300.0, BUDGET + 120.0))]
SEED = int(os.environ.get("TB_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
SENDERS = 16
# Seconds of uptime between kills, uniformly drawn: short enough for several kills while a
# faster service takes the whole burst in (about 8 s of work here).
KILL_EVERY = (1.0, 2.0)
# ... or once this share of the burst was acknowledged since the last restart.
KILL_AFTER_SHARE = 1 / 6
STARTUP_TIMEOUT = 30.0
KILL_SLACK = 0.5
FIRST_TICKET = 500_001
WEBHOOK_SECRET = "s"
ADMIN_TOKEN = "a"
RETRYABLE = frozenset({408, 425, 429})


def webhook_body(ticket_id: int) -> bytes:
    return json.dumps(
        {
            "freshdesk_webhook": {
                "triggered_event": "{ticket_action:created}",
                "ticket_id": str(ticket_id),
                "ticket_url": f"https://acme.freshdesk.com/a/tickets/{ticket_id}",
                "ticket_subject": "crash",
                "ticket_status": "Open",
                "ticket_priority": "Urgent",
            }
        }
    ).encode()


def wait_for_kill(intake: Intake, all_done: threading.Event, uptime: float) -> bool:
    """Wait ``uptime`` seconds or until ``KILL_AFTER_SHARE`` of the burst was acked meanwhile;
    True if every webhook was acked first (no kill is due)."""
    deadline = time.monotonic() + uptime
    acked_before = intake.acked_count()
    while not all_done.wait(0.05):
        enough = intake.acked_count() - acked_before >= WEBHOOKS * KILL_AFTER_SHARE
        if enough or time.monotonic() >= deadline:
            return False
    return True


def entity_id(ticket_id: int) -> str:
    return f"freshdesk/acme/ticket/{ticket_id}"


@dataclass
class Intake:
    """What the senders saw; shared by the sender threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, float] = field(default_factory=dict)  # ticket -> monotonic ack time
    codes: Counter[int] = field(default_factory=Counter)  # every HTTP answer, by status
    transport_errors: Counter[str] = field(default_factory=Counter)
    rejected: dict[int, str] = field(default_factory=dict)  # final non-2xx answers
    crashed: list[str] = field(default_factory=list)  # exceptions inside sender threads
    finished_threads: int = 0

    def ack(self, ticket: int, code: int) -> None:
        with self.lock:
            self.codes[code] += 1
            self.acked[ticket] = time.monotonic()

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def answer(self, code: int) -> None:
        with self.lock:
            self.codes[code] += 1

    def transport_error(self, exc: Exception) -> None:
        with self.lock:
            self.transport_errors[type(exc).__name__] += 1


def sender(
    base_url: str,
    tickets: queue.SimpleQueue[int],
    intake: Intake,
    *,
    deadline: float,
    stop: threading.Event,
    all_done: threading.Event,
) -> None:
    """Deliver tickets from the queue, each retried until a 2xx, the deadline or ``stop``."""
    headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
    rng = random.Random()
    try:
        with httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(10.0, connect=2.0),
            trust_env=False,
        ) as client:
            while not stop.is_set():
                try:
                    ticket = tickets.get_nowait()
                except queue.Empty:
                    return
                body = webhook_body(ticket)
                pause = 0.02
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        response = client.post("/webhooks/freshdesk", content=body)
                    except httpx.TransportError as exc:  # down, killed mid-request, restarting
                        intake.transport_error(exc)
                    else:
                        code = response.status_code
                        if 200 <= code < 300:
                            intake.ack(ticket, code)
                            break
                        intake.answer(code)
                        if code < 500 and code not in RETRYABLE:
                            with intake.lock:
                                intake.rejected[ticket] = f"{code} {response.text[:200]}"
                            break
                    stop.wait(pause + rng.uniform(0, pause))
                    pause = min(pause * 2, 0.25)
    except Exception as exc:
        with intake.lock:
            intake.crashed.append(repr(exc))
    finally:
        with intake.lock:
            intake.finished_threads += 1
            if intake.finished_threads == SENDERS:
                all_done.set()


def wait_for(predicate: Callable[[], bool], *, until: float, every: float = 0.1) -> bool:
    while True:
        if predicate():
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(every)


def resends_without_kill(requests: list[AlertRequest], kills: list[float]) -> int:
    """Re-sends of an effect key with no kill between them (a double send in one life).

    A kill up to ``KILL_SLACK`` s before the first send still counts as between: bytes
    written just before death can be recorded by the fake just after the kill was noted.
    """
    times: dict[str, list[float]] = {}
    for r in requests:
        if r.effect_key is not None:
            times.setdefault(r.effect_key, []).append(r.at)
    calm = 0
    for sends in times.values():
        sends.sort()
        for first, second in itertools.pairwise(sends):
            if not any(first - KILL_SLACK <= k <= second for k in kills):
                calm += 1
    return calm


def check_ticket(client: httpx.Client, ticket: int) -> str | None:
    """None when the admin API shows one page effect for ``ticket``, sent; else why not."""
    response = client.get(f"/v1/tickets/freshdesk/{ticket}")
    if response.status_code != 200:
        return f"GET -> {response.status_code} {response.text[:200]}"
    view: dict[str, Any] = response.json()
    pages = [e for e in view["effects"] if e["target"] == "victorops" and e["kind"] == "page"]
    if len(pages) != 1:
        return f"{len(pages)} page effects: {pages}"
    if pages[0]["status"] != "sent":
        page = pages[0]
        return f"page {page['status']} after {page['attempts']} attempts: {page['last_error']}"
    if pages[0]["payload"].get("entity_id") != entity_id(ticket):
        return f"page entity_id {pages[0]['payload'].get('entity_id')!r}"
    return None


@pytest.mark.parametrize("store_backend", ["sqlite", "postgresql"])
def test_sigkill_mid_burst_loses_and_doubles_nothing(
    store_backend: str,
    request: pytest.FixtureRequest,
    fake_victorops: FakeVictorOps,
    ticketbridge_process: Callable[..., TicketbridgeProcess],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    if store_backend == "postgresql":
        server_pg: PostgresServer = request.getfixturevalue("postgresql_server")
        name = server_pg.migrated()
        request.addfinalizer(lambda: server_pg.drop(name))
        database = {
            "DATABASE_URL": server_pg.url(name),
            # Another incarnation cannot know the killed one is gone: its leases must expire.
            "DISPATCH__LEASE_SECONDS": "3",
        }
    else:
        database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'tb.db'}"}
    began = time.monotonic()
    ingest_deadline = began + BUDGET * 0.8
    drain_deadline = began + BUDGET * 0.9
    check_deadline = began + BUDGET * 0.95
    rng = random.Random(SEED)
    server = ticketbridge_process(
        **database,
        FRESHDESK__WEBHOOK_SECRETS=WEBHOOK_SECRET,
        ADMIN_TOKEN=ADMIN_TOKEN,
        VICTOROPS__REST_URL=fake_victorops.rest_url("KEY", "RK"),
        LOG_LEVEL="warning",
        DISPATCH__BACKOFF_INITIAL="0.05",
        DISPATCH__BACKOFF_MAX="0.5",
    )
    server.start()
    restarts = [server.wait_healthy(STARTUP_TIMEOUT)]

    tickets: queue.SimpleQueue[int] = queue.SimpleQueue()
    wanted = list(range(FIRST_TICKET, FIRST_TICKET + WEBHOOKS))
    for ticket in wanted:
        tickets.put(ticket)
    intake = Intake()
    stop, all_done = threading.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=sender,
            args=(server.base_url, tickets, intake),
            kwargs={"deadline": ingest_deadline, "stop": stop, "all_done": all_done},
            name=f"sender-{i}",
            daemon=True,
        )
        for i in range(SENDERS)
    ]
    kills: list[float] = []
    try:
        for thread in threads:
            thread.start()
        # The killer: ~1.5 s of uptime (or a sixth of the burst acked), SIGKILL, restart,
        # until every webhook is acked.
        while not wait_for_kill(intake, all_done, rng.uniform(*KILL_EVERY)):
            if time.monotonic() >= ingest_deadline:
                break
            kills.append(time.monotonic())
            server.kill()
            server.start()
            restarts.append(server.wait_healthy(STARTUP_TIMEOUT))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    ingest_seconds = time.monotonic() - began
    crashes = len(kills)

    assert not intake.crashed, f"sender threads crashed: {intake.crashed[:5]}"
    assert not intake.rejected, (
        f"{len(intake.rejected)} webhooks refused with a final 4xx, e.g. "
        f"{list(intake.rejected.items())[:5]}"
    )
    if len(intake.acked) < WEBHOOKS:
        pytest.fail(
            f"only {len(intake.acked)} of {WEBHOOKS} webhooks acked within "
            f"{ingest_seconds:.0f} s ({crashes} crashes, answers {dict(intake.codes)}, "
            f"transport errors {dict(intake.transport_errors)}, seed {SEED}); the machine may "
            f"be too slow for TB_FAULT_WEBHOOKS={WEBHOOKS} in TB_FAULT_BUDGET={BUDGET:.0f}\n"
            f"{server.log_tail()}"
        )

    # Leave the last incarnation running until every acked ticket has its incident.
    expected = {entity_id(t): t for t in intake.acked}
    fake_victorops.wait_until(
        lambda vo: expected.keys() <= vo.incidents_opened().keys(),
        timeout=max(0.0, drain_deadline - time.monotonic()),
    )
    drain_seconds = time.monotonic() - began - ingest_seconds

    opened = fake_victorops.incidents_opened()
    requests = fake_victorops.requests
    lost = sorted(t for e, t in expected.items() if e not in opened)
    doubled = sorted(e for e, n in opened.items() if n > 1)
    resends = fake_victorops.raw_resends()
    stray = [
        r
        for r in requests
        if r.entity_id not in expected or r.message_type != "CRITICAL" or r.status != 200
    ]
    keys_per_entity = Counter(
        entity for entity, _key in {(r.entity_id, r.effect_key) for r in requests}
    )
    rekeyed = sorted(str(e) for e, n in keys_per_entity.items() if n > 1)
    calm_resends = resends_without_kill(requests, kills)

    # The admin API agrees: the tickets acked last before each kill (the ones most likely
    # caught between send and commit) and a random sample show one page, sent.
    by_ack = sorted(intake.acked.items(), key=lambda item: item[1])
    sample = set(rng.sample(wanted, min(20, WEBHOOKS)))
    for killed_at in kills:
        before = [t for t, at in by_ack if at < killed_at]
        sample.update(before[-3:])
    problems: dict[int, str] = {}
    with httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5.0,
        trust_env=False,
    ) as admin:

        def all_sent() -> bool:
            for ticket in sorted(sample):
                problem = check_ticket(admin, ticket)
                if problem is None:
                    problems.pop(ticket, None)
                else:
                    problems[ticket] = problem
            return not problems

        wait_for(all_sent, until=check_deadline, every=0.2)

    figure = (
        f"sigkill ({store_backend}): {len(lost)} lost, {len(doubled)} doubled side effects "
        f"of {WEBHOOKS}, {crashes} crashes (raw re-sends {resends})"
    )
    detail = (
        f"sigkill detail: ingest {ingest_seconds:.1f} s, drain {drain_seconds:.1f} s, "
        f"total {time.monotonic() - began:.1f} s; answers {dict(sorted(intake.codes.items()))}, "
        f"transport errors {dict(intake.transport_errors)}; VictorOps requests {len(requests)}, "
        f"re-sends with no kill in between {calm_resends}, cut off by a kill "
        f"{fake_victorops.aborted}; "
        f"restart to healthy mean {sum(restarts[1:]) / max(1, crashes):.2f} s, "
        f"max {max(restarts):.2f} s; admin sample {len(sample)}; seed {SEED}"
    )
    print(f"\n{figure}\n{detail}")
    record_property("figure", figure)
    record_property("detail", detail)

    assert not lost, f"{len(lost)} acked tickets never paged, e.g. {lost[:10]}\n{figure}"
    assert not doubled, f"{len(doubled)} entities paged twice, e.g. {doubled[:10]}\n{figure}"
    assert not stray, (
        f"{len(stray)} unexpected VictorOps requests (entity, type, status), e.g. "
        f"{[(r.entity_id, r.message_type, r.status) for r in stray[:5]]}"
    )
    assert not rekeyed, f"{len(rekeyed)} entities got two effect keys, e.g. {rekeyed[:5]}"
    assert calm_resends == 0, f"effects re-sent with no crash in between: {detail}"
    assert not problems, (
        f"admin API disagrees for {len(problems)} of {len(sample)} sampled tickets: "
        f"{dict(list(problems.items())[:5])}"
    )
    assert crashes >= 3, f"only {crashes} crashes happened mid-burst; {figure}\n{detail}"
