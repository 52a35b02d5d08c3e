"""What a delivery is made of: the sender and guard a dispatcher calls, a guard's verdict,
what an attempt came to, and how outcomes and their follow-ups are recorded."""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Any, Protocol

from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import Sent
from ticketbridge.adapters.store.rows import OutboxRow
from ticketbridge.adapters.store.unit_of_work import UnitOfWork


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
# What a delivery attempt came to (``Dispatcher._attempt``); None: the lease was lost first.
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
