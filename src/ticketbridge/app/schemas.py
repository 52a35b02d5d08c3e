"""Response bodies of the HTTP API (they make openapi.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


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


class EffectView(BaseModel):
    id: int
    key: str
    target: str
    kind: str
    status: Literal["pending", "sent", "retrying", "dead", "skipped"]
    attempts: int
    last_response_code: int | None
    last_error: str | None
    reason: str
    created_at: str
    updated_at: str
    next_attempt_at: str | None
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
