"""Response bodies of the HTTP API (they make openapi.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class ErrorBody(BaseModel):
    error: str


class WebhookAccepted(BaseModel):
    outcome: Literal["accepted", "duplicate", "stale"]
    ticket_id: str
    effects: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


class TimelineEntry(BaseModel):
    at: str
    kind: str
    detail: dict[str, Any]


EffectState = Literal["pending", "sent", "retrying", "dead", "skipped"]


def iso(epoch: float) -> str:
    """An epoch time as the API shows it (ISO-8601, UTC)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class EffectSummary(BaseModel):
    id: int
    key: str
    target: str
    kind: str
    source: str
    ticket_id: str
    status: EffectState
    attempts: int
    last_response_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    next_attempt_at: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any], **extra: Any) -> Self:
        """From an outbox row (store column names, epoch times)."""
        open_ = row["status"] in ("pending", "retrying")
        return cls(
            id=row["id"],
            key=row["key"],
            target=row["target"],
            kind=row["kind"],
            source=row["source"],
            ticket_id=row["ticket_id"],
            status=row["status"],
            attempts=row["attempts"],
            last_response_code=row["last_code"],
            last_error=row["last_error"],
            created_at=iso(row["created_at"]),
            updated_at=iso(row["updated_at"]),
            next_attempt_at=iso(row["next_attempt_at"]) if open_ else None,
            **extra,
        )


class EffectView(EffectSummary):
    reason: str
    payload: dict[str, Any]
    result: dict[str, Any] | None


class TimerView(BaseModel):
    kind: str
    due_at: str
    status: Literal["pending", "fired", "cancelled"]
    rule: str
    fired_at: str | None
    late_seconds: float | None


class TicketView(BaseModel):
    source: str
    ticket_id: str
    state: dict[str, Any]
    timeline: list[TimelineEntry]
    effects: list[EffectView]
    timers: list[TimerView]


class FollowupRequest(BaseModel):
    """``POST /v1/tickets/{source}/{id}/followups``: both fields optional."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1, max_length=20_000)


class StatusPageRequest(BaseModel):
    """``POST /v1/tickets/{source}/{id}/status-page``: the affected components (names from
    TICKETBRIDGE_STATUSPAGE__COMPONENTS, or Statuspage component ids)."""

    model_config = ConfigDict(extra="forbid")

    components: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )


class AdminAccepted(BaseModel):
    outcome: Literal["accepted", "duplicate"]
    ticket_id: str
    effects: int
