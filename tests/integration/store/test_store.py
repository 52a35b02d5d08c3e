"""The store itself, on each backend: migrations, URLs kept secret, and PostgreSQL's row locks."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs
from typer.testing import CliRunner

from tests.conftest import PostgresServer, freshdesk_body, make_settings
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import TicketWrite, TimerUpdate
from ticketbridge.adapters.store.unit_of_work import UnitOfWork
from ticketbridge.adapters.urls import normalise_url, redact_url
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.cli.main import cli
from ticketbridge.app.http.app import create_app


def test_migrate_is_idempotent_and_readable(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.schema_revisions()[0] is None
        store.migrate()
        store.migrate()
        current, head = store.schema_revisions()
        assert current == head is not None
        assert store.count("outbox") == 0
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_processes_migrating_at_once_both_succeed(database_url: str) -> None:
    """Replicas starting together, or ``ticketbridge migrate`` during a start: an advisory
    lock makes the second wait, then find the schema current. (SQLite belongs to one
    process; two connecting at once to a brand-new file can fail to switch it to WAL.)"""
    stores = [Store(database_url), Store(database_url)]
    errors: list[BaseException] = []

    def migrate(store: Store) -> None:
        try:
            store.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        current, head = stores[0].schema_revisions()
        assert current == head
    finally:
        for store in stores:
            store.close()


def test_the_migrate_command_names_the_database_without_its_password(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgresql":
        database_url = database_url.replace("postgres@", "postgres:pa55word@", 1)
    monkeypatch.setenv("TICKETBRIDGE_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    store = Store(database_url)
    current, head = store.schema_revisions()
    store.close()
    assert current == head
    assert result.output == f"{redact_url(store.url)}: schema at {head}\n"
    assert "pa55word" not in result.output


def test_the_migrate_command_says_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://tb:pa55word@127.0.0.1:{port}/tickets"
    monkeypatch.setenv("TICKETBRIDGE_DATABASE_URL", url)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 1
    assert f"tb:***@127.0.0.1:{port}/tickets: cannot migrate: connection failed" in result.output
    assert "pa55word" not in result.output
    assert "Traceback" not in result.output


def test_postgresql_urls_select_psycopg_and_never_show_the_password() -> None:
    url = normalise_url("postgresql://tb:pa55word@db.internal:5432/tickets")
    assert url == "postgresql+psycopg://tb:pa55word@db.internal:5432/tickets"
    assert normalise_url("postgres://tb@db/tickets") == "postgresql+psycopg://tb@db/tickets"
    assert redact_url(url) == "postgresql+psycopg://tb:***@db.internal:5432/tickets"
    assert normalise_url("sqlite:///tb.db") == "sqlite:///tb.db"
    in_query = normalise_url("postgresql://db/tickets?user=tb&password=pa55word&sslmode=require")
    assert redact_url(in_query) == (
        "postgresql+psycopg://db/tickets?password=***&sslmode=require&user=tb"
    )
    assert redact_url("postgresql://") == "postgresql://"
    assert redact_url("not a url") == "<unparseable database URL>"


async def test_the_start_up_log_names_the_database_without_its_password(
    database_url: str, backend: str, clock: Any, policy: Any
) -> None:
    if backend == "postgresql":  # trust auth ignores it; the log must not show it
        database_url = database_url.replace("postgres@", "postgres:pa55word@", 1)
        assert "pa55word" in database_url
    settings = make_settings(database_url=database_url)
    store = Store(database_url)
    app = create_app(
        settings,
        services=Services(settings=settings, store=store, policy=policy, clock=clock),
        start_workers=False,
    )
    try:
        with capture_logs() as logs:
            async with app.router.lifespan_context(app):
                pass
    finally:
        store.close()
    started = next(e for e in logs if e["event"] == "service.started")
    assert started["database"] == redact_url(store.url)
    assert "pa55word" not in repr(logs)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_firing_timers_never_deadlocks_with_a_webhook_of_the_same_ticket(store: Store) -> None:
    """A webhook locks its ticket, then its timers; the scheduler must not take a timer and
    then wait for the ticket (PostgreSQL would abort one of the two as a deadlock). It skips
    a ticket being written and fires its timer on the next round."""
    with store.unit_of_work() as uow:
        uow.save_tickets([TicketWrite("freshdesk", "1", {"n": 0})], at=0.0)
        uow.set_timers_many([TimerUpdate("freshdesk", "1", "engagement", 10.0, "r")], at=0.0)
    ticket_locked, scheduler_looked = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def webhook() -> None:
        try:
            with store.unit_of_work() as uow:
                delivery = {"source": "freshdesk", "dedup_key": "d", "ticket_id": "1"}
                uow.add_inbox_and_lock([{**delivery, "at": 1.0, "event": {}}])  # FOR UPDATE
                ticket_locked.set()
                assert scheduler_looked.wait(10)
                uow.write_decided(
                    states=[TicketWrite("freshdesk", "1", {"n": 1})],
                    timer_changes=[TimerUpdate("freshdesk", "1", "engagement", 15.0, "r")],
                    timeline=[],
                    effects=[],
                    at=1.0,
                )
        except BaseException as exc:
            errors.append(exc)

    def scheduler() -> None:
        try:
            assert ticket_locked.wait(10)
            with store.unit_of_work() as uow:
                due, _ = uow.due_timers_with_states(now=20.0, limit=10)
                scheduler_looked.set()
                seen.append(len(due))
                uow.mark_timers_fired([(timer.id, 10.0) for timer in due], at=20.0)
        except BaseException as exc:
            scheduler_looked.set()
            errors.append(exc)

    threads = [threading.Thread(target=webhook), threading.Thread(target=scheduler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert seen == [0]  # the ticket was being written: its timer waits for the next round
    with store.unit_of_work() as uow:
        (timer,), _ = uow.due_timers_with_states(now=20.0, limit=10)
        assert timer.due_at == 15.0  # as the webhook re-planned it
        assert isinstance(uow, UnitOfWork)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lost_database_answers_503_with_retry_after_never_500(
    harness_factory: Any, store: Store, postgresql_server: PostgresServer
) -> None:
    async with harness_factory() as h:
        assert (await h.post_freshdesk(freshdesk_body(1))).status_code == 202
        assert store.engine.url.database is not None
        postgresql_server.drop_now(store.engine.url.database)  # kills our connections too
        for ticket in (2, 3):  # the broken pooled connection, then a new one that fails
            lost = await h.post_freshdesk(freshdesk_body(ticket))
            assert lost.status_code == 503, lost.text
            assert lost.headers["retry-after"]
        ready = await h.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"].startswith("store unreachable")


def test_inbox_keys_stored_before_0004_still_dedup_after_it(database_url: str) -> None:
    """0004 puts each stored dedup key behind its ticket's id (``stored_dedup_key``): a
    delivery recorded before the upgrade and redelivered after it is still a duplicate, a
    new one is not, and the downgrade gives the old keys back."""
    from alembic import command

    from ticketbridge.adapters.store.engine import _alembic_config

    long_ticket = "t:" + "x" * 62  # 64 characters, a ':' inside
    old = [("freshdesk", "a" * 64, "11"), ("generic", "generic:" + "b" * 64, long_ticket)]
    store = Store(database_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0003")
            conn.execute(
                sa.text(
                    "INSERT INTO inbox (source, dedup_key, ticket_id, received_at, outcome, "
                    "event) VALUES (:s, :k, :t, 1, 'accepted', '{}')"
                ),
                [{"s": s, "k": k, "t": t} for s, k, t in old],
            )
        store.migrate()
        new = [("freshdesk", "c" * 64, "11"), ("freshdesk", "a" * 64, "12")]
        with store.unit_of_work() as uow:
            ids, _ = uow.add_inbox_and_lock(
                [
                    {"source": s, "dedup_key": k, "ticket_id": t, "event": {}, "at": 2}
                    for s, k, t in old + new
                ]
            )
        *again, fresh, other_ticket = ids
        assert again == [None, None]
        assert isinstance(fresh, int)
        assert isinstance(other_ticket, int)
        with store.engine.begin() as conn:
            # (The old keys cannot hold one key for two tickets: the downgrade would fail.)
            conn.execute(sa.text("DELETE FROM inbox WHERE id = :i"), {"i": other_ticket})
            command.downgrade(_alembic_config(conn), "0003")
            keys = {
                tuple(r)
                for r in conn.exec_driver_sql("SELECT source, dedup_key, ticket_id FROM inbox")
            }
        assert set(old) <= keys
        assert ("freshdesk", "c" * 64, "11") in keys
    finally:
        store.close()


def _timers(store: Store) -> dict[tuple[str, str], tuple[float, str, str]]:
    from ticketbridge.adapters.store.schema import timers

    with store.transaction() as conn:
        rows = conn.execute(
            sa.select(
                timers.c.ticket_id, timers.c.kind, timers.c.due_at, timers.c.status, timers.c.rule
            )
        ).all()
    return {(t, k): (due, status, rule) for t, k, due, status, rule in rows}


def test_timers_and_tickets_written_set_wise_as_one_by_one(store: Store) -> None:
    """``set_timers_many`` and ``save_tickets`` write many rows at once (on SQLite one
    multi-row upsert each): new timers armed, existing ones moved, a timer already fired at
    the same due time left fired and one fired at another moved back to pending, cancelled
    ones cancelled; tickets new and known saved."""
    changes = [
        TimerUpdate("freshdesk", str(n), kind, 100.0 + n, f"rule {kind} {n}")
        for n in range(70)
        for kind in ("engagement", "tier_one")
    ]
    with store.unit_of_work() as uow:
        uow.set_timers_many(changes, at=1.0)  # 140 rows: more than one statement's worth
        uow.save_tickets([TicketWrite("freshdesk", str(n), {"n": n}) for n in range(70)], at=1.0)
    with store.unit_of_work() as uow:
        (first, second), _ = uow.due_timers_with_states(now=100.5, limit=10)
        assert (first.ticket_id, first.kind, first.due_at) == ("0", "engagement", 100.0)
        assert (second.ticket_id, second.kind, second.due_at) == ("0", "tier_one", 100.0)
        uow.mark_timers_fired([(first.id, 100.5), (second.id, 100.5)], at=100.5)
    with store.unit_of_work() as uow:
        uow.set_timers_many(
            [
                TimerUpdate("freshdesk", "0", "engagement", 100.0, "same deadline"),  # fired: stays
                TimerUpdate("freshdesk", "0", "tier_one", 300.0, "moved"),  # fired: armed again
                TimerUpdate("freshdesk", "1", "engagement", 200.0, "moved"),
                TimerUpdate("freshdesk", "1", "tier_one", None, ""),  # cancelled
                TimerUpdate("freshdesk", "2", "engagement", 250.0, "first"),
                TimerUpdate("freshdesk", "2", "engagement", 260.0, "last wins"),
                TimerUpdate("freshdesk", "new", "engagement", 500.0, "new"),
            ],
            at=2.0,
        )
        uow.save_tickets(
            [
                TicketWrite("freshdesk", "0", {"n": "last"}),
                TicketWrite("freshdesk", "new", {"n": "new"}),
            ],
            at=2.0,
        )
    found = _timers(store)
    assert len(found) == 141
    assert found[("0", "engagement")] == (100.0, "fired", "rule engagement 0")
    assert found[("0", "tier_one")] == (300.0, "pending", "moved")
    assert found[("1", "engagement")] == (200.0, "pending", "moved")
    assert found[("1", "tier_one")][1] == "cancelled"
    assert found[("2", "engagement")] == (260.0, "pending", "last wins")
    assert found[("new", "engagement")] == (500.0, "pending", "new")
    assert found[("69", "tier_one")] == (169.0, "pending", "rule tier_one 69")
    assert store.ticket_state("freshdesk", "0") == {"n": "last"}
    assert store.ticket_state("freshdesk", "new") == {"n": "new"}
    assert store.ticket_state("freshdesk", "69") == {"n": 69}
