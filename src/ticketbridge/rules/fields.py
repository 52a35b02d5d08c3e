"""The models' fields as TypedDicts, and the constructors the rules build models with.

What the rules pass to these constructors and to ``model_copy`` is typed here, so mypy checks
the field names and value types of every model the rules build or change; each TypedDict
names exactly its model's fields (``tests/unit/test_rules.py`` holds them equal).
"""

# No ``from __future__ import annotations``: TypedDict reads ``NotRequired`` at run time.
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NotRequired, TypedDict, TypeVar, Unpack

from pydantic import BaseModel

from ticketbridge.rules.model import (
    Decision,
    Effect,
    EffectBudget,
    Milestone,
    Priority,
    Status,
    StatusPageState,
    TicketState,
    TimerChange,
    TimerKind,
)


class _TicketRequired(TypedDict):
    source: str
    ticket_id: str
    priority: Priority
    status: Status
    status_label: str
    opened_at: datetime
    last_event_at: datetime
    policy: str


class _TicketDefaulted(TypedDict, total=False):
    domain: str
    url: str
    subject: str
    incident_open: bool
    page_generation: int
    engaged_at: datetime | None
    engagement_breached: bool
    tier_one_done: bool
    cadence_base: datetime | None
    update_reminders: int
    pending_since: datetime | None
    auto_close_requested: bool
    tier_two_engaged: bool
    history: tuple[Milestone, ...]
    tags: tuple[str, ...]
    followups: int
    resolved_at: datetime | None
    write_up_due: datetime | None
    write_up_reminded: bool
    system_wide: bool
    status_page: StatusPageState | None
    budget: EffectBudget | None


class TicketFields(_TicketRequired, _TicketDefaulted):
    """The fields of a new ``TicketState``."""


class TicketUpdate(_TicketDefaulted, total=False):
    """Changes to a ``TicketState`` (``model_copy``'s ``update``): any of its fields."""

    source: str
    ticket_id: str
    priority: Priority
    status: Status
    status_label: str
    opened_at: datetime
    last_event_at: datetime
    policy: str


class StatusPageUpdate(TypedDict, total=False):
    """Changes to a ``StatusPageState``."""

    stage: str
    components: tuple[str, ...]
    updates: int


class _MilestoneFields(TypedDict):
    at: datetime
    what: str


class _EffectFields(TypedDict):
    target: str
    kind: str
    key: str
    payload: dict[str, Any]
    reason: str


class _TimerChangeFields(TypedDict):
    kind: TimerKind
    due: datetime | None
    rule: NotRequired[str]


class _BudgetFields(TypedDict):
    hour: datetime
    made: NotRequired[int]
    held: NotRequired[int]


class _DecisionFields(TypedDict):
    state: TicketState
    effects: NotRequired[tuple[Effect, ...]]
    timers: NotRequired[tuple[TimerChange, ...]]
    notes: NotRequired[tuple[str, ...]]
    stale: NotRequired[bool]


_M = TypeVar("_M", bound=BaseModel)


def _validator(cls: type[_M]) -> Callable[[Mapping[str, Any]], _M]:
    """``cls(**values)`` as a function of ``values``, validated alike: pydantic-core's
    validator called directly, without ``BaseModel.__init__``'s frame (decide() builds several
    models per event)."""
    validate: Callable[[Mapping[str, Any]], _M] = cls.__pydantic_validator__.validate_python
    return validate


_ticket = _validator(TicketState)
_milestone = _validator(Milestone)
_effect = _validator(Effect)
_timer_change = _validator(TimerChange)
_budget = _validator(EffectBudget)
_decision = _validator(Decision)


# The models the rules build per event, each as ``Model(**fields)`` builds it (validated, the
# same fields counted as set).


def new_ticket(**fields: Unpack[TicketFields]) -> TicketState:
    """A new ticket's state."""
    return _ticket(fields)


def new_milestone(**fields: Unpack[_MilestoneFields]) -> Milestone:
    """A timeline entry."""
    return _milestone(fields)


def new_effect(**fields: Unpack[_EffectFields]) -> Effect:
    """An effect."""
    return _effect(fields)


def new_timer_change(**fields: Unpack[_TimerChangeFields]) -> TimerChange:
    """A timer change."""
    return _timer_change(fields)


def new_budget(**fields: Unpack[_BudgetFields]) -> EffectBudget:
    """A ticket's effect budget for one hour."""
    return _budget(fields)


def new_decision(**fields: Unpack[_DecisionFields]) -> Decision:
    """A decision."""
    return _decision(fields)


def updated(state: TicketState, **changes: Unpack[TicketUpdate]) -> TicketState:
    """``state`` with ``changes`` made (its ``model_copy``)."""
    return state.model_copy(update=changes)


def updated_page(page: StatusPageState, **changes: Unpack[StatusPageUpdate]) -> StatusPageState:
    """``page`` with ``changes`` made (its ``model_copy``)."""
    return page.model_copy(update=changes)
