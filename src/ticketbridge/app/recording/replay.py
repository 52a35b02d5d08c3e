"""Replay: fixtures sent to a running service, spaced as recorded and freshly signed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ticketbridge.adapters.inbound.sources import SOURCES
from ticketbridge.app.recording.fixtures import (
    KEPT_HEADERS,
    Fixture,
    FixtureError,
    dumps_json,
)


@dataclass(frozen=True)
class ReplaySecrets:
    """The one secret replay authenticates or signs with, per source (never in a repr)."""

    freshdesk: str | None = field(default=None, repr=False)
    zendesk: str | None = field(default=None, repr=False)
    generic: str | None = field(default=None, repr=False)

    def of(self, source: str) -> str | None:
        value: str | None = getattr(self, source)
        return value


def gaps(
    offsets: Sequence[float], *, speed: float = 1.0, compress: bool = False, max_wait: float = 60
) -> list[float]:
    """Seconds to leave between the start of one request and the next, one per fixture
    (the first is 0): the recorded gap divided by ``speed``, at most ``max_wait``, none when
    ``compress``. Offsets out of order give no wait."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    result = [0.0] * len(offsets)
    if compress:
        return result
    for i in range(1, len(offsets)):
        gap = max(0.0, offsets[i] - offsets[i - 1]) / speed
        result[i] = min(gap, max(0.0, max_wait))
    return result


def shift_time_text(text: str, delta: timedelta) -> str:
    """``text`` (ISO-8601) moved by ``delta``, written in the same style (``Z`` or offset or no
    zone; fractions only if it had them); anything else unchanged."""
    stripped = text.strip()
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        return text
    moved = when + delta
    spec = "seconds" if moved.microsecond == 0 and "." not in stripped else "microseconds"
    rendered = moved.isoformat(timespec=spec)
    if stripped.endswith("Z") and rendered.endswith("+00:00"):
        rendered = rendered[: -len("+00:00")] + "Z"
    return rendered


def shift_event_time(source: str, body: Any, delta: timedelta) -> Any:
    """A copy of ``body`` with the event time the service reads (Freshdesk and Zendesk
    ``ticket_updated_at``, generic ``updated_at``) moved by ``delta``; nothing else changes."""
    wrapper, key = SOURCES[source].event_time
    if not isinstance(body, dict):
        return body
    if wrapper is not None and wrapper in body:  # as the parsers unwrap it
        inner = body[wrapper]
        return {**body, wrapper: _shift_key(inner, key, delta)}
    return _shift_key(body, key, delta)


def _shift_key(obj: Any, key: str, delta: timedelta) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
        return obj
    return {**obj, key: shift_time_text(obj[key], delta)}


def time_reference(fixtures: Sequence[Fixture]) -> datetime | None:
    """When the first fixture was recorded (from any fixture's ``recorded_at`` and the
    offsets), or None when no fixture says."""
    if not fixtures:
        return None
    for fixture in fixtures:
        if fixture.recorded_at is not None:
            return fixture.recorded_at - timedelta(
                seconds=fixture.offset_seconds - fixtures[0].offset_seconds
            )
    return None


def signed_request(
    fixture: Fixture, secrets: ReplaySecrets, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers to send: the fixture's kept headers plus fresh credentials.

    Raises ``FixtureError`` when the source's secret is missing or unusable.
    """
    body = dumps_json(fixture.body).encode("utf-8")
    headers = {k: v for k, v in fixture.headers.items() if k in KEPT_HEADERS}
    headers.setdefault("content-type", "application/json")
    secret = secrets.of(fixture.source)
    if not secret:
        raise FixtureError(f"{fixture.path.name}: no {fixture.source} secret to sign with")
    try:
        SOURCES[fixture.source].sign(body, headers, secret, now)
    except ValueError as exc:
        raise FixtureError(f"the {fixture.source} secret {exc}") from None
    return body, headers


@dataclass(frozen=True)
class Sent:
    fixture: Fixture
    status: int | None  # None: no answer (connection refused, timeout)
    outcome: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _outcome(response: httpx.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return response.reason_phrase or "-"
    if not isinstance(answer, dict):
        return "-"
    if "outcome" in answer:
        parts = [str(answer["outcome"])]
        if "ticket_id" in answer:
            parts.append(f"ticket={answer['ticket_id']}")
        if "effects" in answer:
            parts.append(f"effects={answer['effects']}")
        return " ".join(parts)
    if "error" in answer:
        return f"error: {str(answer['error'])[:200]}"
    return "-"


def replay(
    fixtures: Sequence[Fixture],
    *,
    client: httpx.Client,
    secrets: ReplaySecrets,
    waits: Sequence[float],
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    shift_times: bool = True,
    report: Callable[[Sent], None] = lambda sent: None,
) -> list[Sent]:
    """POST each fixture to ``client``'s ``/webhooks/<source>``, in order.

    ``waits[i]`` is the time between the start of request ``i-1`` and of request ``i``
    (``gaps``); the time a request took counts towards the next wait. Credentials are made
    when the request goes out, so a slow replay never sends a stale signature.

    With ``shift_times`` every body's event time moves by one amount, whole seconds: from
    when the first fixture was recorded to when it is sent (``time_reference``). The
    recording's timeline then starts now and keeps its spacing and order, and a redelivery
    stays byte-identical to its first delivery.
    """
    reference = time_reference(fixtures) if shift_times else None
    delta: timedelta | None = None
    results: list[Sent] = []
    previous: float | None = None
    for fixture, wait in zip(fixtures, waits, strict=True):
        if previous is not None:
            remaining = wait - (monotonic() - previous)
            if remaining > 0:
                sleep(remaining)
        previous = monotonic()
        sending_at = now()
        if reference is not None and delta is None:
            delta = timedelta(seconds=round((sending_at - reference).total_seconds()))
        if delta is not None:
            fixture = replace(fixture, body=shift_event_time(fixture.source, fixture.body, delta))
        body, headers = signed_request(fixture, secrets, sending_at)
        try:
            response = client.post(f"/webhooks/{fixture.source}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            sent = Sent(fixture, None, f"no answer: {type(exc).__name__}")
        else:
            sent = Sent(fixture, response.status_code, _outcome(response))
        results.append(sent)
        report(sent)
    return results
