"""``ingest_many`` (what the webhooks' group commit runs) stores exactly what one ``ingest_in``
after another would: same outcomes, states, effects and leases, timers, timeline and inbox.

One difference is by design: a timer armed and cancelled within one batch is never written,
where one transaction per event leaves a ``cancelled`` row behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import inbox, outbox, tickets, timeline, timers
from ticketbridge.app.services.ingest import (
    Incoming,
    IngestResult,
    PolicyBook,
    _event_json,
    _state_json,
    ingest_in,
    ingest_many,
)
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, decide

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LEASE = ("replica-a", T0.timestamp() + 60)


def _event(
    ticket: str, kind: EventKind, priority: Priority, status: Status, at: datetime
) -> TicketEvent:
    return TicketEvent(
        source="freshdesk",
        ticket_id=ticket,
        kind=kind,
        priority=priority,
        status=status,
        status_label=status.value.title(),
        occurred_at=at,
    )


def _script(prefix: str) -> list[Incoming]:
    """One ticket's life and another's, interleaved, with a redelivery and a stale event."""
    one, two = f"{prefix}-1", f"{prefix}-2"
    created = _event(one, EventKind.CREATED, Priority.URGENT, Status.OPEN, T0)
    return [
        Incoming(created, f"{one}:a", T0, LEASE),
        Incoming(created, f"{one}:a", T0 + timedelta(seconds=1), LEASE),  # redelivery
        Incoming(
            _event(two, EventKind.CREATED, Priority.HIGH, Status.OPEN, T0),
            f"{two}:a",
            T0 + timedelta(seconds=2),
            LEASE,
        ),
        Incoming(  # a downgrade: the RECOVERY waits behind the page (not leased)
            _event(one, EventKind.UPDATED, Priority.LOW, Status.OPEN, T0 + timedelta(minutes=5)),
            f"{one}:b",
            T0 + timedelta(minutes=5),
            LEASE,
        ),
        Incoming(  # older than what is held: stale
            _event(one, EventKind.UPDATED, Priority.URGENT, Status.OPEN, T0 + timedelta(minutes=1)),
            f"{one}:c",
            T0 + timedelta(minutes=6),
            LEASE,
        ),
        Incoming(
            _event(
                two, EventKind.UPDATED, Priority.HIGH, Status.RESOLVED, T0 + timedelta(minutes=7)
            ),
            f"{two}:b",
            T0 + timedelta(minutes=7),
            None,
        ),
    ]


def _summary(result: IngestResult) -> tuple[str, int, float | None, list[str]]:
    return (
        result.outcome,
        result.effects,
        result.earliest_timer,
        [row.key for row in result.leased],
    )


def _stored(store: Store, prefix: str) -> dict[str, Any]:
    """Every row about the prefix's tickets, ids and bookkeeping times left out, the prefix
    replaced so two runs compare."""

    def rows(
        table: sa.Table, *columns: str, order: str = "id", where: Any = None
    ) -> list[dict[str, Any]]:
        query = (
            sa.select(*(table.c[c] for c in columns))
            .where(table.c.ticket_id.like(f"{prefix}-%"))
            .order_by(table.c[order])
        )
        if where is not None:
            query = query.where(where)
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    found = {
        "tickets": rows(tickets, "ticket_id", "state", order="ticket_id"),
        "outbox": rows(
            outbox,
            "key",
            "target",
            "kind",
            "ticket_id",
            "payload",
            "status",
            "lease_token",
            "lease_owner",
            "next_attempt_at",
            "created_at",
        ),
        "timers": rows(
            timers,
            "ticket_id",
            "kind",
            "due_at",
            "status",
            "rule",
            where=timers.c.status != "cancelled",
        ),
        "timeline": rows(timeline, "ticket_id", "at", "kind", "detail"),
        "inbox": rows(inbox, "ticket_id", "dedup_key", "outcome", "event", "received_at"),
    }
    return json.loads(json.dumps(found, sort_keys=True, default=str).replace(prefix, "P"))


def test_a_batch_stores_what_one_ingest_after_another_stores(store: Store, policy: Policy) -> None:
    book = PolicyBook(policy)
    one_by_one = []
    for item in _script("seq"):
        with store.unit_of_work() as uow:
            one_by_one.append(
                ingest_in(
                    uow,
                    event=item.event,
                    dedup_key=item.dedup_key,
                    now=item.now,
                    policies=book,
                    lease=item.lease,
                )
            )
    with store.unit_of_work() as uow:
        batched = ingest_many(uow, _script("bat"), policies=book)

    def keys(results: list[IngestResult], prefix: str) -> list[Any]:
        return json.loads(json.dumps([_summary(r) for r in results]).replace(prefix, "P"))

    assert keys(batched, "bat") == keys(one_by_one, "seq")
    assert [r.outcome for r in batched] == [
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "stale",
        "accepted",
    ]
    # The first page of each ticket goes out at once; the downgrade's RECOVERY waits for it.
    assert [len(r.leased) for r in batched] == [1, 0, 1, 0, 0, 0]
    assert batched[3].effects == 1
    stored = _stored(store, "bat")
    assert stored == _stored(store, "seq")
    assert [row["outcome"] for row in stored["inbox"]] == ["accepted"] * 3 + ["stale", "accepted"]
    assert {row["ticket_id"] for row in stored["tickets"]} == {"P-1", "P-2"}
    # The resolved ticket keeps only its write-up timer; the downgraded one its Low timers.
    assert {(r["ticket_id"], r["kind"]) for r in stored["timers"] if r["status"] == "pending"} == {
        ("P-1", "tier_one"),
        ("P-1", "engagement"),
        ("P-2", "write_up"),
    }


def test_an_empty_batch_writes_nothing(store: Store, policy: Policy) -> None:
    with store.unit_of_work() as uow:
        assert ingest_many(uow, [], policies=PolicyBook(policy)) == []
    assert store.count("inbox") == 0


def test_effects_for_a_target_not_configured_are_stored_skipped(
    store: Store, policy: Policy
) -> None:
    """What the dispatcher would record on its first look, stored at once: final, not leased,
    not left for a claim; a configured target's effect stays pending (and leased)."""
    book = PolicyBook(policy)
    items = [
        Incoming(_event(t, EventKind.CREATED, Priority.URGENT, Status.OPEN, T0), t, T0, LEASE)
        for t in ("cfg-1", "cfg-2")
    ]
    with store.unit_of_work() as uow:
        skipped = ingest_many(uow, items[:1], policies=book, configured={"freshdesk"})
        sent = ingest_many(uow, items[1:], policies=book, configured={"victorops"})
    assert (skipped[0].effects, skipped[0].skipped, skipped[0].leased) == (1, ("victorops",), ())
    assert skipped[0].unclaimed == 0
    assert (sent[0].skipped, len(sent[0].leased), sent[0].unclaimed) == ((), 1, 0)
    with store.transaction() as conn:
        rows = {
            r.ticket_id: r
            for r in conn.execute(
                sa.select(
                    outbox.c.ticket_id,
                    outbox.c.status,
                    outbox.c.attempts,
                    outbox.c.last_error,
                    outbox.c.lease_owner,
                )
            )
        }
    assert tuple(rows["cfg-1"])[1:] == ("skipped", 0, "target not configured", None)
    assert tuple(rows["cfg-2"])[1:] == ("pending", 0, None, "replica-a")


def test_a_webhook_with_no_effect_still_stores_its_state_and_timers(
    store: Store, policy: Policy
) -> None:
    """A Medium ticket pages nobody: on PostgreSQL the state and timer writes then go as the
    ``WITH`` queries of a statement that inserts no effect."""
    event = _event("quiet-1", EventKind.CREATED, Priority.MEDIUM, Status.OPEN, T0)
    with store.unit_of_work() as uow:
        [result] = ingest_many(uow, [Incoming(event, "q", T0, LEASE)], policies=PolicyBook(policy))
    assert (result.outcome, result.effects, result.leased) == ("accepted", 0, ())
    stored = _stored(store, "quiet")
    assert [row["ticket_id"] for row in stored["tickets"]] == ["P-1"]
    assert {r["kind"] for r in stored["timers"] if r["status"] == "pending"} == {
        "tier_one",
        "engagement",
    }
    assert store.count("outbox") == 0


def test_events_and_tickets_are_written_as_their_model_dump_json(policy: Policy) -> None:
    """The service serialises them with pydantic's serialiser called directly: the same text
    as ``model_dump_json``."""
    for item in _script("json"):
        event = item.event
        state = decide(None, event, now=T0, policy=policy).state
        assert _event_json(event).decode() == event.model_dump_json()
        assert _state_json(state).decode() == state.model_dump_json()
