"""PostgreSQL: the webhook path's writes as hand-written set-wise statements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ticketbridge.adapters.store.rows import RawJSON, json_text
from ticketbridge.adapters.store.schema import (
    OPEN_STATES,
    TIMER_CANCELLED,
    TIMER_FIRED,
    TIMER_PENDING,
)

PG_CONCURRENCY = 16
# Taken while migrating on PostgreSQL, so that two processes starting at once (or a
# ``ticketbridge migrate`` during a start) do not both create the tables.
PG_MIGRATION_LOCK = 0x7469636B  # "tick"

# A ``nowait`` transaction on PostgreSQL gives up (``StoreBusy``) after waiting this long for
# a lock (another replica's transaction on the same ticket normally commits within a few ms).
PG_NOWAIT_LOCK_MS = 200
# A PostgreSQL connection fails when the server has not acknowledged what was sent for this
# long (TCP_USER_TIMEOUT), rather than waiting on a dead peer indefinitely.
PG_TCP_USER_TIMEOUT_MS = 10_000
# SQLSTATE lock_not_available: a lock wait ran out (lock_timeout).
LOCK_NOT_AVAILABLE = "55P03"


# The arrays of ``PgSets.insert_effects``, in order (``next_attempt_at`` stands for the
# three times, equal at insertion).
_PG_EFFECT_COLUMNS = (
    "key",
    "target",
    "kind",
    "source",
    "ticket_id",
    "payload",
    "reason",
    "status",
    "next_attempt_at",
    "lease_owner",
    "lease_expires_at",
    "lease_token",
    "last_error",
)


class PgSets:
    """The webhook path's writes on PostgreSQL as one statement per set of rows: the rows go
    as arrays (``unnest``), so the server runs one statement where ``executemany`` ran one per
    row (less work on both sides of the connection). ``WITH ORDINALITY ... ORDER BY`` keeps
    the rows' order, hence their ids' order; ``ON CONFLICT DO NOTHING`` also skips a row
    repeating an earlier one of the same set, as one execution after another would. Arrays go
    in binary (``%b``): psycopg's text form escapes each element with a regular expression."""

    add_inbox = (
        "INSERT INTO inbox (source, dedup_key, ticket_id, received_at, outcome, event) "
        "SELECT s, k, t, r, 'accepted', e::json "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[]) "
        "WITH ORDINALITY AS u(s, k, t, r, e, n) ORDER BY n "
        "ON CONFLICT (source, dedup_key) DO NOTHING RETURNING id, source, dedup_key"
    )
    # Locked one by one in the order of the keys given, which the caller sorts (Python's
    # order of strings, code points): every transaction takes its tickets' locks in one order.
    # Each key is looked up on its own (LATERAL): as ``(source, ticket_id) IN (SELECT * FROM
    # unnest(...))`` the plan a connection caches for the statement while the table is young
    # (never analyzed: a fresh database) hashes the keys and reads the whole table, and keeps
    # doing so as the table grows (two replicas on a fresh database: ~1,400 scans of ~9,000
    # rows in 10 s); a lookup by key takes the primary key at any size.
    lock_tickets = (
        "SELECT k.source, k.ticket_id, k.state "
        "FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS u(s, t, n) CROSS JOIN LATERAL "
        "(SELECT source, ticket_id, state FROM tickets WHERE source = u.s AND ticket_id = u.t "
        "FOR UPDATE) AS k ORDER BY u.n"
    )
    # The two above as one statement: the inbox rows inserted (part 0: id, source, dedup_key)
    # and the tickets locked (part 1: source, ticket_id, state), one round trip.
    add_inbox_and_lock = (
        f"WITH i AS ({add_inbox}) "  # noqa: S608 (the two statements above, no input)
        "SELECT 0, id, source, dedup_key, NULL::json FROM i UNION ALL "
        f"SELECT 1, NULL, source, ticket_id, state FROM ({lock_tickets}) AS l"
    )
    # (The f-strings below put this module's state constants in the text, no input.)
    open_targets = (
        "SELECT DISTINCT source, ticket_id, target FROM outbox "  # noqa: S608
        "WHERE (source, ticket_id) IN (SELECT * FROM unnest(%b::text[], %b::text[])) "
        f"AND status IN ({', '.join(repr(state) for state in OPEN_STATES)})"
    )
    save_tickets = (
        "INSERT INTO tickets (source, ticket_id, state, updated_at) "
        "SELECT s, t, st::json, %s FROM unnest(%b::text[], %b::text[], %b::text[]) "
        "AS u(s, t, st) "
        "ON CONFLICT (source, ticket_id) "
        "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
    )
    add_timeline = (
        "INSERT INTO timeline (source, ticket_id, at, kind, detail) "
        "SELECT s, t, a, k, d::json "
        "FROM unnest(%b::text[], %b::text[], %b::float8[], %b::text[], %b::text[]) "
        "WITH ORDINALITY AS u(s, t, a, k, d, n) ORDER BY n"
    )
    # As ``Statements.arm_timer``: a timer already fired at this very due time stays fired.
    arm_timers = (
        "INSERT INTO timers (source, ticket_id, kind, due_at, status, rule, created_at, "  # noqa: S608
        f"updated_at) SELECT s, t, k, d, '{TIMER_PENDING}', r, %s, %s "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[]) "
        "AS u(s, t, k, d, r) "
        "ON CONFLICT (source, ticket_id, kind) DO UPDATE SET due_at = excluded.due_at, "
        f"status = '{TIMER_PENDING}', rule = excluded.rule, updated_at = excluded.updated_at, "
        "fired_at = NULL, lateness = NULL "
        f"WHERE NOT (timers.status = '{TIMER_FIRED}' AND timers.due_at = excluded.due_at)"
    )
    cancel_timers = (
        f"UPDATE timers SET status = '{TIMER_CANCELLED}', updated_at = %s "  # noqa: S608
        "FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(s, t, k) "
        "WHERE timers.source = u.s AND timers.ticket_id = u.t AND timers.kind = u.k "
        f"AND timers.status = '{TIMER_PENDING}'"
    )
    insert_effects = (
        "INSERT INTO outbox (key, target, kind, source, ticket_id, payload, reason, status, "
        "attempts, next_attempt_at, created_at, updated_at, lease_owner, lease_expires_at, "
        "lease_token, last_error) "
        "SELECT ky, tg, kd, s, t, p::json, r, st, 0, a, a, a, lo, le, lt, er "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::text[], %b::text[], %b::float8[], %b::text[], %b::float8[], %b::int[], "
        "%b::text[]) WITH ORDINALITY AS u(ky, tg, kd, s, t, p, r, st, a, lo, le, lt, er, n) "
        "ORDER BY n ON CONFLICT (key) DO NOTHING RETURNING id, key"
    )


# The main query of ``UnitOfWork.write_decided`` when there are no effects to insert.
NOTHING = "SELECT NULL, NULL WHERE false"


def pg_ticket_params(
    states: Sequence[tuple[str, str, dict[str, Any] | RawJSON]], at: float
) -> tuple[Any, ...]:
    return (
        at,
        [s for s, _, _ in states],
        [t for _, t, _ in states],
        [json_text(st) for _, _, st in states],
    )


def pg_timeline_params(
    entries: Sequence[tuple[str, str, float, str, dict[str, Any] | RawJSON]],
) -> tuple[Any, ...]:
    return (
        [e[0] for e in entries],
        [e[1] for e in entries],
        [e[2] for e in entries],
        [e[3] for e in entries],
        [json_text(e[4]) for e in entries],
    )


def pg_timer_parts(
    changes: Sequence[tuple[str, str, str, float | None, str]], at: float
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (and their parameters) for ``set_timers_many``'s changes: for the
    same timer the last change wins."""
    last = {(s, t, k): (d, r) for s, t, k, d, r in changes}
    armed = [(*key, due, rule) for key, (due, rule) in last.items() if due is not None]
    cancelled = [key for key, (due, _) in last.items() if due is None]
    parts: list[tuple[str, tuple[Any, ...]]] = []
    if armed:
        columns = zip(*armed, strict=True)
        parts.append((PgSets.arm_timers, (at, at, *(list(c) for c in columns))))
    if cancelled:
        columns = zip(*cancelled, strict=True)
        parts.append((PgSets.cancel_timers, (at, *(list(c) for c in columns))))
    return parts


def pg_effect_params(values: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        [json_text(v[name]) if name == "payload" else v[name] for v in values]
        for name in _PG_EFFECT_COLUMNS
    )
