"""One delivery of a leased effect: the guard's check, the vendor call under the lease, and
the outcome recorded (sent, retrying, skipped or dead) with the effect's follow-ups.

An effect is sent only while its task holds its lease with room for the whole call and its
record (renewed, fenced, just before the call), and the call is cut at a deadline shorter
than that room: two tasks never send one effect unless a process stalls. Retries back off
with jitter (tenacity) and never come before the vendor's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any, Protocol

import structlog
import tenacity

from ticketbridge.adapters.outbound.errors import AdapterError, unexpected_error
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.errors import StoreUnavailable
from ticketbridge.adapters.store.rows import OutboxRow
from ticketbridge.adapters.store.schema import (
    DEAD,
    NOT_CONFIGURED,
    PENDING,
    RETRYING,
    SENT,
    SKIPPED,
)
from ticketbridge.adapters.store.unit_of_work import UnitOfWork
from ticketbridge.app.clock import Clock
from ticketbridge.app.settings import DispatchSettings
from ticketbridge.app.workers.group_commit import GroupCommit

log = structlog.get_logger("ticketbridge.dispatcher")

FINAL = frozenset({SENT, SKIPPED, DEAD})
# An effect that ``uses`` another's result (a reminder on the write-up issue, an update of the
# status-page incident) waits this long between looks while that one is still open.
USES_WAIT = 2.0
# Of a lease, the share one vendor call may use at most (``deadline_seconds`` caps it lower),
# and the share kept beyond the call's deadline for recording its outcome.
CALL_SHARE = 0.7
RECORD_SHARE = 0.2


class Sender(Protocol):
    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Deliver one effect; return what was sent or raise AdapterError."""
        ...


class Guard(Protocol):
    async def check(self, row: OutboxRow) -> Verdict:
        """Whether the effect may go out now, must wait, or no longer applies."""
        ...


@dataclass(frozen=True)
class Verdict:
    """``go``; ``wait`` (retry in ``seconds`` without counting an attempt); or ``skip``."""

    action: str = "go"
    reason: str = ""
    seconds: float = 0.0


GO = Verdict()
# What a delivery attempt came to (``Courier._attempt``); None: the lease was lost first.
Attempt = Sent | Verdict | AdapterError | None


def follow_ups(row: OutboxRow, info: dict[str, Any]) -> list[dict[str, Any]]:
    """Effects to enqueue once ``row`` succeeded, ``$details`` filled from its result."""
    details = (
        ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info.items() if v) or "see VictorOps"
    )
    rows = []
    for effect in row.payload.get("then", []):
        payload = {
            k: Template(v).safe_substitute(details=details) if isinstance(v, str) else v
            for k, v in effect["payload"].items()
        }
        rows.append(
            {
                "key": effect["key"],
                "target": effect["target"],
                "kind": effect["kind"],
                "source": row.source,
                "ticket_id": row.ticket_id,
                "payload": payload,
                "reason": effect["reason"],
            }
        )
    return rows


def record_outcomes(
    uow: UnitOfWork, items: list[tuple[OutboxRow, dict[str, Any]]]
) -> list[tuple[bool, bool]]:
    """For each ``(row, outcome)``: ``finish_effect``, then (if the lease held) whether an open
    effect of the same ticket and target is waiting: ``(kept, waiting)``. Set-wise: one
    statement for the outcomes, one for what is still open."""
    kept = uow.finish_effects(
        [(row, outcome, outcome.get("follow_ups", ())) for row, outcome in items]
    )
    still_open = uow.open_targets(
        [(row.source, row.ticket_id) for (row, _), ok in zip(items, kept, strict=True) if ok]
    )
    return [
        (ok, ok and (row.source, row.ticket_id, row.target) in still_open)
        for (row, _), ok in zip(items, kept, strict=True)
    ]


def row_status(row: OutboxRow) -> str:
    return RETRYING if row.attempts else PENDING


class Courier:
    """Delivers effects leased to ``owner`` (a dispatcher) and records each outcome."""

    def __init__(
        self,
        *,
        owner: str,
        store: Store,
        senders: Mapping[str, Sender],
        clock: Clock,
        settings: DispatchSettings,
        run_db: Callable[..., Awaitable[Any]],
        guard: Guard | None = None,
        writer: GroupCommit | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
        on_breach: Callable[[str, str], None] | None = None,
    ) -> None:
        self._owner = owner
        self._on_breach = on_breach  # (commitment kind, priority) found missed at delivery
        self._guard = guard
        self._on_outcome = on_outcome  # (target, sent|retrying|dead|skipped), once recorded
        self._writer = writer
        self._store = store
        self._senders = senders
        self._clock = clock
        self._settings = settings
        self._run_db = run_db
        self._per_target: dict[str, asyncio.Semaphore] = {}
        self._wait = tenacity.wait_exponential_jitter(
            initial=settings.backoff_initial,
            max=settings.backoff_max,
            jitter=settings.backoff_initial,
        )
        self._deadline = min(settings.deadline_seconds, CALL_SHARE * settings.lease_seconds)
        # A lease with less than this left is renewed before the call (``_keep_lease``).
        self._margin = self._deadline + RECORD_SHARE * settings.lease_seconds

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based), with jitter."""
        state = tenacity.RetryCallState(
            retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={}
        )
        state.attempt_number = attempt
        return float(self._wait(state))

    async def deliver(self, row: OutboxRow) -> bool:
        """Deliver one effect and record the outcome; True when the claim loop should look
        again at once (see ``Dispatcher._done``): always, unless the effect ended sent,
        skipped for want of a target, or dead, and ``_finish`` found nothing new to claim. The
        target's slot is held until the outcome is recorded, so at most
        ``concurrency_per_target`` effects per target are ever between their call and its
        record (what a crash can repeat)."""
        sender = self._senders.get(row.target)
        attempt = row.attempts + 1
        if sender is None:
            again = await self._finish(row, SKIPPED, row.attempts, None, NOT_CONFIGURED)
            log.info("outbox.skipped", effect=row.key, target=row.target)
            return again
        semaphore = self._per_target.setdefault(
            row.target, asyncio.Semaphore(self._settings.concurrency_per_target)
        )
        async with semaphore:
            outcome = await self._attempt(row, sender)
            if outcome is None:
                return True  # another task holds the effect now
            if isinstance(outcome, Verdict):
                # (A re-read may have reconciled the ticket: new effects to claim.)
                await self._hold(row, outcome)
                return True
            if isinstance(outcome, AdapterError):
                await self._failed(row, attempt, outcome)
                return True
            return await self._sent(row, attempt, outcome)

    async def _attempt(self, row: OutboxRow, sender: Sender) -> Attempt:
        """Check the effect, then call the vendor under the lease: what came of it, every
        failure classified as an AdapterError; None when the lease was lost before the call.
        Only the store's own unavailability propagates (nothing could be recorded)."""
        try:
            verdict = await self._guard.check(row) if self._guard is not None else GO
            if verdict.action != "go":
                return verdict
            payload = {k: v for k, v in row.payload.items() if k not in ("then", "uses")}
            if "uses" in row.payload:
                refs, not_yet = await self._refs(row.payload["uses"])
                if not_yet is not None:
                    return not_yet
                payload["refs"] = refs
            if not await self._keep_lease(row):
                return None
            async with asyncio.timeout(self._deadline):
                return await sender.send(payload, effect_key=row.key)
        except AdapterError as exc:
            return exc
        except StoreUnavailable:
            raise
        except TimeoutError:
            return AdapterError(
                f"{row.target} timed out after {self._deadline:g} s (the delivery deadline)",
                retryable=True,
            )
        except Exception as exc:
            return unexpected_error(row.target, exc)

    async def _keep_lease(self, row: OutboxRow) -> bool:
        """Whether this task still holds ``row``'s lease with room for the whole call and its
        record. Only a short lease costs a round trip: one UPDATE renewing it on the fencing
        token, which fails if a claim has taken the effect meanwhile."""
        now = self._clock.now().timestamp()
        if row.lease_expires_at is not None and row.lease_expires_at - now >= self._margin:
            return True
        expires_at = now + self._settings.lease_seconds
        renewed: bool = await self._run_db(
            lambda: self._store.renew_lease(row, owner=self._owner, expires_at=expires_at)
        )
        if not renewed:
            log.warning("outbox.lease_lost_before_send", effect=row.key, target=row.target)
        return renewed

    async def _sent(self, row: OutboxRow, attempt: int, sent: Sent) -> bool:
        acted = not sent.info.get("skipped")  # e.g. no reminder on a closed issue
        again = await self._finish(
            row,
            SENT,
            attempt,
            sent.code,
            None,
            result=sent.info or None,
            then=follow_ups(row, sent.info) if acted else None,
        )
        if acted and row.kind == "write_up_reminder" and self._on_breach is not None:
            self._on_breach("write_up", str(row.payload.get("priority", "")))
        log.info("outbox.sent", effect=row.key, target=row.target, attempt=attempt, code=sent.code)
        return again

    async def _hold(self, row: OutboxRow, verdict: Verdict) -> None:
        """Skip the effect, or put it back for ``verdict.seconds`` without counting an attempt."""
        if verdict.action == "skip":
            await self._finish(row, SKIPPED, row.attempts, None, verdict.reason)
            log.info("outbox.skipped", effect=row.key, reason=verdict.reason)
            return
        next_at = self._clock.now().timestamp() + verdict.seconds
        await self._finish(
            row, row_status(row), row.attempts, None, verdict.reason, next_at, counted=False
        )

    async def _refs(self, uses: Any) -> tuple[dict[str, Any], Verdict | None]:
        """The results of the effects ``uses`` names (``{name: key}``), or why not yet."""
        if not isinstance(uses, dict) or not all(isinstance(k, str) for k in uses.values()):
            return {}, Verdict("skip", "malformed 'uses' in the effect")
        keys = list(uses.values())
        found = await self._run_db(lambda: self._store.effect_results(keys))
        refs: dict[str, Any] = {}
        for name, key in uses.items():
            status, result = found.get(key, (None, None))
            if status == SENT:
                refs[name] = result or {}
            elif status in (PENDING, RETRYING):
                return {}, Verdict("wait", f"waiting for {key} to go out", USES_WAIT)
            else:
                return {}, Verdict("skip", f"{key} was {status or 'never made'}: nothing to act on")
        return refs, None

    async def _failed(self, row: OutboxRow, attempt: int, exc: AdapterError) -> None:
        if not exc.retryable or attempt >= self._settings.max_attempts:
            await self._finish(row, DEAD, attempt, exc.status_code, str(exc))
            log.warning(
                "outbox.dead",
                effect=row.key,
                target=row.target,
                attempt=attempt,
                code=exc.status_code,
                error=str(exc),
            )
            return
        delay = max(self.backoff(attempt), exc.retry_after or 0.0)
        next_at = self._clock.now().timestamp() + delay
        await self._finish(row, RETRYING, attempt, exc.status_code, str(exc), next_at)
        log.info(
            "outbox.retrying",
            effect=row.key,
            target=row.target,
            attempt=attempt,
            code=exc.status_code,
            error=str(exc),
            retry_in=round(delay, 3),
        )

    async def _finish(
        self,
        row: OutboxRow,
        status: str,
        attempts: int,
        code: int | None,
        error: str | None,
        next_at: float | None = None,
        *,
        result: dict[str, Any] | None = None,
        then: list[dict[str, Any]] | None = None,
        counted: bool = True,
    ) -> bool:
        """Record an attempt's outcome; True when the claim loop should look again: the
        effect is not final, has follow-ups, lost its lease, or another open effect of its
        ticket waits behind it on the same target (ordered delivery held it back)."""
        now = self._clock.now().timestamp()
        outcome: dict[str, Any] = {
            "status": status,
            "now": now,
            "attempts": attempts,
            "code": code,
            "error": error,
            "next_attempt_at": next_at,
            "result": result,
            "follow_ups": then or (),
        }
        kept: bool
        waiting: bool
        if self._writer is not None:  # shares a transaction with webhooks being committed
            kept, waiting = await self._writer.submit_many(record_outcomes, (row, outcome))
        else:
            kept, waiting = await self._run_db(lambda: self._record_alone(row, outcome))
        if not kept:
            log.warning("outbox.lease_lost", effect=row.key, status=status)
        elif counted and self._on_outcome is not None:
            self._on_outcome(row.target, status)
        return not kept or waiting or bool(then) or status not in FINAL

    def _record_alone(self, row: OutboxRow, outcome: dict[str, Any]) -> tuple[bool, bool]:
        with self._store.unit_of_work() as uow:
            return record_outcomes(uow, [(row, outcome)])[0]
