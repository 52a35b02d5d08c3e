"""The support procedure as data: priorities, calendars, windows (docs/policy.md)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import AfterValidator, BeforeValidator

from ticketbridge.rules.durations import format_duration, parse_duration
from ticketbridge.rules.model import Priority


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("a duration must be a string such as 30m, 2h or 90s")


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


ALL_DAYS = tuple(Weekday)


class CalendarSpec(_Strict):
    """A business-hours calendar: time zone, open weekdays, daily hours, holidays."""

    timezone: str = "UTC"
    days: tuple[Weekday, ...] = ALL_DAYS
    hours: str | None = None
    holidays: tuple[date, ...] = ()
    holiday_country: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not value:
            raise ValueError("a calendar needs at least one open day")
        return value

    @field_validator("hours")
    @classmethod
    def _hours_range(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            start, end = (part.strip() for part in value.split("-"))
            sh, sm = (int(x) for x in start.split(":"))
            eh, em = (int(x) for x in end.split(":"))
        except ValueError as exc:
            raise ValueError(f"hours must look like 09:00-17:00, got {value!r}") from exc
        if not (0 <= sh < 24 and 0 <= sm < 60 and 0 <= eh <= 24 and 0 <= em < 60):
            raise ValueError(f"hours out of range in {value!r}")
        if (eh, em) <= (sh, sm) or (eh == 24 and em != 0):
            raise ValueError(f"hours must end after they start, got {value!r}")
        return value


class Engagement(_Strict):
    within: Duration
    calendar: str | None = None


class TierOne(_Strict):
    within: Duration
    then: Literal["bridge", "reassign"]


class Cadence(_Strict):
    every: Duration


PRIORITY_PLACEHOLDER = "{priority}"


def _labels(value: tuple[str, ...]) -> tuple[str, ...]:
    for label in value:
        rest = label.replace(PRIORITY_PLACEHOLDER, "")
        if not label.strip() or "{" in rest or "}" in rest or len(label) > 50:
            raise ValueError(
                f"label {label!r}: 1 to 50 characters, and {PRIORITY_PLACEHOLDER} is the only "
                "placeholder"
            )
    return value


Labels = Annotated[tuple[str, ...], AfterValidator(_labels)]


class WriteUp(_Strict):
    """A post-event write-up is due ``within`` of resolution (a GitHub issue, opened at once)."""

    within: Duration
    labels: Labels = ("post-event", "priority:{priority}")


class FollowUps(_Strict):
    """Follow-up GitHub issues (a ticket tag or the admin API)."""

    labels: Labels = ("follow-up",)


Impact = Literal["none", "minor", "major", "critical"]
ComponentStatus = Literal[
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"
]


class StatusPagePolicy(_Strict):
    """How a system-wide ticket shows on the status page."""

    name: str = Field(default="Service disruption", min_length=1, max_length=200)
    impact: dict[Priority, Impact] = {
        Priority.URGENT: "critical",
        Priority.HIGH: "major",
        Priority.MEDIUM: "minor",
        Priority.LOW: "minor",
    }
    component_status: dict[Priority, ComponentStatus] = {
        Priority.URGENT: "major_outage",
        Priority.HIGH: "partial_outage",
        Priority.MEDIUM: "degraded_performance",
        Priority.LOW: "degraded_performance",
    }
    # Components affected when neither the ticket nor the admin call names any.
    components: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _every_priority(self) -> StatusPagePolicy:
        for name in ("impact", "component_status"):
            missing = [p.value for p in Priority if p not in getattr(self, name)]
            if missing:
                raise ValueError(f"status_page.{name}: missing {', '.join(missing)}")
        return self


class PriorityRules(_Strict):
    page: bool
    engagement: Engagement
    tier_one: TierOne
    customer_updates: Cadence | None = None
    write_up: WriteUp | None = None


class Pending(_Strict):
    auto_close_after: Duration


class Escalation(_Strict):
    reassign_group: str = Field(min_length=1)


class Tags(_Strict):
    system_wide: str = "system-wide"
    followup: str = "github-followup"


class Limits(_Strict):
    """Ceilings that turn a runaway into one recorded breach instead of a storm."""

    # Counted effects (notes, VictorOps INFOs, follow-up issues, status-page updates) made for
    # one ticket in one clock hour (UTC); pages, recoveries and one-off actions are exempt.
    effects_per_ticket_per_hour: Annotated[StrictInt, Field(ge=1, le=100_000)] = 60


DEFAULT_LIMITS = Limits()
MAX_VERSION_LENGTH = 40


class Policy(_Strict):
    """A validated policy file; ``fingerprint`` identifies it for per-ticket pinning."""

    version: int | str
    calendars: dict[str, CalendarSpec]
    priorities: dict[Priority, PriorityRules]
    pending: Pending
    escalation: Escalation
    tags: Tags = Tags()
    followups: FollowUps = FollowUps()
    status_page: StatusPagePolicy = StatusPagePolicy()
    limits: Limits = DEFAULT_LIMITS
    # What counts as initial engagement: the first public agent reply, an agent assignment.
    engagement_by: tuple[Literal["public_reply", "assignment"], ...] = (
        "public_reply",
        "assignment",
    )

    @field_validator("version")
    @classmethod
    def _short_version(cls, value: int | str) -> int | str:
        # ``version@hash`` names the policy in the store, in a column of 64 characters.
        if not 1 <= len(str(value)) <= MAX_VERSION_LENGTH:
            raise ValueError(f"must be 1 to {MAX_VERSION_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        missing = [p.value for p in Priority if p not in self.priorities]
        if missing:
            raise ValueError(f"priorities: missing {', '.join(missing)}")
        for prio, rules in self.priorities.items():
            # The procedure's invariant: Medium and Low never reach VictorOps.
            if rules.page and prio not in (Priority.URGENT, Priority.HIGH):
                raise ValueError(f"priorities.{prio.value}.page: only urgent and high may page")
            if rules.tier_one.then == "bridge" and prio not in (Priority.URGENT, Priority.HIGH):
                raise ValueError(
                    f"priorities.{prio.value}.tier_one.then: bridge is for urgent and high only"
                )
            cal = rules.engagement.calendar
            if cal is not None and cal not in self.calendars:
                raise ValueError(
                    f"priorities.{prio.value}.engagement.calendar: unknown calendar {cal!r}"
                )
        return self

    def for_priority(self, priority: Priority) -> PriorityRules:
        """The rules that govern tickets at ``priority``."""
        return self.priorities[priority]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (with ``update``), its fingerprint worked out afresh."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("fingerprint", None)
        return copied

    @functools.cached_property
    def fingerprint(self) -> str:
        """``<version>@<hash>``: changes whenever any value of the policy changes (worked out
        once per instance; ``model_copy`` works it out afresh)."""
        document = self.model_dump(mode="json")
        if self.limits == DEFAULT_LIMITS:
            # A policy that leaves the limits alone keeps the fingerprint it had before they
            # existed: its tickets stay pinned to the same version across the upgrade.
            del document["limits"]
        canonical = json.dumps(document, sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return f"{self.version}@{digest}"
