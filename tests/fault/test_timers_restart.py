"""Timers due while the service was down fire exactly once on restart,
marked late; tickets resolved meanwhile fire nothing.

A real ``ticketbridge serve`` runs with a policy whose windows are seconds long (Urgent
Tier-One 5 s, engagement 6 s; Medium Tier-One 5 s), a fake VictorOps (bridges by routing key)
and a fake Freshdesk API (the re-read before a bridge, notes, the reassign). N Urgent tickets
and a few Medium ones open; R Urgent ones are resolved by webhook while the service is up.
The service is SIGKILLed before the first Tier-One deadline and kept down until every
Tier-One and engagement deadline has passed (the one wall-clock wait here: the point is that
real time goes by while nothing runs). While it is down, M more Urgent tickets are resolved
in the helpdesk; their webhooks cannot arrive, so only the re-read can tell. After the restart
every still-open Urgent ticket must get exactly one Tier-Two bridge (a CRITICAL with
``entity_id`` ``…/bridge`` on the Tier-Two routing key) and one engagement INFO; the resolved
ones no bridge (the M: the bridge is skipped on the re-read, and their incident recovers);
and the admin API must show each fired Tier-One timer ``fired`` in the second life with
``late_seconds`` > 0.

Figure: ``timers restart: fired once <k>/<N-R-M>, doubled <d>, fired-for-resolved <r>``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import freshdesk_body
from tests.fakes.freshdesk import FakeFreshdesk
from tests.fakes.victorops import AlertRequest, FakeVictorOps
from tests.fault.process import TicketbridgeProcess
from ticketbridge.app.policy_file import default_policy_text, parse_policy
from ticketbridge.rules.model import Priority

pytestmark = pytest.mark.fault

URGENT = 50
RESOLVED = 10  # Urgent tickets resolved by webhook while the service is up
RESOLVED_WHILE_DOWN = 10  # Urgent tickets resolved in the helpdesk during the outage
MEDIUM = 5
FIRST_TICKET = 700_001
TIER_ONE_S = 5  # Urgent and Medium Tier-One window
ENGAGEMENT_S = 6  # Urgent initial-engagement window
OUTAGE_MARGIN = 1.0  # stay down this long past the last deadline
STARTUP_TIMEOUT = 30.0
ARRIVAL_TIMEOUT = 20.0  # after the restart, for every expected bridge, INFO and RECOVERY
# Opened (Urgent) once the rest has arrived, its Tier-One deadline just past: its bridge
# means the scheduler has polled past every timer due before it, where doubles would be.
LAST_TICKET = 799_999
SENDERS = 8
WEBHOOK_SECRET = "s"
ADMIN_TOKEN = "a"
API_KEY = "KEY"
ROUTING_KEY = "RK"
TIER_TWO_KEY = "tier2"
URGENT_CODE, MEDIUM_CODE = 4, 2  # Freshdesk API priority numbers
OPEN_CODE, RESOLVED_CODE = 2, 4  # Freshdesk API status numbers

# (built-in text, replacement): each must occur exactly once in the built-in policy.
POLICY_EDITS = (
    ("{within: 60m, calendar: always}", f"{{within: {ENGAGEMENT_S}s, calendar: always}}"),
    ("{within: 30m, then: bridge}", f"{{within: {TIER_ONE_S}s, then: bridge}}"),
    ("customer_updates: {every: 1h}", "customer_updates: {every: 600s}"),
    ("{within: 2h, then: reassign}", f"{{within: {TIER_ONE_S}s, then: reassign}}"),
)


def short_policy() -> str:
    """The built-in policy with Urgent/Medium windows of seconds (docs/policy.md)."""
    text = default_policy_text()
    for old, new in POLICY_EDITS:
        assert text.count(old) == 1, f"built-in policy changed: {old!r} not found once"
        text = text.replace(old, new)
    policy = parse_policy(text, source="short-policy")
    urgent, medium = policy.for_priority(Priority.URGENT), policy.for_priority(Priority.MEDIUM)
    assert urgent.tier_one.within.total_seconds() == TIER_ONE_S
    assert urgent.engagement.within.total_seconds() == ENGAGEMENT_S
    assert medium.tier_one.within.total_seconds() == TIER_ONE_S
    return text


def post_all(base_url: str, bodies: list[dict[str, Any]]) -> list[tuple[int, float, str]]:
    """POST every webhook (concurrently); return (status, wall time acked, text) for each."""
    headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}

    def post_chunk(chunk: list[dict[str, Any]]) -> list[tuple[int, float, str]]:
        answers = []
        with httpx.Client(base_url=base_url, headers=headers, timeout=10.0, trust_env=False) as c:
            for body in chunk:
                response = c.post("/webhooks/freshdesk", json=body)
                answers.append((response.status_code, time.time(), response.text[:200]))
        return answers

    chunks = [bodies[i::SENDERS] for i in range(SENDERS)]
    with ThreadPoolExecutor(SENDERS) as pool:
        return [answer for answers in pool.map(post_chunk, chunks) for answer in answers]


def per_ticket(requests: Iterable[AlertRequest], suffix: str = "") -> Counter[int]:
    """Requests per ticket id, by ``entity_id`` ``freshdesk/acme/ticket/<id><suffix>``."""
    counts: Counter[int] = Counter()
    for r in requests:
        entity = r.entity_id or ""
        if entity.endswith(suffix):
            tail = entity.removesuffix(suffix).rsplit("/", 1)[-1]
            if tail.isdigit():
                counts[int(tail)] += 1
    return counts


def bridges(vo: FakeVictorOps) -> Counter[int]:
    """Bridge requests per ticket: CRITICAL, ``…/bridge``, on the Tier-Two routing key."""
    return per_ticket(
        (
            r
            for r in vo.requests
            if r.routing_key == TIER_TWO_KEY
            and r.message_type == "CRITICAL"
            and (r.entity_id or "").endswith("/bridge")
        ),
        "/bridge",
    )


def alerts(vo: FakeVictorOps, message_type: str) -> Counter[int]:
    """Requests of ``message_type`` per ticket on the ticket's own entity (Tier-One key)."""
    return per_ticket(
        r for r in vo.requests if r.routing_key == ROUTING_KEY and r.message_type == message_type
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def await_quiet(server: TicketbridgeProcess, vo: FakeVictorOps, helpdesk: FakeFreshdesk) -> None:
    """Wait (bounded) until the scheduler has fired LAST_TICKET's Tier-One timer, due after
    every other timer that was due, and then no effect is queued or in flight: a double
    bridge, from a timer fired twice, would have been sent by then."""
    helpdesk.set_ticket(LAST_TICKET, priority=URGENT_CODE, status=OPEN_CODE)
    opened = datetime.fromtimestamp(time.time() - TIER_ONE_S, UTC)
    body = freshdesk_body(LAST_TICKET, ticket_updated_at=opened.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert post_all(server.base_url, [body])[0][0] == 202
    fired = vo.wait_until(lambda fake: LAST_TICKET in bridges(fake), timeout=ARRIVAL_TIMEOUT)
    assert fired, f"no bridge for the last ticket\n{server.log_tail()}"
    with httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5.0,
        trust_env=False,
    ) as admin:
        for _ in range(int(ARRIVAL_TIMEOUT / 0.1)):
            waiting = [
                effect
                for state in ("pending", "retrying")
                for effect in admin.get("/v1/effects", params={"state": state}).json()["effects"]
            ]
            if not waiting:
                return
            time.sleep(0.1)
    pytest.fail(f"effects still queued: {waiting[:5]}\n{server.log_tail()}")


def test_timers_due_while_down_fire_once_on_restart(
    fake_victorops: FakeVictorOps,
    ticketbridge_process: Callable[..., TicketbridgeProcess],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    began = time.monotonic()
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(short_policy(), encoding="utf-8")
    helpdesk = FakeFreshdesk().start()
    try:
        server = ticketbridge_process(
            DATABASE_URL=f"sqlite:///{tmp_path / 'tb.db'}",
            POLICY_FILE=str(policy_file),
            FRESHDESK__WEBHOOK_SECRETS=WEBHOOK_SECRET,
            FRESHDESK__API_URL=helpdesk.base_url,
            FRESHDESK__API_KEY="fd-key",
            FRESHDESK__CALLS_PER_MINUTE="100000",
            ADMIN_TOKEN=ADMIN_TOKEN,
            VICTOROPS__REST_URL=fake_victorops.rest_url(API_KEY, ROUTING_KEY),
            VICTOROPS__TIER_TWO_ROUTING_KEY=TIER_TWO_KEY,
            LOG_LEVEL="warning",
            DISPATCH__BACKOFF_INITIAL="0.05",
            DISPATCH__BACKOFF_MAX="0.5",
        )
        run_scenario(server, fake_victorops, helpdesk, began, record_property)
    finally:
        helpdesk.stop()


def run_scenario(
    server: TicketbridgeProcess,
    vo: FakeVictorOps,
    helpdesk: FakeFreshdesk,
    began: float,
    record_property: Callable[[str, object], None],
) -> None:
    urgent = list(range(FIRST_TICKET, FIRST_TICKET + URGENT))
    medium = list(range(FIRST_TICKET + URGENT, FIRST_TICKET + URGENT + MEDIUM))
    # Spread both resolved sets over the opening order (the earliest deadlines included).
    resolved = set(urgent[0::5][:RESOLVED])
    resolved_while_down = set(urgent[1::5][:RESOLVED_WHILE_DOWN])
    unresolved = sorted(set(urgent) - resolved - resolved_while_down)
    all_resolved = resolved | resolved_while_down
    for ticket in urgent:
        helpdesk.set_ticket(ticket, priority=URGENT_CODE, status=OPEN_CODE)
    for ticket in medium:
        helpdesk.set_ticket(ticket, priority=MEDIUM_CODE, status=OPEN_CODE)

    server.start()
    server.wait_healthy(STARTUP_TIMEOUT)

    # While up: open every ticket, then resolve R of them (all acked before any deadline).
    opened = post_all(
        server.base_url,
        [freshdesk_body(t) for t in urgent]
        + [freshdesk_body(t, priority="Medium") for t in medium],
    )
    for ticket in resolved:
        helpdesk.set_ticket(ticket, priority=URGENT_CODE, status=RESOLVED_CODE)
    resolves = post_all(
        server.base_url,
        [
            freshdesk_body(t, status="Resolved", triggered="{status:{from:2,to:4}}")
            for t in sorted(resolved)
        ],
    )
    refused = [a for a in opened + resolves if a[0] != 202]
    assert not refused, f"webhooks not accepted: {refused[:5]}\n{server.log_tail()}"
    bridges_before_kill = sum(bridges(vo).values())
    killed_at = time.time()
    server.kill()
    ingest_seconds = time.monotonic() - began

    # Down: M tickets are resolved in the helpdesk (no webhook reaches a dead service), and
    # time passes every Tier-One and engagement deadline (each is at most ack time + window).
    for ticket in resolved_while_down:
        helpdesk.set_ticket(ticket, priority=URGENT_CODE, status=RESOLVED_CODE)
    last_deadline = max(at for _, at, _ in opened) + max(TIER_ONE_S, ENGAGEMENT_S)
    time.sleep(max(0.0, last_deadline + OUTAGE_MARGIN - time.time()))

    restarted_at = time.time()
    down_seconds = restarted_at - killed_at
    server.start()
    server.wait_healthy(STARTUP_TIMEOUT)

    def arrived(fake: FakeVictorOps) -> bool:
        return (
            set(unresolved) <= bridges(fake).keys()
            and set(unresolved) <= alerts(fake, "INFO").keys()
            # A resolved ticket recovers its incident if it was paged; one resolved before
            # its page went out (the re-read saw it resolved) is never paged at all.
            and {t for t in all_resolved if alerts(fake, "CRITICAL")[t]}
            <= alerts(fake, "RECOVERY").keys()
        )

    vo.wait_until(arrived, timeout=ARRIVAL_TIMEOUT)
    arrival_seconds = time.time() - restarted_at
    await_quiet(server, vo, helpdesk)

    bridge_counts = bridges(vo)
    assert bridge_counts.pop(LAST_TICKET) == 1
    info_counts = alerts(vo, "INFO")
    recovered = alerts(vo, "RECOVERY")
    fired_once = sum(1 for t in unresolved if bridge_counts[t] == 1)
    doubled = sorted(t for t, n in bridge_counts.items() if n > 1)
    fired_for_resolved = sorted(t for t in all_resolved if bridge_counts[t])
    missing = sorted(t for t in unresolved if bridge_counts[t] == 0)
    stray_bridges = sorted(set(bridge_counts) - set(urgent))
    info_doubled = sorted(t for t, n in info_counts.items() if n > 1)
    info_missing = sorted(t for t in unresolved if info_counts[t] == 0)
    info_for_resolved = sorted(t for t in resolved if info_counts[t])
    info_for_resolved_while_down = sorted(t for t in resolved_while_down if info_counts[t])
    paged = alerts(vo, "CRITICAL")
    not_recovered = sorted(t for t in all_resolved if paged[t] and not recovered[t])
    never_paged = sorted(t for t in all_resolved if not paged[t])
    pages_doubled = sorted(e for e, n in vo.incidents_opened().items() if n > 1)
    notes = helpdesk.notes()
    reassigned = Counter(
        r.ticket_id for r in helpdesk.requests if r.method == "PUT" and r.ticket_id is not None
    )

    # The admin API: each Tier-One timer that was due fired once, late, after the restart.
    problems: dict[int, str] = {}
    lateness: list[float] = []
    due_times: list[float] = []
    with httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5.0,
        trust_env=False,
    ) as admin:
        for ticket in urgent + medium:
            response = admin.get(f"/v1/tickets/freshdesk/{ticket}")
            if response.status_code != 200:
                problems[ticket] = f"GET -> {response.status_code} {response.text[:200]}"
                continue
            view = response.json()
            timers = {t["kind"]: t for t in view["timers"]}
            tier_one = timers.get("tier_one")
            if tier_one is None:
                problems[ticket] = f"no tier_one timer: {view['timers']}"
                continue
            due_times.append(epoch(tier_one["due_at"]))
            effects = {e["kind"]: e for e in view["effects"]}
            kinds = Counter(e["kind"] for e in view["effects"])
            if ticket in resolved:
                if tier_one["status"] != "cancelled" or kinds["bridge"]:
                    problems[ticket] = f"resolved, yet tier_one {tier_one}, effects {kinds}"
                continue
            fired_at, late = tier_one["fired_at"], tier_one["late_seconds"]
            if tier_one["status"] != "fired" or fired_at is None or late is None:
                problems[ticket] = f"tier_one not fired: {tier_one}"
                continue
            if not (late > 0 and epoch(fired_at) >= restarted_at):
                problems[ticket] = f"tier_one fired on time or before the restart: {tier_one}"
                continue
            lateness.append(late)
            wanted = "reassign" if ticket in medium else "bridge"
            status = "skipped" if ticket in resolved_while_down else "sent"
            if kinds[wanted] != 1 or effects[wanted]["status"] != status:
                problems[ticket] = f"want one {wanted} {status}: {view['effects']}"
            elif ticket in resolved_while_down and view["state"]["status"] != "resolved":
                problems[ticket] = f"re-read did not resolve the ticket: {view['state']}"

    total = time.monotonic() - began
    figure = (
        f"timers restart: fired once {fired_once}/{len(unresolved)}, doubled {len(doubled)}, "
        f"fired-for-resolved {len(fired_for_resolved)}"
    )
    detail = (
        f"timers restart detail: {URGENT} Urgent ({len(resolved)} resolved while up, "
        f"{len(resolved_while_down)} while down) + {MEDIUM} Medium; start and ingest "
        f"{ingest_seconds:.1f} s, killed {min(due_times, default=killed_at) - killed_at:.2f} s "
        f"before the first deadline, down {down_seconds:.1f} s; bridges, INFOs and RECOVERYs "
        f"in {arrival_seconds:.1f} s after the restart; Tier-One lateness "
        f"{min(lateness, default=0):.2f}-{max(lateness, default=0):.2f} s; engagement INFO once "
        f"{len(unresolved) - len(info_missing) - len(info_doubled)}/{len(unresolved)}, for "
        f"tickets resolved while down {len(info_for_resolved_while_down)}; helpdesk notes on "
        f"tickets resolved while down {sum(notes[t] for t in resolved_while_down)}; Medium "
        f"reassigned {sum(1 for t in medium if reassigned[t] == 1)}/{MEDIUM}; resolved before "
        f"their page went out (never paged) {len(never_paged)}; total {total:.1f} s"
    )
    print(f"\n{figure}\n{detail}")
    record_property("figure", figure)
    record_property("detail", detail)

    # The scenario itself: the kill came before any deadline, so they all fell in the outage.
    assert due_times, "no Tier-One timers at all"
    assert killed_at < min(due_times), (
        f"killed at {killed_at:.3f}, after the first Tier-One deadline {min(due_times):.3f}: "
        f"opening {URGENT + MEDIUM} tickets took too long ({ingest_seconds:.1f} s)"
    )
    assert bridges_before_kill == 0, f"{bridges_before_kill} bridges before the kill"
    assert not missing, f"{len(missing)} open tickets never bridged: {missing[:10]}\n{figure}"
    assert not doubled, f"tickets bridged more than once: {doubled[:10]}\n{figure}"
    assert not fired_for_resolved, f"resolved tickets bridged: {fired_for_resolved}\n{figure}"
    assert fired_once == len(unresolved), figure
    assert not stray_bridges, f"bridges for tickets never opened: {stray_bridges[:10]}"
    assert not info_missing, f"engagement INFO missing for {info_missing[:10]}"
    assert not info_doubled, f"engagement INFO more than once for {info_doubled[:10]}"
    assert not info_for_resolved, f"engagement INFO for resolved {info_for_resolved[:10]}"
    assert not not_recovered, f"resolved tickets whose incident never recovered: {not_recovered}"
    unpaged_open = sorted(t for t in unresolved if not paged[t])
    assert not unpaged_open, f"open Urgent tickets never paged: {unpaged_open[:10]}"
    assert not pages_doubled, f"entities paged twice: {pages_doubled[:5]}"
    assert all(reassigned[t] == 1 for t in medium), f"Medium reassigns: {reassigned}"
    assert not problems, (
        f"admin API disagrees for {len(problems)} tickets: {dict(list(problems.items())[:5])}"
    )
    assert total < 40, f"took {total:.1f} s"
    # Tickets resolved while the service was down get nothing when their timers fire late:
    # the re-read before each note and INFO sees them resolved.
    assert not info_for_resolved_while_down, figure
    assert sum(notes[t] for t in resolved_while_down) == 0, figure
