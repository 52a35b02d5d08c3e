"""Zendesk trigger bodies onto the canonical ticket."""

from __future__ import annotations

import json

import pytest

from ticketbridge.adapters.inbound import zendesk
from ticketbridge.rules.model import Priority, Status


@pytest.mark.parametrize(
    ("label", "priority"),
    [
        ("Low", Priority.LOW),
        ("Normal", Priority.MEDIUM),
        ("High", Priority.HIGH),
        ("urgent", Priority.URGENT),
        ("", Priority.MEDIUM),
        ("-", Priority.MEDIUM),
    ],
)
def test_priorities(label: str, priority: Priority) -> None:
    event, _ = zendesk.parse_webhook(
        json.dumps({"ticket_id": "1", "ticket_priority": label, "ticket_status": "Open"}).encode()
    )
    assert event.priority is priority


@pytest.mark.parametrize(
    ("label", "status"),
    [
        ("New", Status.OPEN),
        ("Open", Status.OPEN),
        ("Pending", Status.PENDING),
        ("Hold", Status.PENDING),
        ("Solved", Status.RESOLVED),
        ("Closed", Status.CLOSED),
        ("Waiting on vendor", Status.OPEN),
    ],
)
def test_statuses_keep_their_label(label: str, status: Status) -> None:
    event, _ = zendesk.parse_webhook(
        json.dumps({"ticket_id": "1", "ticket_priority": "High", "ticket_status": label}).encode()
    )
    assert (event.status, event.status_label) == (status, label)


def test_dedup_key_is_the_invocation_id_else_the_body_hash() -> None:
    raw = json.dumps(
        {"ticket_id": "1", "ticket_priority": "High", "ticket_status": "Open"}
    ).encode()
    _, by_body = zendesk.parse_webhook(raw)
    _, by_invocation = zendesk.parse_webhook(raw, "8350205582")
    assert by_body == zendesk.parse_webhook(raw)[1]
    assert by_invocation.startswith("zendesk-invocation:")
    assert by_invocation != by_body
    assert len(by_invocation) <= 128
