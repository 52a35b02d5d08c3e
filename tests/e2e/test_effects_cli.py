"""``ticketbridge effects list|retry`` on the database named by TICKETBRIDGE_DATABASE_URL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner, Result

from tests.conftest import freshdesk_body
from ticketbridge.adapters.store.dead_letters import EffectNotDead, replay_dead
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import DEAD
from ticketbridge.app.cli.main import cli


def run(url: str, *args: str) -> Result:
    env = {"TICKETBRIDGE_DATABASE_URL": url, "TICKETBRIDGE_SECRETS_DIR": "/nonexistent"}
    return CliRunner().invoke(cli, ["effects", *args], env=env)


def dead_effects(store: Store, count: int, *, at: float = 1_000_000.0) -> list[int]:
    """``count`` VictorOps pages, each recorded dead after one 400 (the dispatcher's path)."""
    with store.unit_of_work() as uow:
        uow.enqueue(
            [
                {
                    "key": f"victorops:freshdesk:{t}:page:1",
                    "target": "victorops",
                    "kind": "page",
                    "source": "freshdesk",
                    "ticket_id": str(t),
                    "payload": {"message_type": "CRITICAL"},
                    "reason": "test",
                }
                for t in range(1, count + 1)
            ],
            at=at,
        )
    rows = store.claim_due(now=at, owner="test", limit=count, lease_seconds=60)
    outcome = {"status": DEAD, "now": at, "attempts": 1, "code": 400, "error": "bad request"}
    with store.unit_of_work() as uow:
        assert all(uow.finish_effects([(row, outcome, ()) for row in rows]))
    return [row.id for row in rows]


def test_list_prints_the_dead_effects_as_a_table(store: Store) -> None:
    ids = dead_effects(store, 3)
    result = run(store.url, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "TARGET",
        "KIND",
        "TICKET",
        "ATTEMPTS",
        "CODE",
        "UPDATED",
        "ERROR",
    ]
    assert [int(line.split()[0]) for line in lines[1:]] == sorted(ids, reverse=True)
    assert lines[1].split()[1:7] == ["dead", "victorops", "page", "freshdesk/3", "1", "400"]
    assert lines[1].endswith("bad request")


def test_list_pages_and_filters_by_state(store: Store) -> None:
    ids = dead_effects(store, 3)
    first = run(store.url, "list", "--limit", "2")
    assert first.exit_code == 0, first.output
    assert [int(line.split()[0]) for line in first.stdout.splitlines()[1:3]] == ids[:0:-1]
    assert first.stdout.splitlines()[-1] == f"(more: --before-id {ids[1]})"
    rest = run(store.url, "list", "--limit", "2", "--before-id", str(ids[1]))
    assert [int(line.split()[0]) for line in rest.stdout.splitlines()[1:]] == [ids[0]]
    none = run(store.url, "list", "--state", "sent")
    assert (none.exit_code, none.stdout) == (0, "no sent effects\n")


@pytest.mark.parametrize(
    "args",
    [("--state", "lost"), ("--limit", "0"), ("--limit", "501"), ("--before-id", "0")],
)
def test_list_refuses_bad_options(store: Store, args: tuple[str, ...]) -> None:
    result = run(store.url, "list", *args)
    assert result.exit_code == 2
    assert args[0] in result.output


def test_retry_replays_once_then_refuses(store: Store) -> None:
    [effect_id] = dead_effects(store, 1)
    first = run(store.url, "retry", str(effect_id))
    assert first.exit_code == 0, first.output
    assert first.stdout == (
        f"effect {effect_id} (victorops:freshdesk:1:page:1) is pending again: "
        "replayed after 1 attempt; was: bad request\n"
    )
    second = run(store.url, "retry", str(effect_id))
    assert (second.exit_code, second.stderr) == (
        1,
        f"effect {effect_id} is not dead (status pending)\n",
    )
    unknown = run(store.url, "retry", "999")
    assert (unknown.exit_code, unknown.stderr) == (1, "no effect 999\n")
    pending = run(store.url, "list", "--state", "pending")
    assert pending.stdout.splitlines()[1].split()[:2] == [str(effect_id), "pending"]
    assert store.count("timeline") == 1  # the one "replayed" entry


def test_an_outdated_schema_is_refused(database_url: str) -> None:
    result = run(database_url, "list")
    assert result.exit_code == 2
    assert "run `ticketbridge migrate`" in result.stderr


async def test_a_cli_replay_is_sent_once_by_the_dispatcher(
    harness_factory: Any, store: Store, clock: Any
) -> None:
    with respx.mock() as mock:
        route = mock.post(host="vo.test").mock(return_value=httpx.Response(400))
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(95))
            await h.dispatcher.drain()
            effect_id = (await h.ticket(95))["effects"][0]["id"]
            result = run(store.url, "retry", str(effect_id))
            assert result.exit_code == 0, result.output
            # The CLI stamps the replay with the wall clock; the harness runs on a fake one.
            clock.set(datetime.now(UTC) + timedelta(seconds=1))
            route.return_value = httpx.Response(200)
            assert await h.dispatcher.drain() == 1
            assert await h.dispatcher.drain() == 0
            view = await h.ticket(95)
    assert route.call_count == 2
    assert view["effects"][0]["status"] == "sent"
    [entry] = [e for e in view["timeline"] if e["kind"] == "replayed"]
    assert entry["detail"]["via"] == "cli"


def test_racing_replays_in_threads_succeed_once(store: Store) -> None:
    [effect_id] = dead_effects(store, 1)
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def replay() -> None:
        start.wait()
        try:
            replay_dead(store, effect_id, now=2_000_000.0, via="test")
            outcomes.append("replayed")
        except EffectNotDead as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=replay) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["pending"] * 5 + ["replayed"]
