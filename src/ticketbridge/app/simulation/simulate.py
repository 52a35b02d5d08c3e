"""Simulate a ticket timeline on the production code path, with every effect recorded, not sent.

The timeline's events go through ``services.ingest.ingest`` and its timers through
``services.timers.fire_due_timers`` — the very functions the webhook routes and the scheduler
call — on a throwaway in-memory SQLite store, while a virtual clock steps from due time to due time.
The effects are read back from that store's outbox as they are created; no dispatcher runs,
so nothing leaves the process, and the store is discarded at the end.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel

from ticketbridge.adapters.store import schema
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.services.ingest import PolicyBook, ingest
from ticketbridge.app.services.timers import fire_due_timers
from ticketbridge.app.simulation.timeline import Timeline, deliveries, format_offset
from ticketbridge.rules import Policy

DEFAULT_HORIZON = timedelta(days=30)
MAX_STEPS = 2000
SUMMARY_CHARS = 300
_TAG = re.compile(r"<[^>]+>")
_NOTE_KINDS = frozenset({"note", "stale", "timer"})


class SimulatedEffect(BaseModel):
    """An effect the service would have sent: when, to whom, what, and the rule behind it."""

    offset: str
    at: str
    target: str
    kind: str
    key: str
    reason: str
    summary: str
    cause: str


class SimulatedEvent(BaseModel):
    """What became of one delivery of the timeline."""

    number: int
    offset: str
    at: str
    event: str
    priority: str
    status: str
    outcome: Literal["accepted", "duplicate", "stale"]
    effects: int
    repeat_of: int | None = None


class SimulationNote(BaseModel):
    offset: str
    at: str
    note: str


class PendingTimer(BaseModel):
    kind: str
    due_offset: str
    due_at: str
    rule: str


class SimulationResult(BaseModel):
    """The ordered effects of a timeline under a policy, with the notes that explain them."""

    ticket: str
    policy: str
    start: str
    end_offset: str
    end_at: str
    stopped: Literal["quiet", "horizon", "steps"]
    events: list[SimulatedEvent]
    effects: list[SimulatedEffect]
    notes: list[SimulationNote]
    pending_timers: list[PendingTimer]


def _text(body: str) -> str:
    return html.unescape(_TAG.sub("", body)).removeprefix("[ticketbridge] ").strip()


def summarise(payload: dict[str, Any]) -> str:
    """One line saying what an effect's payload asks of its target."""
    action = payload.get("action")
    if "message_type" in payload:
        text = f"{payload['message_type']} {payload.get('entity_id', '')}: "
        text += str(payload.get("state_message", ""))
    elif "summary" in payload:
        text = str(payload["summary"])
    elif action == "note":
        text = "private note: " + _text(str(payload.get("body", "")))
    elif action == "reassign":
        text = f"unassign the agent, set group {payload.get('group')!r}"
    elif action == "close":
        text = "close the ticket"
    elif action == "create_issue":
        labels = ", ".join(payload.get("labels", []))
        text = f"GitHub issue {payload.get('title')!r} [{labels}]"
    elif action == "comment":
        text = "GitHub comment: " + str(payload.get("body", ""))
    elif action in ("open", "update", "resolve"):
        components = ", ".join(payload.get("components", [])) or "no components"
        stage = payload.get("status", "resolved")
        text = f"status page {action} ({stage}; {components}): {payload.get('body', '')}"
    else:
        text = ", ".join(f"{k}={v}" for k, v in sorted(payload.items()) if k != "marker")
    then = [summarise(dict(step.get("payload", {}))) for step in payload.get("then", [])]
    if then:
        text += " — once sent, then: " + "; ".join(then)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


@dataclass
class _Run:
    """One simulation's store, clock and what has been read back so far."""

    timeline: Timeline
    store: Store
    policies: PolicyBook
    clock: FakeClock
    max_steps: int
    steps: int = 0
    effects: list[SimulatedEffect] = field(default_factory=list)
    notes: list[SimulationNote] = field(default_factory=list)
    _seen_effects: int = 0  # the last outbox and timeline row ids read back
    _seen_notes: int = 0

    def offset(self, epoch: float) -> tuple[str, str]:
        when = datetime.fromtimestamp(epoch, UTC)
        return format_offset(when - self.timeline.start), _iso(when)

    def note(self, text: str) -> None:
        offset, at = self.offset(self.clock.now().timestamp())
        self.notes.append(SimulationNote(offset=offset, at=at, note=text))

    def collect(self, cause: str | None) -> None:
        """Read back the effects and notes the last step created (rows past the last seen
        ids: ``Store.ticket_view`` reads the whole ticket, which makes a long run quadratic)."""
        notes, outbox = schema.timeline, schema.outbox
        with self.store.reading() as conn:
            entries = conn.execute(
                sa.select(notes.c.id, notes.c.at, notes.c.detail)
                .where(notes.c.id > self._seen_notes, notes.c.kind.in_(_NOTE_KINDS))
                .order_by(notes.c.id)
            ).all()
            new = conn.execute(
                sa.select(outbox).where(outbox.c.id > self._seen_effects).order_by(outbox.c.id)
            ).all()
        fired = None
        for entry in entries:
            detail = dict(entry.detail)
            fired = detail.get("timer", fired)
            offset, at = self.offset(entry.at)
            self.notes.append(SimulationNote(offset=offset, at=at, note=str(detail.get("note"))))
            self._seen_notes = entry.id
        cause = cause or (f"timer {fired}" if fired else "timer")
        for found in new:
            row = found._mapping
            self._seen_effects = row["id"]
            offset, at = self.offset(row["created_at"])
            self.effects.append(
                SimulatedEffect(
                    offset=offset,
                    at=at,
                    target=row["target"],
                    kind=row["kind"],
                    key=row["key"],
                    reason=row["reason"],
                    summary=summarise(dict(row["payload"])),
                    cause=cause,
                )
            )

    def fire_until(self, end: datetime, *, inclusive: bool) -> bool:
        """Fire timers one at a time, stepping the clock to each due time, up to ``end``
        (timers due at ``end`` too when ``inclusive``); False when the step budget ran out."""
        limit = end.timestamp()
        while True:
            due = self.store.next_timer_due()
            if due is None or due > limit or (due == limit and not inclusive):
                return True
            if self.steps >= self.max_steps:
                return False
            self.steps += 1
            when = max(self.clock.now(), datetime.fromtimestamp(due, UTC))
            self.clock.set(when)
            # One timer per step (the scheduler batches them; in one batch each still sees the
            # state the previous one left), so every effect is traced to the timer behind it.
            fire_due_timers(self.store, now=when, policies=self.policies, limit=1)
            self.collect(None)


def simulate(
    timeline: Timeline,
    policy: Policy,
    *,
    horizon: timedelta | None = None,
    max_steps: int = MAX_STEPS,
) -> SimulationResult:
    """Run ``timeline`` under ``policy`` through the service's own ingest and timer code.

    After the last event the clock runs on for ``horizon`` (the timeline's own, else until no
    timer is pending, at most 30 days), firing at most ``max_steps`` timers in all. Blocking;
    the in-memory store lives in the calling thread and is gone when this returns.
    """
    store = Store("sqlite://", sqlite_synchronous="OFF")
    try:
        store.migrate()
        run = _Run(timeline, store, PolicyBook(policy), FakeClock(timeline.start), max_steps)
        run.policies.remember_current(store, at=timeline.start.timestamp())
        return _play(run, horizon if horizon is not None else timeline.horizon)
    finally:
        store.close()


def _play(run: _Run, horizon: timedelta | None) -> SimulationResult:
    timeline, store = run.timeline, run.store
    events: list[SimulatedEvent] = []
    budget_left = True
    for delivery in deliveries(timeline):
        budget_left = run.fire_until(delivery.at, inclusive=False)
        if not budget_left:
            break
        run.clock.set(max(run.clock.now(), delivery.at))
        result = ingest(
            store,
            event=delivery.event,
            dedup_key=delivery.dedup_key,
            now=run.clock.now(),
            policies=run.policies,
        )
        event = delivery.event
        name = f"event {delivery.number} ({event.kind.value})"
        if result.outcome == "duplicate":
            original = f" of event {delivery.repeat_of}" if delivery.repeat_of else ""
            run.note(f"{name}: duplicate delivery{original}, recorded once: nothing to do")
        run.collect(name)
        events.append(
            SimulatedEvent(
                number=delivery.number,
                offset=format_offset(delivery.offset),
                at=_iso(delivery.at),
                event=event.kind.value,
                priority=event.priority.value,
                status=event.status_label,
                outcome=result.outcome,
                effects=result.effects,
                repeat_of=delivery.repeat_of,
            )
        )
    last = timeline.start + timeline.events[-1].at
    end = last + (horizon if horizon is not None else DEFAULT_HORIZON)
    if budget_left:
        budget_left = run.fire_until(end, inclusive=True)
    view = store.ticket_view(timeline.source, timeline.ticket_id)
    pending = [t for t in (view or {}).get("timers", []) if t["status"] == "pending"]
    if horizon is not None and budget_left:
        run.clock.set(max(run.clock.now(), end))
    stopped: Literal["quiet", "horizon", "steps"] = (
        "steps" if not budget_left else "horizon" if pending else "quiet"
    )
    end_offset, end_at = run.offset(run.clock.now().timestamp())
    return SimulationResult(
        ticket=f"{timeline.source}/{timeline.ticket_id}",
        policy=run.policies.current.fingerprint,
        start=_iso(timeline.start),
        end_offset=end_offset,
        end_at=end_at,
        stopped=stopped,
        events=events,
        effects=run.effects,
        notes=run.notes,
        pending_timers=[
            PendingTimer(
                kind=t["kind"],
                due_offset=run.offset(t["due_at"])[0],
                due_at=run.offset(t["due_at"])[1],
                rule=t["rule"],
            )
            for t in pending
        ],
    )
