"""Fire due timers, and work out ahead the firing of those about to come due."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import (
    DueTimer,
    RawJSON,
    TicketWrite,
    TimelineEntry,
    TimerUpdate,
)
from ticketbridge.app.services.ingest import PolicyBook
from ticketbridge.rules import Policy, TicketState
from ticketbridge.rules.model import Effect, TimerChange, TimerKind
from ticketbridge.rules.timers import (
    fired_note,
    fired_state,
    on_timer,
    prepare_timer,
    settle,
    settled_until,
)


@dataclass(frozen=True)
class TimerRun:
    fired: int
    effects: int
    max_lateness: float
    # For metrics: each fired timer's lateness, and (timer kind, priority) of each commitment
    # it found missed (an engagement or customer-update timer that acted).
    latenesses: tuple[float, ...] = ()
    breaches: tuple[tuple[str, str], ...] = ()


BREACH_TIMERS = frozenset({TimerKind.ENGAGEMENT, TimerKind.CUSTOMER_UPDATE})


class EffectRow(NamedTuple):
    """An effect as the outbox takes it from a timer, its payload as JSON."""

    key: str
    target: str
    kind: str
    reason: str
    payload: RawJSON


class ChangeRow(NamedTuple):
    """A change to one ticket's timer of ``kind``: armed at ``due``, or cancelled (None)."""

    kind: str
    due: float | None
    rule: str


@dataclass(frozen=True, slots=True)
class PreparedTimer:
    """A timer's firing worked out before it came due (``prepare_timers``), as text and
    tuples. It stands while the timer keeps its due time and its ticket's stored state is
    the one it was worked out from (same digest), under the same pinned policy, and it fires
    before ``until`` (``rules.timers.settled_until``)."""

    due_at: float
    digest: bytes  # of the ticket's stored state text
    fingerprint: str
    policy: Policy
    planned: datetime
    rule: str
    acted: str  # ``Firing.acted`` as JSON
    record: str | None
    effects: tuple[EffectRow, ...]
    changes: tuple[ChangeRow, ...]
    until: datetime

    def stands(self, timer: DueTimer, text: str, now: datetime, policy: Policy) -> bool:
        """Whether this is still the firing of ``timer`` due at ``now`` for the stored state
        ``text``, ``policy`` being what the ticket's pin resolves to now."""
        return (
            timer.due_at == self.due_at
            and self.planned <= now < self.until
            and policy is self.policy
            and _digest(text) == self.digest
        )


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _effect_rows(effects: Sequence[Effect]) -> tuple[EffectRow, ...]:
    return tuple(EffectRow(e.key, e.target, e.kind, e.reason, _json(e.payload)) for e in effects)


def _change_rows(changes: Sequence[TimerChange]) -> tuple[ChangeRow, ...]:
    return tuple(
        ChangeRow(c.kind.value, c.due.timestamp() if c.due else None, c.rule) for c in changes
    )


@dataclass(frozen=True, slots=True)
class Upcoming:
    """A pending timer, as ``read_upcoming`` found it with its ticket."""

    timer: DueTimer
    text: str  # the ticket's stored state
    state: TicketState
    policy: Policy


def read_upcoming(
    store: Store,
    *,
    after: tuple[float, int],
    until: float,
    policies: PolicyBook,
    limit: int,
) -> tuple[list[Upcoming], tuple[float, int] | None]:
    """Up to ``limit`` pending timers that come after ``after`` (a ``(due_at, id)``
    position) and are due by ``until``, with their tickets (parsed) and pinned policies; and
    the position reached (None when there were none)."""
    found: list[Upcoming] = []
    with store.unit_of_work() as uow:
        upcoming = uow.upcoming_timers_with_states(after=after, until=until, limit=limit)
        for timer, text in upcoming:
            if text is not None:
                state = TicketState.model_validate_json(text)
                found.append(Upcoming(timer, text, state, policies.pinned(uow, state.policy)))
    if not upcoming:
        return found, None
    last = upcoming[-1][0]
    return found, (last.due_at, last.id)


def prepare_timers(upcoming: Sequence[Upcoming]) -> dict[int, PreparedTimer]:
    """Work out ahead the firing of ``upcoming`` timers as their tickets stand now
    (``rules.timers.prepare_timer``: all but what depends on when they fire), by timer id.
    No store call: it may run while others use the store."""
    prepared: dict[int, PreparedTimer] = {}
    for item in upcoming:
        timer = item.timer
        firing = prepare_timer(
            item.state,
            _TIMER_KINDS[timer.kind],
            due=datetime.fromtimestamp(timer.due_at, UTC),
            policy=item.policy,
        )
        planned, until = firing.planned, settled_until(firing)
        if planned is None or until is None:
            continue  # nothing to do: left to the firing, which says so
        firing = settle(firing, now=planned)
        if firing.notes:
            continue  # the ceiling holds something back: left to the firing, which says so
        prepared[timer.id] = PreparedTimer(
            due_at=timer.due_at,
            digest=_digest(item.text),
            fingerprint=item.state.policy,
            policy=item.policy,
            planned=planned,
            rule=firing.rule,
            acted=firing.acted.model_dump_json(),
            record=firing.record,
            effects=_effect_rows(firing.effects),
            changes=_change_rows(firing.timers),
            until=until,
        )
    return prepared


def fire_due_timers(
    store: Store,
    *,
    now: datetime,
    policies: PolicyBook,
    limit: int,
    prepared: dict[int, PreparedTimer] | None = None,
) -> TimerRun:
    """Fire up to ``limit`` due timers in one transaction: each fires once or not at all.

    The batch is read and written set-wise (one statement per kind of write), so the cost per
    timer is the rules' work plus a share of each statement. What the batch keeps until its
    writes is serialised as each timer is done (states, payloads and details as JSON text):
    strings, which the garbage collector neither walks nor promotes, where models and dicts
    kept for the whole batch would make it walk the heap again and again.

    A timer found in ``prepared`` (taken out of it) whose work still stands is completed from
    it (``rules.timers.complete_timer``'s part only); any other is worked out here.
    """
    at = now.timestamp()
    with store.unit_of_work() as uow:
        due, stored = uow.due_timers_with_states(now=at, limit=limit)
        if not due:
            return TimerRun(0, 0, 0.0)
        # Per ticket: its timers in this batch not yet fired; while one is, the state stays
        # parsed (the next one sees what this one did), else it goes back to JSON at once.
        to_come = Counter((t.source, t.ticket_id) for t in due)
        live: dict[tuple[str, str], TicketState] = {}
        saved: dict[tuple[str, str], RawJSON | None] = {}
        fired: list[tuple[int, float]] = []
        breaches: list[tuple[str, str]] = []
        timer_changes: list[TimerUpdate] = []
        timeline_rows: list[TimelineEntry] = []
        effects: list[dict[str, Any]] = []
        for timer in due:
            lateness = max(0.0, at - timer.due_at)
            fired.append((timer.id, lateness))
            key = src, tid = timer.source, timer.ticket_id
            to_come[key] -= 1
            kind = _TIMER_KINDS[timer.kind]
            ready = prepared.pop(timer.id, None) if prepared else None
            state = live.pop(key, None)
            text = stored.get(key)
            if (
                state is None
                and ready is not None
                and text is not None
                and ready.stands(timer, text, now, policies.pinned(uow, ready.fingerprint))
            ):
                acted = TicketState.model_validate_json(ready.acted)
                after = fired_state(acted, ready.record, now)
                notes: Sequence[str] = (fired_note(kind, ready.rule, ready.planned, now),)
                rows, changes, priority = ready.effects, ready.changes, acted.priority
            else:
                if state is None:
                    if text is None:
                        continue
                    state = TicketState.model_validate_json(text)
                decision = on_timer(
                    state,
                    kind,
                    due=datetime.fromtimestamp(timer.due_at, UTC),
                    now=now,
                    policy=policies.pinned(uow, state.policy),
                )
                after, notes, priority = decision.state, decision.notes, state.priority
                rows, changes = _effect_rows(decision.effects), _change_rows(decision.timers)
            saved.setdefault(key, None)  # rows are written in the order tickets were first done
            if to_come[key]:
                live[key] = after
            else:
                saved[key] = RawJSON(after.model_dump_json())
            if rows and kind in BREACH_TIMERS:
                breaches.append((timer.kind, priority.value))
            late_s = round(lateness, 3)
            timeline_rows.extend(
                TimelineEntry(
                    src, tid, at, "timer", _json({"timer": timer.kind, "note": n, "late_s": late_s})
                )
                for n in notes
            )
            timer_changes.extend(TimerUpdate(src, tid, k, d, r) for k, d, r in changes)
            effects.extend(
                {
                    "key": effect_key,
                    "target": target,
                    "kind": effect_kind,
                    "source": src,
                    "ticket_id": tid,
                    "payload": payload,
                    "reason": reason,
                }
                for effect_key, target, effect_kind, reason, payload in rows
            )
        uow.mark_timers_fired(fired, at=at)
        uow.save_tickets(
            [TicketWrite(s, t, st) for (s, t), st in saved.items() if st is not None], at=at
        )
        uow.set_timers_many(_without_noop_cancels(timer_changes, due), at=at)
        uow.add_timeline_many(timeline_rows)
        created = uow.enqueue_many(effects, at=at)
        if created:
            uow.announce()
    latenesses = tuple(late for _, late in fired)
    return TimerRun(len(fired), created, max(latenesses), latenesses, tuple(breaches))


_TIMER_KINDS = {kind.value: kind for kind in TimerKind}


def _without_noop_cancels(
    changes: list[TimerUpdate], fired: Sequence[DueTimer]
) -> list[TimerUpdate]:
    """``changes`` less those of a timer whose last change cancels it while it fired in this
    batch: marked fired first, it is no longer pending, so that cancel would change nothing
    (and only the last change of a timer is applied)."""
    last = {(s, t, k): due for s, t, k, due, _ in changes}
    noop = {(t.source, t.ticket_id, t.kind) for t in fired} & {
        key for key, due in last.items() if due is None
    }
    return [c for c in changes if (c[0], c[1], c[2]) not in noop] if noop else changes


def _json(value: dict[str, Any]) -> RawJSON:
    """``value`` as its JSON column stores it: the text of the column's own serialiser (the
    standard library's ``json.dumps`` with its defaults), made now rather than at the write."""
    return RawJSON(json.dumps(value))
