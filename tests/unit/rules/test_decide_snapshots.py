"""decide() and on_timer() against recorded decisions, over a wide table of events.

``tests/data/decide_snapshots.json`` holds, per group of inputs, each input's decision as one
line of JSON: the effects (target, kind, key, reason, payload), the timer changes, the notes,
``stale`` when set, and the ticket's state (in full for a new ticket, else the fields that
changed, the timeline as the entries kept from before and those after). A change of
behaviour shows as a diff of those lines. Regenerate the file only for an intended change,
and review its diff::

    PYTHONPATH=src python tests/unit/rules/test_decide_snapshots.py
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel, ValidationError

from ticketbridge.app.policy_file import load_policy
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules.fields import (
    new_budget,
    new_decision,
    new_effect,
    new_milestone,
    new_ticket,
    new_timer_change,
)
from ticketbridge.rules.model import (
    ADMIN_EVENTS,
    Decision,
    Effect,
    EffectBudget,
    Milestone,
    TimerChange,
    TimerKind,
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


def _at(at: datetime | None, now: datetime) -> str:
    """An event's time in a label: relative to when it is decided (``untimed``: none given)."""
    if at is None:
        return "untimed"
    minutes = int((at - now).total_seconds() // 60)
    return f"now{minutes:+d}m" if minutes else "now"


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


class Group(NamedTuple):
    """Decisions from one ticket (``base``; None: a new one), each under its input's label."""

    name: str
    base: TicketState | None
    decisions: dict[str, Decision]


def _labelled(pairs: Iterator[tuple[str, Decision]]) -> dict[str, Decision]:
    decisions: dict[str, Decision] = {}
    for label, decision in pairs:
        assert label not in decisions, f"two inputs labelled {label!r}"
        decisions[label] = decision
    return decisions


def groups(policy: Policy) -> Iterator[Group]:
    """The table, in groups of decisions."""
    for priority in Priority:
        for status in Status:
            for variant in VARIANTS:
                yield Group(
                    f"new/{priority}/{status}/{variant}",
                    None,
                    _labelled(
                        (
                            f"{kind} {_at(at, T0)}",
                            decide(
                                None,
                                event(priority, status, kind, variant, at=at),
                                now=T0,
                                policy=policy,
                            ),
                        )
                        for kind in HELPDESK_EVENTS
                        for at in (None, T0 - 5 * M, T0 + 5 * M)
                    ),
                )
    for name, base in _bases(policy):
        for kind in EventKind:
            decisions = _labelled(
                (
                    f"{priority}/{status}/{variant} {_at(at, LATER)}",
                    decide(
                        base,
                        event(priority, status, kind, variant, at=at),
                        now=LATER,
                        policy=policy,
                    ),
                )
                for priority in Priority
                for status in Status
                for variant in VARIANTS
                for at in (None, LATER + 5 * M)
            )
            for label, at, echo in (("stale", T0 - M, False), ("own echo", None, True)):
                again = event(base.priority, base.status, kind, at=at, echo=echo)
                decisions[label] = decide(base, again, now=LATER, policy=policy)
            yield Group(f"known/{name}/{kind}", base, decisions)
        timers: list[tuple[str, Decision]] = []
        for timer in TimerKind:
            due, _ = plan_timers(base, policy)[timer]
            for at in (due, T0 + timedelta(days=30)) if due is not None else (LATER,):
                fired = f"{timer} due {at:%m-%d %H:%M}"
                timers.append(
                    (f"{fired} on time", on_timer(base, timer, due=at, now=at, policy=policy))
                )
                early = on_timer(base, timer, due=at, now=at - M, policy=policy)
                timers.append((f"{fired} a minute early", early))
        yield Group(f"timers/{name}", base, _labelled(iter(timers)))


def _when(at: datetime) -> str:
    """``at`` as its distance from ``T0`` (``T0+1h30m``): exact, and shorter than ISO 8601."""
    if at.tzinfo is not UTC:
        return at.isoformat()
    delta = at - T0
    sign, delta = ("-", -delta) if delta < timedelta(0) else ("+", delta)
    hours, seconds = divmod(int(delta.total_seconds()), 3600)
    days, hours = divmod(hours, 24)
    parts = zip((days, hours, seconds // 60, seconds % 60), "dhms", strict=True)
    text = "".join(f"{n}{unit}" for n, unit in parts if n) or "0m"
    micro = f".{delta.microseconds:06d}" if delta.microseconds else ""
    return f"T0{sign}{text}{micro}"


def _json(value: object) -> object:
    if isinstance(value, datetime):
        return _when(value)
    raise TypeError(f"{type(value).__name__} in a decision")


def _fields(model: BaseModel) -> dict[str, Any]:
    """The model's fields as JSON values (times as ``_when``), by name."""
    fields: dict[str, Any] = json.loads(json.dumps(model.model_dump(), default=_json))
    return fields


def _state(before: TicketState | None, after: TicketState) -> dict[str, Any]:
    """``after``'s fields that differ from ``before``'s (a new ticket: from their defaults),
    its timeline as how many of ``before``'s entries it kept in front, then its own."""
    new = _fields(after)
    if before is not None:
        old = _fields(before)
    else:
        old = {
            name: json.loads(json.dumps(field.get_default(call_default_factory=True)))
            for name, field in TicketState.model_fields.items()
            if not field.is_required()
        }
        old["history"] = []
    changed = {name: value for name, value in new.items() if name not in old or old[name] != value}
    changed.update({name: None for name in old.keys() - new.keys()})
    if "history" in changed:
        kept = 0
        for was, now in zip(old["history"], new["history"], strict=False):
            if was != now:
                break
            kept += 1
        changed["history"] = {
            "kept": kept,
            "then": [f"{entry['at']} {entry['what']}" for entry in new["history"][kept:]],
        }
    return changed


def _timeline(state: TicketState) -> str:
    """The write-up's timeline rows for ``state``'s history (what ``write_up_body`` lists)."""
    return "\n".join(
        f"| {m.at:%Y-%m-%d %H:%M:%S} UTC | {m.what.replace('|', '/')} |" for m in state.history
    )


class _Tables:
    """A group's effects and timer rules, each written once and named in its decisions."""

    def __init__(self) -> None:
        self.effects: dict[str, Any] = {}  # name -> the effect as JSON
        self.rules: list[str] = []

    def effect(self, effect: Effect, state: TicketState) -> str:
        form = _fields(effect)
        body = form["payload"].get("body")
        rows = _timeline(state)
        if effect.kind == "write_up" and rows and isinstance(body, str) and rows in body:
            # The timeline is the decision's state's, recorded beside it.
            form["payload"]["body"] = body.replace(rows, "(the state's history)")
        name = effect.key
        for number in range(2, 10_000):
            if self.effects.setdefault(name, form) == form:
                return name
            name = f"{effect.key} #{number}"
        raise AssertionError("too many variants of one effect")

    def timer(self, change: TimerChange) -> str:
        due = "cancelled" if change.due is None else _when(change.due)
        if not change.rule:
            return f"{change.kind} {due}"
        if change.rule not in self.rules:
            self.rules.append(change.rule)
        return f"{change.kind} {due} (rule {self.rules.index(change.rule) + 1})"


def recorded_form(decision: Decision, base: TicketState | None, tables: _Tables) -> dict[str, Any]:
    """What the snapshot file holds of ``decision`` (empty parts left out)."""
    form: dict[str, Any] = {}
    if decision.notes:
        form["notes"] = list(decision.notes)
    if decision.effects:
        form["effects"] = [tables.effect(e, decision.state) for e in decision.effects]
    if decision.timers:
        form["timers"] = [tables.timer(change) for change in decision.timers]
    if decision.stale:
        form["stale"] = True
    form["state"] = _state(base, decision.state)
    return form


def _line(key: str, value: object, last: bool) -> str:
    return f" {json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}" + (
        "" if last else ","
    )


def render(table: list[Group]) -> str:
    """The snapshot file: JSON, per group one line per input's decision (``same as`` an
    earlier input's when equal), then one per effect and timer rule they name."""
    lines = ["{"]
    for number, group in enumerate(table, 1):
        tables = _Tables()
        entries: list[tuple[str, object]] = []
        first: dict[str, str] = {}
        for label, decision in group.decisions.items():
            form = recorded_form(decision, group.base, tables)
            text = json.dumps(form, sort_keys=True)
            entries.append((label, form if text not in first else f"same as {first[text]}"))
            first.setdefault(text, label)
        entries.extend((f"effect {name}", form) for name, form in tables.effects.items())
        entries.extend((f"rule {n}", rule) for n, rule in enumerate(tables.rules, 1))
        lines.append(f"{json.dumps(group.name)}: {{")
        lines.extend(_line(k, v, i == len(entries)) for i, (k, v) in enumerate(entries, 1))
        lines.append("}," if number < len(table) else "}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def differences(recorded: dict[str, Any], found: dict[str, Any], limit: int = 12) -> list[str]:
    """Where ``found`` departs from ``recorded``: groups and inputs gained or lost, and per
    input the parts of its decision that changed, recorded then found."""
    lines: list[str] = []
    for name in recorded.keys() - found.keys():
        lines.append(f"group no longer produced: {name}")
    for name in found.keys() - recorded.keys():
        lines.append(f"group not recorded: {name}")
    for name in recorded.keys() & found.keys():
        was, now = recorded[name], found[name]
        lines.extend(f"{name} / {label}: no longer produced" for label in was.keys() - now.keys())
        lines.extend(f"{name} / {label}: not recorded" for label in now.keys() - was.keys())
        for label in was.keys() & now.keys():
            old, new = was[label], now[label]
            if not isinstance(old, dict) or not isinstance(new, dict):
                old, new = {"": old}, {"": new}
            for part in sorted(old.keys() | new.keys()):
                before, after = old.get(part), new.get(part)
                if before != after:
                    was_text = json.dumps(before, ensure_ascii=False)[:600]
                    now_text = json.dumps(after, ensure_ascii=False)[:600]
                    lines.append(
                        f"{name} / {label} / {part}:\n  recorded {was_text}\n  found    {now_text}"
                    )
    lines.sort()
    if len(lines) > limit:
        lines[limit:] = [f"... and {len(lines) - limit} more"]
    return lines


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture(scope="module")
def table(policy: Policy) -> list[Group]:
    return list(groups(policy))


def test_every_group_decides_as_recorded(table: list[Group]) -> None:
    recorded_text = SNAPSHOTS.read_text(encoding="utf-8")
    found_text = render(table)
    if found_text != recorded_text:
        found, recorded = json.loads(found_text), json.loads(recorded_text)
        report = differences(recorded, found) or ["the same decisions, formatted differently"]
        pytest.fail(
            "decisions differ from tests/data/decide_snapshots.json (regenerate it only for an "
            "intended change):\n" + "\n".join(report),
            pytrace=False,
        )


def test_the_table_is_the_recorded_one(table: list[Group]) -> None:
    """The inputs stay the recorded ones: 267 groups, each input labelled once."""
    recorded = json.loads(SNAPSHOTS.read_text(encoding="utf-8"))
    assert len(table) == len(recorded) == 267
    inputs = sum(len(group.decisions) for group in table)
    assert inputs == sum(
        1
        for group in recorded.values()
        for key in group
        if not key.startswith(("effect ", "rule "))
    )


def test_hot_path_states_match_validated_ones(table: list[Group]) -> None:
    """Every state the rules return is what validating its own fields gives (same values,
    same types), so it stores and reads back identically."""
    for group in table:
        for decision in group.decisions.values():
            state = decision.state
            again = TicketState.model_validate(state.model_dump())
            assert again == state
            assert again.model_dump_json() == state.model_dump_json()
            assert [type(v) for v in again.__dict__.values()] == [
                type(v) for v in state.__dict__.values()
            ]
            assert list(again.__dict__) == list(state.__dict__)


if __name__ == "__main__":
    SNAPSHOTS.write_text(render(list(groups(load_policy(None)))), encoding="utf-8")


_UPDATES: list[dict[str, object]] = [
    {"incident_open": True, "page_generation": 3},
    {"history": (Milestone(at=T0, what="x"),), "tags": ("a",)},
    {"status": Status.CLOSED},
    {"status_page": None, "resolved_at": T0, "write_up_due": None},
]


@pytest.mark.parametrize("update", [*_UPDATES, {}, None])
@pytest.mark.parametrize("deep", [False, True])
def test_model_copy_is_pydantics(
    table: list[Group], update: dict[str, object] | None, deep: bool
) -> None:
    """The rules' models copy themselves as ``BaseModel.model_copy`` would (their own
    ``model_copy`` skips its generic steps)."""
    for group in table:
        decisions = list(group.decisions.values())[:3]
        for state in {id(d.state): d.state for d in decisions}.values():
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


def test_constructors_are_the_models_own(table: list[Group]) -> None:
    """The rules' hot-path constructors (``new_decision``...) build what the models' own
    ``__init__`` does from the same values: same fields, types and fields counted as set."""
    pairs: list[tuple[Callable[..., BaseModel], type[BaseModel]]] = [
        (new_ticket, TicketState),
        (new_milestone, Milestone),
        (new_effect, Effect),
        (new_timer_change, TimerChange),
        (new_budget, EffectBudget),
        (new_decision, Decision),
    ]
    decision = next(
        d for group in table for d in group.decisions.values() if d.effects and d.timers
    )
    examples: list[BaseModel] = [
        decision,
        decision.state,
        *decision.state.history,
        *decision.effects,
        *decision.timers,
        EffectBudget(hour=T0, made=2),
        Decision(state=decision.state),  # defaults left out
    ]
    for model in examples:
        new, cls = next(pair for pair in pairs if type(model) is pair[1])
        values = {name: model.__dict__[name] for name in model.model_fields_set}
        ours, theirs = new(**values), cls(**values)
        assert type(ours) is cls
        assert list(ours.__dict__.items()) == list(theirs.__dict__.items())
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours.model_dump_json() == theirs.model_dump_json()
    with pytest.raises(ValidationError):
        new_milestone(at="not a time", what="x")  # type: ignore[arg-type]  # validated alike
