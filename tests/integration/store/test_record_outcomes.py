"""``record_outcomes`` (what the dispatcher's group-commit job runs): each outcome is written
only under its fencing token, and says whether an open effect waits behind it."""

from __future__ import annotations

import dataclasses
from typing import Any

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.schema import PENDING, RETRYING, SENT
from ticketbridge.app.workers.delivery import record_outcomes


def _effect(key: str, ticket: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "target": "victorops",
        "kind": "page",
        "source": "freshdesk",
        "ticket_id": ticket,
        "payload": {"n": key, **extra},
        "reason": "test",
    }


def _outcome(status: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "now": 20.0, "attempts": 1, "code": 200, "error": None, **extra}


def test_outcomes_are_fenced_and_report_what_waits_behind(store: Store) -> None:
    with store.unit_of_work() as uow:
        # Ticket 1: a page leased to us and a RECOVERY queued behind it; ticket 2 and 3: one
        # page each, leased to us.
        first, behind = uow.enqueue(
            [_effect("t1-page", "1"), _effect("t1-recovery", "1")], at=10.0, lease=("me", 99)
        )
        (other,) = uow.enqueue([_effect("t2-page", "2")], at=10.0, lease=("me", 99))
        (third,) = uow.enqueue([_effect("t3-page", "3")], at=10.0, lease=("me", 99))
    assert (first.lease_token, behind.lease_token, other.lease_token) == (1, 0, 1)
    stale = dataclasses.replace(other, lease_token=7)  # another replica took it over since
    follow_up = _effect("t3-note", "3")
    with store.unit_of_work() as uow:
        results = record_outcomes(
            uow,
            [
                (first, _outcome(SENT)),
                (stale, _outcome(SENT)),
                (third, _outcome(RETRYING, next_attempt_at=30.0, follow_ups=[follow_up])),
            ],
        )
    # first: kept, and ticket 1's RECOVERY waits; stale: not written; third: kept and still
    # open itself (retrying), so its target has an open effect.
    assert results == [(True, True), (False, False), (True, True)]
    assert store.effect_status("t1-page") == SENT
    assert store.effect_status("t2-page") == PENDING  # the stale outcome changed nothing
    assert store.effect_status("t3-page") == RETRYING
    assert store.effect_status("t3-note") == PENDING  # follow-ups of a kept outcome


def test_no_outcomes_write_nothing(store: Store) -> None:
    with store.unit_of_work() as uow:
        assert record_outcomes(uow, []) == []
    assert store.count("outbox") == 0
