"""What the store hands out and takes: rows, timers, announcements, JSON text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pydantic_core

CHANNEL = "ticketbridge"


@dataclass(frozen=True)
class Announcement:
    """What a NOTIFY on CHANNEL says: the earliest timer armed (epoch seconds) and how many
    effects wait for a claim; None for "not said" (look anyway)."""

    timer: float | None = None
    effects: int | None = None

    def encode(self) -> str:
        if self.timer is None and self.effects is None:
            return ""
        return json.dumps({"timer": self.timer, "effects": self.effects})

    @classmethod
    def decode(cls, payload: str) -> Announcement:
        """Never fails: a payload it cannot read says nothing (so it wakes everything)."""
        try:
            found = json.loads(payload) if payload else {}
            timer, effects = found.get("timer"), found.get("effects")
            return cls(
                float(timer) if isinstance(timer, int | float) else None,
                int(effects) if isinstance(effects, int) else None,
            )
        except (ValueError, AttributeError):
            return cls()


class DueTimer(NamedTuple):
    """A pending timer that is due (a tuple: a batch of them costs the collector nothing)."""

    id: int
    source: str
    ticket_id: str
    kind: str
    due_at: float


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    target: str
    kind: str
    source: str
    ticket_id: str
    payload: dict[str, Any]
    attempts: int
    lease_token: int
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class OutboxStats:
    """What ``/metrics`` shows of the outbox: open effects, the oldest one's creation time
    (None when there is none) and dead ones."""

    open: int
    oldest_open_created_at: float | None
    dead: int


class RawJSON(str):
    """JSON text already serialised (pydantic's ``model_dump_json``): a hot-path statement
    writes it to its JSON column as it is instead of encoding a dict again."""

    __slots__ = ()


def json_dumps(value: Any) -> str:
    """The JSON text the store writes for a JSON column's value (the engines'
    ``json_serializer``): compact UTF-8 by pydantic-core, about four times cheaper than
    ``json.dumps`` on an effect's payload. Like ``json.dumps`` it refuses an object of a type
    it does not know; unlike it, it writes a datetime as an ISO 8601 string."""
    return pydantic_core.to_json(value).decode()


def json_text(value: Any) -> str:
    """What a JSON column's bind processor would send: ``RawJSON`` as it is, else encoded."""
    return value if type(value) is RawJSON else json_dumps(value)


class TicketWrite(NamedTuple):
    """A ticket's new state for ``UnitOfWork.save_tickets`` (a dict, or its JSON text)."""

    source: str
    ticket_id: str
    state: dict[str, Any] | RawJSON


class TimerUpdate(NamedTuple):
    """A change to a ticket's timer of ``kind``: armed at ``due``, or cancelled (None)."""

    source: str
    ticket_id: str
    kind: str
    due: float | None
    rule: str


class TimelineEntry(NamedTuple):
    """A ticket's timeline entry (``detail`` a dict, or its JSON text)."""

    source: str
    ticket_id: str
    at: float
    kind: str
    detail: dict[str, Any] | RawJSON


class NewEffect(NamedTuple):
    """An effect to insert (the outbox row's columns), when, and whether leased at once."""

    row: Mapping[str, Any]
    at: float
    leased: bool


def first_ids(keys: Sequence[Any], returned: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """For each of ``keys`` in order, the id ``returned`` for it as ``(id, *key)`` rows, or
    None where none was returned (a conflict) or an earlier equal key took it."""
    ids = {tuple(row[1:]) if len(row) > 2 else row[1]: int(row[0]) for row in returned}
    return [ids.pop(key, None) for key in keys]
