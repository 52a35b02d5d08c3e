"""The webhook path's statements run straight on the driver (``compiled.Driver``): what they
store, and how they fail, must be what SQLAlchemy's ``Connection.execute`` would have given."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreError, StoreUnavailable
from ticketbridge.adapters.store.postgres import PgSets
from ticketbridge.adapters.store.rows import (
    NewEffect,
    TicketWrite,
    TimelineEntry,
    TimerUpdate,
    json_dumps,
)
from ticketbridge.adapters.store.schema import inbox, outbox, tickets, timers
from ticketbridge.adapters.store.sqlite import SQLITE_ROWS_PER_INSERT

EVENT = {"kind": "created", "priority": "urgent", "change": {"ticket_action": "created"}}
STATE = {"priority": "urgent", "status": "open", "tags": ["a", "ü"], "n": 1.5}
PAYLOAD = {"message_type": "CRITICAL", "entity_id": "freshdesk/acme/ticket/5"}


def _effect(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "target": "victorops",
        "kind": "page",
        "source": "freshdesk",
        "ticket_id": "5",
        "payload": PAYLOAD,
        "reason": "urgent",
    }


def test_rows_written_on_the_fast_path_read_back_through_sqlalchemy(store: Store) -> None:
    delivery = {"source": "freshdesk", "dedup_key": "k1", "ticket_id": "5", "event": EVENT}
    with store.unit_of_work() as uow:
        (first, again), states = uow.add_inbox_and_lock(
            [{**delivery, "at": 10}, {**delivery, "at": 11}]
        )
        assert states == {}
        assert uow.load_ticket("freshdesk", "5") is None
        uow.write_decided(
            states=[TicketWrite("freshdesk", "5", STATE)],
            timer_changes=[
                TimerUpdate("freshdesk", "5", "engagement", 100, "r1"),
                TimerUpdate("freshdesk", "5", "update", 200, "r2"),
            ],
            timeline=[],
            effects=[],
            at=10,
        )
        uow.set_timers_many([TimerUpdate("freshdesk", "5", "update", None, "r2")], at=11)
        uow.save_tickets([TicketWrite("freshdesk", "5", {**STATE, "status": "pending"})], at=12)
        leased = uow.enqueue([_effect("e1")], at=10, lease=("me", 70))
        queued = uow.enqueue([_effect("e2"), _effect("e1")], at=10, lease=("me", 70))
        assert uow.open_targets([("freshdesk", "5"), ("freshdesk", "6")]) == {
            ("freshdesk", "5", "victorops")
        }
        assert uow.load_ticket("freshdesk", "5") == {**STATE, "status": "pending"}
    assert isinstance(first, int)
    assert again is None
    # The first effect of the ticket is leased to the caller; the next waits behind it, and a
    # key already present is left alone.
    assert [(r.key, r.lease_token, r.payload) for r in leased] == [("e1", 1, PAYLOAD)]
    assert [(r.key, r.lease_token) for r in queued] == [("e2", 0)]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(inbox)).one()
        assert (row.source, row.ticket_id, row.received_at, row.outcome) == (
            "freshdesk",
            "5",
            10.0,
            "accepted",
        )
        assert row.event == EVENT
        assert isinstance(row.received_at, float)
        state, updated = conn.execute(sa.select(tickets.c.state, tickets.c.updated_at)).one()
        assert (state, updated) == ({**STATE, "status": "pending"}, 12.0)
        armed = conn.execute(
            sa.select(timers.c.kind, timers.c.status, timers.c.due_at).order_by(timers.c.kind)
        ).all()
        assert [tuple(r) for r in armed] == [
            ("engagement", "pending", 100.0),
            ("update", "cancelled", 200.0),
        ]
        effects = conn.execute(
            sa.select(
                outbox.c.key, outbox.c.payload, outbox.c.lease_owner, outbox.c.status
            ).order_by(outbox.c.id)
        ).all()
        assert [tuple(r) for r in effects] == [
            ("e1", PAYLOAD, "me", "pending"),
            ("e2", PAYLOAD, None, "pending"),
        ]
        if store.is_sqlite:  # JSON is stored as SQLAlchemy serialises it: the store's json_dumps
            raw = conn.exec_driver_sql("SELECT event FROM inbox").scalar_one()
            assert raw == json_dumps(EVENT)
            conn.execute(sa.update(inbox).values(event=EVENT))  # SQLAlchemy's own path
            assert conn.exec_driver_sql("SELECT event FROM inbox").scalar_one() == raw


def test_a_constraint_broken_on_the_fast_path_is_a_store_error_from_sqlalchemys(
    store: Store,
) -> None:
    """What the driver raised reaches the caller as SQLAlchemy's ``execute`` would have raised
    it, behind the store's own error (a refused statement: not "unavailable")."""
    delivery = {"source": None, "dedup_key": "k", "ticket_id": "5", "event": EVENT, "at": 1}
    with pytest.raises(StoreError) as raised, store.unit_of_work() as uow:
        uow.add_inbox_and_lock([delivery])
    assert isinstance(raised.value.__cause__, sa.exc.IntegrityError)
    assert not isinstance(raised.value, StoreUnavailable)
    assert store.count("inbox") == 0  # rolled back


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_operational_error_on_the_fast_path_is_store_unavailable(store: Store) -> None:
    """(A missing table: an OperationalError on SQLite, as a locked or unreadable file is.)"""

    def write_into_a_dropped_table() -> None:
        with store.unit_of_work() as uow:
            uow.conn.exec_driver_sql("DROP TABLE timeline")
            uow.add_timeline_many([TimelineEntry("freshdesk", "5", 1, "note", {})])

    with pytest.raises(StoreUnavailable):
        write_into_a_dropped_table()
    assert store.count("timeline") == 0  # the DROP was rolled back with it


def _prepared_statements(store: Store) -> int:
    """Statements prepared on the connection the pool hands out next (the last one used)."""
    with store.reading() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_periodic_reads_keep_the_connections_prepared_statements(store: Store) -> None:
    """psycopg prepares a statement run often enough on a connection and forgets all of them at
    a ROLLBACK; the dispatcher's and scheduler's next-due reads run about once a second, so a
    read ending in ROLLBACK left the hot path's statements to be planned afresh."""
    for _ in range(8):  # past psycopg's prepare threshold (5)
        with store.unit_of_work() as uow:
            uow.open_targets([("freshdesk", "5")])
    prepared = _prepared_statements(store)
    assert prepared >= 1
    store.next_timer_due()
    store.next_due_at(now=0.0)
    store.outbox_stats()
    assert store.count("outbox") == 0
    assert _prepared_statements(store) >= prepared


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("name", ["lock_tickets", "open_targets"])
def test_lookups_by_ticket_take_the_index_in_a_cached_plan_on_a_young_table(
    store: Store, name: str
) -> None:
    """A connection prepares the webhook path's statements and keeps one plan for each. On a
    table never analyzed (a fresh database) the plan must still look tickets up by key: a
    plan that reads the whole table stays in use as the table grows."""
    sql = getattr(PgSets, name)
    numbered = sql
    for n in range(1, sql.count("%") + 1):
        numbered = re.sub(r"%[bs]", f"${n}", numbered, count=1)
    with store.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tickets (source, ticket_id, state, updated_at) "
            "SELECT 'freshdesk', g::text, '{}'::json, 0 FROM generate_series(1, 5000) g"
        )
        conn.exec_driver_sql(
            "INSERT INTO outbox (key, target, kind, source, ticket_id, payload, reason, status, "
            "attempts, next_attempt_at, created_at, updated_at, lease_token) "
            "SELECT 'k' || g, 'victorops', 'page', 'freshdesk', g::text, '{}'::json, 'r', "
            "'sent', 1, 0, 0, 0, 0 FROM generate_series(1, 5000) g"
        )
        analyzed = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('tickets', 'outbox') "
            "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
        ).scalar_one()
        assert analyzed == 0  # the young table this test is about
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE probe(text[], text[]) AS {numbered}")
        plan = "\n".join(
            row[0]
            for row in conn.exec_driver_sql(
                "EXPLAIN EXECUTE probe('{freshdesk,freshdesk}', '{7,8}')"
            )
        )
        conn.exec_driver_sql("DEALLOCATE probe")
    assert "Seq Scan" not in plan, plan
    assert "Index Scan" in plan, plan


def test_effects_inserted_as_a_set_keep_each_rows_id_and_skip_repeated_keys(store: Store) -> None:
    """More effects than one statement takes (SQLite: ``SQLITE_ROWS_PER_INSERT`` a statement),
    with a key repeated inside the set and one already stored: each row gets its own id or
    None, in the order given, as one INSERT after another would."""
    count = SQLITE_ROWS_PER_INSERT + 7
    keys = [f"e{i}" for i in range(count)]
    with store.unit_of_work() as uow:
        before = uow.insert_effects([NewEffect(_effect("e3"), 1.0, False)])
        rows = [NewEffect(_effect(k), 1.0, False) for k in keys]
        rows.insert(10, NewEffect(_effect("e5"), 1.0, False))  # repeats an earlier row of the set
        inserted = uow.insert_effects(rows)
    assert before[0] is not None
    expected = [k if k != "e3" else None for k in keys]
    expected.insert(10, None)
    assert [r.key if r else None for r in inserted] == expected
    with store.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(outbox.c.key, outbox.c.id)).all())
    assert {r.key: r.id for r in inserted if r} == {k: stored[k] for k in keys if k != "e3"}


def test_tickets_are_found_by_key_among_many(store: Store) -> None:
    """``add_inbox_and_lock`` returns the stored states of its rows' tickets, however many
    (SQLite looks them up ``SQLITE_ROWS_PER_INSERT`` keys a statement)."""
    count = SQLITE_ROWS_PER_INSERT + 3
    with store.unit_of_work() as uow:
        existing = [TicketWrite("freshdesk", str(i), {**STATE, "n": i}) for i in range(0, count, 2)]
        existing.append(TicketWrite("zendesk", "1", {**STATE, "n": -1}))  # same id, other source
        uow.save_tickets(existing, at=1)  # every other ticket exists
        rows = [
            {"source": "freshdesk", "dedup_key": f"k{i}", "ticket_id": str(i), "at": 1.0}
            | {"event": EVENT}
            for i in range(count)
        ]
        ids, states = uow.add_inbox_and_lock(rows)
    assert all(isinstance(i, int) for i in ids)
    assert states == {("freshdesk", str(i)): {**STATE, "n": i} for i in range(0, count, 2)}
