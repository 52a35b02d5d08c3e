"""Timers after downtime, through the app on a stepped clock: a commitment missed many times
over fires once, late, and a per-ticket ceiling turns a runaway into one dead letter."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
import yaml

from tests.conftest import ADMIN_TOKEN, AppHarness, make_settings
from tests.scenarios.harness import FD, VO_API, Scenario
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.app.policy_file import default_policy_text, load_policy, parse_policy
from ticketbridge.app.services.ingest import PolicyBook, ingest
from ticketbridge.app.services.timers import fire_due_timers, prepare_timers, read_upcoming
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent

S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
TEN_YEARS = timedelta(days=3653)
VENDORS: dict[str, Any] = {
    "freshdesk": {"webhook_secrets": ["fd-secret-do-not-log"], "api_url": FD, "api_key": "k"},
    "victorops": {
        "rest_url": "https://vo.test/integrations/generic/20131114/alert/K/RK",
        "api_url": VO_API,
        "api_id": "id",
        "api_key": "key",
        "tier_two_policy": "team-tier-two",
    },
}


def _policy(**changes: Any) -> Policy:
    """The built-in policy with Urgent's customer updates every 5 s, and ``changes`` on top."""
    document = yaml.safe_load(default_policy_text())
    document["priorities"]["urgent"]["customer_updates"] = {"every": "5s"}
    document.update(changes)
    return parse_policy(yaml.safe_dump(document), source="<test policy>")


Opened = Callable[..., contextlib.AbstractAsyncContextManager[Scenario]]


@pytest.fixture
def opened(store: Store, clock: FakeClock) -> Opened:
    """``async with opened(policy) as scenario``: the service running under ``policy``
    (workers driven by the test) until the block ends; enter again for a restart on the same
    database."""

    @contextlib.asynccontextmanager
    async def start(policy: Policy) -> AsyncIterator[Scenario]:
        settings = make_settings(**VENDORS)
        services = Services(settings=settings, store=store, policy=policy, clock=clock)
        services.fast_path = False
        app = create_app(settings, services=services, start_workers=False)
        with respx.mock(assert_all_called=False) as mock:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as c:
                    yield Scenario(AppHarness(c, services, app), clock, mock)

    return start


def _commitment(key: str) -> str | None:
    """The commitment a reminder's effect key belongs to (None: not a reminder)."""
    target, _, kind, name = key.split(":", 3)
    if target == "victorops" and kind != "info":
        return None
    return "customer_update" if name.startswith("update-") else name


async def _reminders(scenario: Scenario, ticket: int) -> Counter[tuple[str, str]]:
    """(commitment, target) of every reminder the ticket was sent, counted."""
    view = await scenario.h.ticket(ticket)
    found: Counter[tuple[str, str]] = Counter()
    for effect in view["effects"]:
        commitment = _commitment(effect["key"])
        if commitment is not None and effect["kind"] in ("note", "info"):
            found[(commitment, effect["target"])] += 1
    return found


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fired(view: dict[str, Any], kind: str) -> list[tuple[str, float]]:
    """(when, seconds late) of each firing of the ticket's ``kind`` timer that acted."""
    return [
        (entry["at"], entry["detail"]["late_s"])
        for entry in view["timeline"]
        if entry["kind"] == "timer"
        and entry["detail"]["timer"] == kind
        and " fired (" in entry["detail"]["note"]
    ]


def _pending(view: dict[str, Any], kind: str) -> list[str]:
    return [t["due_at"] for t in view["timers"] if t["kind"] == kind and t["status"] == "pending"]


async def _run_until(scenario: Scenario, end: datetime, *, steps: int = 200) -> None:
    """``Scenario.run_until`` with a bound: at most ``steps`` due times stepped to (a storm
    ends the loop instead of running for ever)."""
    store = scenario.h.services.store
    for _ in range(steps):
        await scenario.settle()
        due = store.next_timer_due()
        if due is None or due > end.timestamp():
            break
        scenario.clock.set(max(scenario.clock.now(), datetime.fromtimestamp(due, end.tzinfo)))
    scenario.clock.set(max(scenario.clock.now(), end))
    await scenario.settle()


async def _dead(scenario: Scenario) -> list[dict[str, Any]]:
    response = await scenario.h.client.get(
        "/v1/effects", params={"state": "dead"}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    dead: list[dict[str, Any]] = response.json()["effects"]
    return dead


async def test_a_ticket_whose_helpdesk_time_is_ten_years_old_gets_one_reminder_per_commitment(
    opened: Opened, clock: FakeClock
) -> None:
    start = clock.now()
    updated = _stamp(start - TEN_YEARS)
    async with opened(load_policy(None)) as scenario:  # Urgent: customer updates every hour
        await scenario.webhook(31, "Urgent", ticket_updated_at=updated)
        # The scheduler catches up, and keeps going.
        await _run_until(scenario, start + 30 * M, steps=20)
        reminders = await _reminders(scenario, 31)
        view = await scenario.h.ticket(31)
    worst = max(reminders.values())
    print(f"reminders per commitment at catch-up ≤ 1: measured maximum {worst} ({dict(reminders)})")
    assert reminders.keys() >= {
        ("customer_update", "freshdesk"),
        ("customer_update", "victorops"),
        ("engagement-breach", "freshdesk"),
        ("engagement-breach", "victorops"),
    }
    assert worst == 1
    fired = _fired(view, "customer_update")
    assert len(fired) == 1
    assert fired[0][1] > TEN_YEARS.total_seconds() / 2  # marked late
    # Re-armed from the catch-up, not from ten years ago.
    assert _pending(view, "customer_update") == [(start + H).isoformat()]


async def test_a_sixty_second_outage_gives_one_late_reminder_and_the_cadence_resumes_from_restart(
    opened: Opened, clock: FakeClock
) -> None:
    async with opened(_policy()) as scenario:
        await scenario.webhook(32, "Urgent")
        await _run_until(scenario, scenario.start + 5 * S, steps=20)
        before = await _reminders(scenario, 32)
    assert before[("customer_update", "victorops")] == 1  # the on-time one, at 5 s
    clock.advance(60 * S)  # the service is down for a minute
    restart = clock.now()
    async with opened(_policy()) as scenario:
        scenario.helpdesk.set(32, "Urgent", "Open")  # the fake helpdesk's ticket, as it was
        await scenario.settle()  # the scheduler's catch-up
        after = await _reminders(scenario, 32)
        view = await scenario.h.ticket(32)
    at_restart = after - before
    worst = max(at_restart.values(), default=0)
    print(
        f"reminders per commitment at catch-up ≤ 1: measured maximum {worst} "
        f"(60 s down, 5 s cadence: {dict(at_restart)})"
    )
    assert at_restart[("customer_update", "victorops")] == 1
    assert at_restart[("customer_update", "freshdesk")] == 1
    fired = [late for at, late in _fired(view, "customer_update") if at == restart.isoformat()]
    assert len(fired) == 1
    assert fired[0] >= 55.0  # marked late
    assert _pending(view, "customer_update") == [(restart + 5 * S).isoformat()]


async def test_a_runaway_beyond_the_ceiling_is_one_dead_letter_and_pages_still_go(
    opened: Opened,
) -> None:
    policy = _policy(limits={"effects_per_ticket_per_hour": 10})
    async with opened(policy) as scenario:
        await scenario.webhook(33, "Urgent")
        # 60 customer updates due: 120 notes and INFOs.
        await _run_until(scenario, scenario.start + 5 * M, steps=100)
        made = await _reminders(scenario, 33)
        # A real priority change while the ceiling holds: RECOVERY, then a new page.
        for priority in ("Medium", "Urgent"):
            scenario.clock.advance(S)
            await scenario.webhook(33, priority, ticket_updated_at=_stamp(scenario.clock.now()))
        view = await scenario.h.ticket(33)
        dead = [e for e in await _dead(scenario) if e["ticket_id"] == "33"]
    print(f"ceiling 10 an hour: reminders made {sum(made.values())}, dead letters {len(dead)}")
    assert 0 < sum(made.values()) <= 10
    assert len(dead) == 1
    assert "effects_per_ticket_per_hour" in (dead[0]["last_error"] or "")
    kinds = Counter(e["kind"] for e in view["effects"] if e["target"] == "victorops")
    assert (kinds["page"], kinds["recover"]) == (2, 1)


def test_a_firing_worked_out_ahead_is_not_used_once_a_whole_period_late(store: Store) -> None:
    """The scheduler works timers out before they are due; one that then fires a whole period
    late (the service stopped in between) is worked out again, and re-arms from its firing."""
    policy = _policy()
    book = PolicyBook(policy)
    opened = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    event = TicketEvent(
        source="freshdesk",
        ticket_id="34",
        kind=EventKind.CREATED,
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_label="Open",
    )
    ingest(store, event=event, dedup_key="d34", now=opened, policies=book)
    upcoming, _ = read_upcoming(
        store, after=(0.0, 0), until=(opened + 6 * S).timestamp(), policies=book, limit=10
    )
    prepared = prepare_timers(upcoming)
    [held] = prepared.values()
    assert held.planned == opened + 5 * S
    restart = opened + 65 * S
    run = fire_due_timers(store, now=restart, policies=book, limit=10, prepared=prepared)
    assert run.fired == 1
    assert not prepared  # taken out, not used
    with store.unit_of_work() as uow:
        pending = uow.upcoming_timers_with_states(after=(0.0, 0), until=1e12, limit=10)
    due = [t.due_at for t, _ in pending if t.kind == "customer_update"]
    assert due == [(restart + 5 * S).timestamp()]
