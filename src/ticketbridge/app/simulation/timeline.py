"""Ticket timelines for simulation: the YAML/JSON format, its validation, and the events it
becomes (docs/simulate.md describes the format)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator

from ticketbridge.app.policy_file import _line_of
from ticketbridge.rules import EventKind, Priority, Status, TicketEvent
from ticketbridge.rules.model import ADMIN_EVENTS

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
MAX_OFFSET = timedelta(days=365)
MAX_EVENTS = 1000
_OFFSET = re.compile(r"^\+?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_KEYED = re.compile(r"^((?:events\[\d+\]|[a-z_]+)(?:\.[a-z_]+)?): (.*)$", re.DOTALL)


def parse_offset(value: Any) -> timedelta:
    """``0``, ``20m``, ``2h``, ``1h30m``, ``3d`` (or whole seconds as a number) as a timedelta."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, int) and not isinstance(value, bool):
        delta = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _OFFSET.match(value.strip())) and any(match.groups()):
        delta = timedelta(
            seconds=sum(
                int(n or 0) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True)
            )
        )
    elif isinstance(value, str) and value.strip() in ("0", "+0"):
        delta = timedelta(0)
    else:
        raise ValueError(f"invalid offset {value!r}: write it like 0m, 20m, 2h, 1h30m or 3d")
    if delta < timedelta(0) or delta > MAX_OFFSET:
        raise ValueError(f"offset {value!r} must be between 0 and 365d")
    return delta


def format_offset(delta: timedelta) -> str:
    """An offset the way timelines write it: ``0m``, ``45s``, ``1h30m``, ``3d2h``."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0m"
    parts = []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


Offset = Annotated[
    timedelta,
    BeforeValidator(parse_offset),
    PlainSerializer(format_offset, return_type=str),
]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Text = Annotated[str, Field(min_length=1, max_length=500)]


class TimelineEvent(_Strict):
    """One delivery of a webhook (or admin call) at ``at`` after the ticket's start."""

    at: Offset
    event: Annotated[EventKind | None, BeforeValidator(_lower)] = None
    priority: Annotated[Priority | None, BeforeValidator(_lower)] = None
    status: Annotated[Status | None, BeforeValidator(_lower)] = None
    status_label: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    updated_at: Offset | None = None
    tags: Annotated[list[Text] | None, Field(max_length=100)] = None
    system_wide: bool | None = None
    components: Annotated[list[Text], Field(max_length=20)] = []
    assigned: bool | None = None
    title: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    body: Annotated[str | None, Field(min_length=1, max_length=20_000)] = None
    delivery_id: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    repeat: Annotated[int | None, Field(ge=1)] = None


class Timeline(_Strict):
    """A ticket's life as webhook deliveries at offsets from its start."""

    name: Annotated[str | None, Field(max_length=200)] = None
    description: Annotated[str | None, Field(max_length=2000)] = None
    source: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = "simulated"
    ticket_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "SIM-1"
    subject: Annotated[str, Field(max_length=500)] = "Simulated ticket"
    domain: Annotated[str, Field(max_length=100)] = ""
    url: Annotated[str, Field(max_length=2000)] = ""
    start: datetime = DEFAULT_START
    horizon: Offset | None = None
    events: Annotated[list[TimelineEvent], Field(min_length=1, max_length=MAX_EVENTS)]

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2026-01-05T09:00:00Z")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Timeline:
        previous = timedelta(0)
        for number, spec in enumerate(self.events, start=1):
            where = f"events[{number}]"
            if spec.at < previous:
                raise ValueError(f"{where}.at: events must be in order of `at` (after {previous})")
            previous = spec.at
            if spec.repeat is not None:
                extra = spec.model_fields_set - {"at", "repeat"}
                if extra:
                    raise ValueError(
                        f"{where}.repeat: a repeat is the same delivery again; "
                        f"it takes no {', '.join(sorted(extra))}"
                    )
                if spec.repeat >= number:
                    raise ValueError(
                        f"{where}.repeat: must name an earlier event (1 to {number - 1})"
                    )
                if self.events[spec.repeat - 1].repeat is not None:
                    raise ValueError(f"{where}.repeat: name the original event, not a repeat")
                continue
            if number == 1:
                if spec.priority is None:
                    raise ValueError(f"{where}.priority: the first event must give the priority")
                if spec.event in ADMIN_EVENTS:
                    raise ValueError(f"{where}.event: {spec.event} needs a ticket opened before it")
            if (spec.title or spec.body) and spec.event is not EventKind.FOLLOWUP_REQUESTED:
                raise ValueError(f"{where}.title: title and body are for followup_requested only")
            if spec.updated_at is not None and spec.updated_at > spec.at:
                raise ValueError(f"{where}.updated_at: cannot be after the delivery (`at`)")
        return self


@dataclass(frozen=True)
class Delivery:
    """One event as the simulation hands it to the service: when, what, and its dedup key."""

    number: int
    at: datetime
    offset: timedelta
    event: TicketEvent
    dedup_key: str
    repeat_of: int | None = None


def _kind(
    spec: TimelineEvent, carried: TicketEvent | None, priority: Priority, status: Status
) -> EventKind:
    if spec.event is not None:
        return spec.event
    if carried is None:
        return EventKind.CREATED
    if priority is not carried.priority:
        return EventKind.PRIORITY_CHANGED
    if status is not carried.status:
        return EventKind.STATUS_CHANGED
    return EventKind.UPDATED


def deliveries(timeline: Timeline) -> list[Delivery]:
    """The timeline's events as ``TicketEvent`` deliveries, in order.

    Fields an event leaves out carry over from the newest earlier event (by ``updated_at``),
    so a late redelivery does not change what the events after it carry.
    """
    made: list[Delivery] = []
    newest: tuple[timedelta, TicketEvent] | None = None
    for number, spec in enumerate(timeline.events, start=1):
        at = timeline.start + spec.at
        if spec.repeat is not None:
            original = made[spec.repeat - 1]
            made.append(
                Delivery(number, at, spec.at, original.event, original.dedup_key, spec.repeat)
            )
            continue
        carried = newest[1] if newest is not None else None
        priority = spec.priority or (carried.priority if carried else Priority.LOW)
        status = spec.status or (carried.status if carried else Status.OPEN)
        if spec.status_label is not None:
            label = spec.status_label
        elif carried is not None and status is carried.status:
            label = carried.status_label
        else:
            label = status.value.capitalize()
        kind = _kind(spec, carried, priority, status)
        change: dict[str, Any] = {"simulated": True}
        if spec.title:
            change["title"] = spec.title
        if spec.body:
            change["body"] = spec.body
        if kind is EventKind.SYSTEM_WIDE_DECLARED:
            change["components"] = list(spec.components)
        occurred = spec.updated_at if spec.updated_at is not None else spec.at
        event = TicketEvent(
            source=timeline.source,
            ticket_id=timeline.ticket_id,
            kind=kind,
            priority=priority,
            status=status,
            status_label=label,
            domain=timeline.domain,
            url=timeline.url,
            subject=timeline.subject,
            occurred_at=timeline.start + occurred,
            change=change,
            agent_assigned=spec.assigned,
            tags=tuple(spec.tags) if spec.tags is not None else None,
            system_wide=spec.system_wide,
            components=tuple(spec.components),
        )
        if spec.delivery_id is not None:
            key = f"sim:id:{spec.delivery_id}"
        else:
            # Like Freshdesk's: the same body delivered twice is the same delivery.
            canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True)
            key = "sim:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
        made.append(Delivery(number, at, spec.at, event, key))
        if kind not in ADMIN_EVENTS and (newest is None or occurred >= newest[0]):
            newest = (occurred, event)
    return made


class TimelineError(ValueError):
    """A timeline that cannot be simulated; ``problems`` lists ``(key, line, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}:{line}: {key}: {message}"
            if line is not None
            else f"{source}: {key}: {message}"
            for key, line, message in problems
        ]
        super().__init__("invalid timeline\n" + "\n".join(lines))


def _key_of(loc: tuple[int | str, ...]) -> str:
    """``events[N].field`` (N counted from 1, as ``repeat`` counts) for a pydantic location."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] == "events" and isinstance(part, int):
            parts[-1] = f"events[{part + 1}]"
        elif isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "(top)"


def _loc_of(key: str) -> tuple[int | str, ...]:
    """The YAML path of an ``events[N].field`` key (for its line)."""
    loc: list[int | str] = []
    for part in key.split("."):
        name, _, index = part.partition("[")
        loc.append(name)
        if index:
            loc.append(int(index.rstrip("]")) - (1 if name == "events" else 0))
    return tuple(loc)


def validate_timeline(
    data: Any, *, source: str = "<timeline>", node: yaml.Node | None = None
) -> Timeline:
    """Validate a parsed timeline; raise TimelineError naming each bad field (and its line)."""
    if not isinstance(data, dict):
        raise TimelineError(source, [("(top)", 1 if node else None, "a timeline is a mapping")])
    try:
        return Timeline.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        if any(len(e["loc"]) > 1 and e["loc"][0] == "events" for e in errors):
            # pydantic also counts the events that failed as missing: say it once
            errors = [e for e in errors if tuple(e["loc"]) != ("events",)]
        for err in errors:
            key = _key_of(tuple(err["loc"]))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            keyed = _KEYED.match(message)
            if keyed and key == "(top)":  # a cross-field check names its field in the message
                key, message = keyed.group(1), keyed.group(2)
            line = _line_of(node, _loc_of(key)) if node is not None and key != "(top)" else None
            problems.append((key, line, message))
        raise TimelineError(source, problems) from exc


def parse_timeline(text: str, *, source: str = "<timeline>") -> Timeline:
    """Validate timeline YAML ``text``; raise TimelineError naming each bad field and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise TimelineError(
            source, [("(syntax)", line, str(getattr(exc, "problem", exc)))]
        ) from exc
    return validate_timeline(data, source=source, node=node)
