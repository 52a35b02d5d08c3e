"""Canonical ticket, events and effects: the data the rules take and return."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field


class _StrEnum(StrEnum):
    """A StrEnum whose members' ``value`` is an attribute read, not Enum's Python-level
    property: the JSON serialiser and the service read it for every enum field they write."""

    if not TYPE_CHECKING:  # for type checkers, the value is Enum's (whose type they know)
        value = property(attrgetter("_value_"))


class Priority(_StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    label: str  # "Urgent"

    def __init__(self, value: str) -> None:  # pragma: no mutate block (runs in class creation)
        # Set once per member: an attribute, not a property, since the rules read it often.
        self.label = value.capitalize()


class Status(_StrEnum):
    """Canonical status; helpdesk-specific labels (custom statuses) are kept beside it."""

    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"

    # True while the ticket still needs work (not resolved or closed).
    is_active: bool

    def __init__(self, value: str) -> None:  # pragma: no mutate block (runs in class creation)
        self.is_active = value in ("open", "pending")  # an attribute, as Priority.label


class EventKind(_StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    PRIORITY_CHANGED = "priority_changed"
    STATUS_CHANGED = "status_changed"
    NOTE_ADDED = "note_added"
    AGENT_REPLY = "agent_reply"
    CUSTOMER_REPLY = "customer_reply"
    ASSIGNED = "assigned"
    # Admin API requests on a known ticket: they change no helpdesk snapshot field.
    FOLLOWUP_REQUESTED = "followup_requested"
    SYSTEM_WIDE_DECLARED = "system_wide_declared"


ADMIN_EVENTS = frozenset({EventKind.FOLLOWUP_REQUESTED, EventKind.SYSTEM_WIDE_DECLARED})


_set = object.__setattr__


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """``BaseModel.model_copy``: the same copy (``update``'s fields counted as set), a
        shallow one with ``update`` made without copy.copy's generic steps, which models
        without extra fields or private attributes do not need."""
        if deep or not update or self.__pydantic_extra__ or self.__pydantic_private__:
            return super().model_copy(update=update, deep=deep)
        cls = type(self)
        copied = cls.__new__(cls)
        _set(copied, "__dict__", {**self.__dict__, **update})
        _set(copied, "__pydantic_fields_set__", self.__pydantic_fields_set__ | update.keys())
        _set(copied, "__pydantic_extra__", None)
        _set(copied, "__pydantic_private__", None)
        return copied


class TicketEvent(_Frozen):
    """One helpdesk event, already parsed and validated by an inbound adapter."""

    source: str
    ticket_id: str
    kind: EventKind
    priority: Priority
    status: Status
    status_label: str
    domain: str = ""
    url: str = ""
    subject: str = ""
    occurred_at: datetime | None = None
    change: dict[str, Any] = Field(default_factory=dict)
    agent_assigned: bool | None = None
    # None: the webhook did not report tags (the ticket's known tags stay as they are).
    tags: tuple[str, ...] | None = None
    # A custom field declaring system-wide impact (None: not reported), and the affected
    # components it, or the admin call, names.
    system_wide: bool | None = None
    components: tuple[str, ...] = ()
    own_echo: bool = False


class Milestone(_Frozen):
    """One line of the ticket's recorded timeline (what the post-event write-up lists)."""

    at: datetime
    what: str


class StatusPageState(_Frozen):
    """The ticket's status-page incident as ticketbridge asked for it."""

    stage: str = "investigating"  # investigating | identified | monitoring | resolved
    components: tuple[str, ...] = ()
    updates: int = 0


class EffectBudget(_Frozen):
    """The ticket's counted effects in one clock hour (UTC), against ``limits`` in the policy:
    how many were made, and how many the ceiling held back."""

    hour: datetime
    made: int = 0
    held: int = 0


def _unset(value: object) -> bool:
    return value is None


class TicketState(_Frozen):
    """What ticketbridge holds about one ticket between events."""

    source: str
    ticket_id: str
    domain: str = ""
    url: str = ""
    subject: str = ""
    priority: Priority
    status: Status
    status_label: str
    opened_at: datetime
    last_event_at: datetime
    policy: str
    incident_open: bool = False
    page_generation: int = 0
    engaged_at: datetime | None = None
    engagement_breached: bool = False
    tier_one_done: bool = False
    cadence_base: datetime | None = None
    update_reminders: int = 0
    pending_since: datetime | None = None
    auto_close_requested: bool = False
    tier_two_engaged: bool = False
    history: tuple[Milestone, ...] = ()
    tags: tuple[str, ...] = ()
    followups: int = 0
    resolved_at: datetime | None = None
    write_up_due: datetime | None = None
    write_up_reminded: bool = False
    system_wide: bool = False
    status_page: StatusPageState | None = None
    # Left out of the stored JSON until the ticket has one: states stored before it existed
    # read back the same, and a ticket that never made a counted effect is stored as before.
    budget: EffectBudget | None = Field(default=None, exclude_if=_unset)

    @property
    def entity_id(self) -> str:
        """The VictorOps incident identity for this ticket, stable for its whole life."""
        domain = self.domain or "default"
        return f"{self.source}/{domain}/ticket/{self.ticket_id}"


class Effect(_Frozen):
    """Something to do in the outside world, keyed so that it happens once.

    ``key`` is ``target:source/ticket:kind:generation``; the outbox holds it UNIQUE.
    """

    target: str
    kind: str
    key: str
    payload: dict[str, Any]
    reason: str


class TimerKind(_StrEnum):
    TIER_ONE = "tier_one"
    ENGAGEMENT = "engagement"
    CUSTOMER_UPDATE = "customer_update"
    AUTO_CLOSE = "auto_close"
    WRITE_UP = "write_up"


class TimerChange(_Frozen):
    """Arm the ticket's timer of ``kind`` at ``due``, or cancel it when ``due`` is None."""

    kind: TimerKind
    due: datetime | None
    rule: str = ""


class Decision(_Frozen):
    """The outcome of one event or timer: the new state, what to do, and why."""

    state: TicketState
    effects: tuple[Effect, ...] = ()
    timers: tuple[TimerChange, ...] = ()
    notes: tuple[str, ...] = ()
    stale: bool = False
