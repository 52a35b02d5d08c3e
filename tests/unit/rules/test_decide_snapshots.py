"""decide() and on_timer() against recorded outputs, over a wide table of events.

The rules build their models on a hot path (copies merged, values already validated); this
pins what they return to what the straightforward version returned: each group's decisions
as ``model_dump_json`` plus the fields each model counts as set, hashed. The digests in
``fixtures/decide_snapshots.json`` were recorded before those speed-ups; regenerate them only
for an intended change of behaviour::

    PYTHONPATH=src python tests/unit/rules/test_decide_snapshots.py
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ticketbridge.app.policy import load_policy
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules.model import (
    ADMIN_EVENTS,
    Decision,
    Effect,
    Milestone,
    TimerChange,
    TimerKind,
    new_decision,
    new_effect,
    new_milestone,
    new_ticket,
    new_timer_change,
)
from ticketbridge.rules.timers import on_timer, plan_timers

SNAPSHOTS = Path(__file__).parents[2] / "data" / "decide_snapshots.json"
T0 = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)  # a Friday afternoon: calendars matter
M = timedelta(minutes=1)
LATER = T0 + 10 * M  # when events on known tickets are decided
HELPDESK_EVENTS = [kind for kind in EventKind if kind not in ADMIN_EVENTS]

# Per event: extra fields beside the snapshot ones (tags, engagement, impact, admin text).
VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "assigned": {"agent_assigned": True, "tags": ()},
    "tagged": {"tags": ("github-followup", "component:API", "Component: web ", "vip")},
    "system-wide": {"system_wide": True, "components": ("api",), "tags": ("System-Wide",)},
    "admin-text": {"change": {"title": "Fix the checkout", "body": "Root cause: a | pipe"}},
}


def event(
    priority: Priority,
    status: Status,
    kind: EventKind,
    variant: str = "plain",
    *,
    at: datetime | None = None,
    echo: bool = False,
) -> TicketEvent:
    return TicketEvent.model_validate(
        {
            "source": "freshdesk",
            "ticket_id": "42",
            "kind": kind,
            "priority": priority,
            "status": status,
            "status_label": status.value.capitalize(),
            "domain": "acme",
            "url": "https://acme.freshdesk.com/a/tickets/42",
            "subject": "Checkout fails",
            "occurred_at": at,
            "own_echo": echo,
            **VARIANTS[variant],
        }
    )


def _sets(model: BaseModel) -> object:
    """The fields ``model`` (and every model inside it) counts as set, in a stable order."""
    nested = {
        name: [_sets(v) for v in value] if isinstance(value, tuple) else _sets(value)
        for name, value in model.__dict__.items()
        if isinstance(value, BaseModel)
        or (isinstance(value, tuple) and value and isinstance(value[0], BaseModel))
    }
    return [sorted(model.model_fields_set), nested]


def _render(decision: Decision) -> str:
    return decision.model_dump_json() + json.dumps(_sets(decision))


def _bases(policy: Policy) -> Iterator[tuple[str, TicketState]]:
    """Known tickets to apply a second event to: each priority and status, and a few with
    history (engaged, system-wide with a status page, resolved with a write-up)."""
    for priority in Priority:
        for status in (Status.OPEN, Status.PENDING, Status.RESOLVED):
            first = event(priority, status, EventKind.CREATED, at=T0)
            yield f"{priority}-{status}", decide(None, first, now=T0, policy=policy).state
    state = decide(
        None, event(Priority.URGENT, Status.OPEN, EventKind.CREATED), now=T0, policy=policy
    ).state
    for i, (kind, status, variant) in enumerate(
        [
            (EventKind.AGENT_REPLY, Status.OPEN, "plain"),
            (EventKind.UPDATED, Status.OPEN, "system-wide"),
            (EventKind.STATUS_CHANGED, Status.PENDING, "tagged"),
            (EventKind.STATUS_CHANGED, Status.RESOLVED, "plain"),
        ]
    ):
        state = decide(
            state,
            event(Priority.URGENT, status, kind, variant, at=T0 + (i + 1) * M),
            now=T0 + (i + 1) * M,
            policy=policy,
        ).state
        yield f"history-{i}", state
    # A timeline at its bound, ending with entries an event at LATER may record again.
    filler = [Milestone(at=T0 - i * M, what=f"entry {i}") for i in range(196, 0, -1)]
    recent = [
        Milestone(at=LATER, what=what)
        for what in (
            "Paged VictorOps (CRITICAL)",
            "Customer replied",
            "Priority changed Urgent → Low",
            "Status Open → Resolved",
        )
    ]
    opened = decide(
        None, event(Priority.LOW, Status.OPEN, EventKind.CREATED), now=T0, policy=policy
    )
    yield "long-history", opened.state.model_copy(update={"history": (*filler, *recent)})


def groups(policy: Policy) -> Iterator[tuple[str, list[Decision]]]:
    """The table, in groups of decisions (one digest each)."""
    for priority in Priority:
        for status in Status:
            for variant in VARIANTS:
                yield (
                    f"new/{priority}/{status}/{variant}",
                    [
                        decide(
                            None,
                            event(priority, status, kind, variant, at=at),
                            now=T0,
                            policy=policy,
                        )
                        for kind in HELPDESK_EVENTS
                        for at in (None, T0 - 5 * M, T0 + 5 * M)
                    ],
                )
    for name, base in _bases(policy):
        for kind in EventKind:
            decisions = [
                decide(
                    base, event(priority, status, kind, variant, at=at), now=LATER, policy=policy
                )
                for priority in Priority
                for status in Status
                for variant in VARIANTS
                for at in (None, LATER + 5 * M)
            ]
            for at, echo in ((T0 - M, False), (None, True)):  # stale, and an echo
                again = event(base.priority, base.status, kind, at=at, echo=echo)
                decisions.append(decide(base, again, now=LATER, policy=policy))
            yield f"known/{name}/{kind}", decisions
        timers = []
        for kind in TimerKind:
            due, _ = plan_timers(base, policy)[kind]
            for at in (due, T0 + timedelta(days=30)) if due is not None else (LATER,):
                timers.append(on_timer(base, kind, due=at, now=at, policy=policy))
                timers.append(on_timer(base, kind, due=at, now=at - M, policy=policy))
        yield f"timers/{name}", timers


def digests(table: list[tuple[str, list[Decision]]]) -> dict[str, str]:
    return {
        name: hashlib.sha256("\n".join(map(_render, decisions)).encode()).hexdigest()[:16]
        for name, decisions in table
    }


@pytest.fixture(scope="module")
def recorded() -> dict[str, str]:
    return json.loads(SNAPSHOTS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture(scope="module")
def table(policy: Policy) -> list[tuple[str, list[Decision]]]:
    return list(groups(policy))


def test_every_group_decides_as_recorded(
    table: list[tuple[str, list[Decision]]], recorded: dict[str, str]
) -> None:
    found = digests(table)
    assert found.keys() == recorded.keys()
    assert {name for name in found if found[name] != recorded[name]} == set()


def test_hot_path_states_match_validated_ones(table: list[tuple[str, list[Decision]]]) -> None:
    """Every state the rules return is what validating its own fields gives (same values,
    same types), so it stores and reads back identically."""
    for _, decisions in table:
        for decision in decisions:
            state = decision.state
            again = TicketState.model_validate(state.model_dump())
            assert again == state
            assert again.model_dump_json() == state.model_dump_json()
            assert [type(v) for v in again.__dict__.values()] == [
                type(v) for v in state.__dict__.values()
            ]
            assert list(again.__dict__) == list(state.__dict__)


if __name__ == "__main__":
    found = digests(list(groups(load_policy(None))))
    SNAPSHOTS.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")


_UPDATES: list[dict[str, object]] = [
    {"incident_open": True, "page_generation": 3},
    {"history": (Milestone(at=T0, what="x"),), "tags": ("a",)},
    {"status": Status.CLOSED},
    {"status_page": None, "resolved_at": T0, "write_up_due": None},
]


@pytest.mark.parametrize("update", [*_UPDATES, {}, None])
@pytest.mark.parametrize("deep", [False, True])
def test_model_copy_is_pydantics(
    table: list[tuple[str, list[Decision]]], update: dict[str, object] | None, deep: bool
) -> None:
    """The rules' models copy themselves as ``BaseModel.model_copy`` would (their own
    ``model_copy`` skips its generic steps)."""
    for _, decisions in table:
        for state in {id(d.state): d.state for d in decisions[:3]}.values():
            ours = state.model_copy(update=update, deep=deep)
            theirs = BaseModel.model_copy(state, update=update, deep=deep)
            assert type(ours) is type(theirs) is TicketState
            assert list(ours.__dict__.items()) == list(theirs.__dict__.items())
            assert ours.model_fields_set == theirs.model_fields_set
            assert ours.__pydantic_extra__ == theirs.__pydantic_extra__
            assert ours.__pydantic_private__ == theirs.__pydantic_private__
            assert ours.model_dump_json() == theirs.model_dump_json()
            assert ours.__dict__ is not state.__dict__
            assert ours.model_fields_set is not state.model_fields_set


def test_constructors_are_the_models_own(table: list[tuple[str, list[Decision]]]) -> None:
    """The rules' hot-path constructors (``new_decision``...) build what the models' own
    ``__init__`` does from the same values: same fields, types and fields counted as set."""
    pairs: list[tuple[Callable[[dict[str, Any]], BaseModel], type[BaseModel]]] = [
        (new_ticket, TicketState),
        (new_milestone, Milestone),
        (new_effect, Effect),
        (new_timer_change, TimerChange),
        (new_decision, Decision),
    ]
    decision = next(d for _, ds in table for d in ds if d.effects and d.timers)
    examples: list[BaseModel] = [
        decision,
        decision.state,
        *decision.state.history,
        *decision.effects,
        *decision.timers,
        Decision(state=decision.state),  # defaults left out
    ]
    for model in examples:
        new, cls = next(pair for pair in pairs if type(model) is pair[1])
        values = {name: model.__dict__[name] for name in model.model_fields_set}
        ours, theirs = new(values), cls(**values)
        assert type(ours) is cls
        assert list(ours.__dict__.items()) == list(theirs.__dict__.items())
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours.model_dump_json() == theirs.model_dump_json()
    with pytest.raises(ValidationError):
        new_milestone({"at": "not a time", "what": "x"})  # validated alike
