"""Zendesk trigger bodies onto the canonical ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ticketbridge.adapters.inbound import zendesk
from ticketbridge.adapters.inbound.errors import MissingField
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


def test_the_dedup_key_is_the_signed_time_and_body_and_the_body_hash_with_an_update_time() -> None:
    raw = json.dumps(
        {"ticket_id": "1", "ticket_priority": "High", "ticket_status": "Open"}
    ).encode()
    _, by_body = zendesk.parse_webhook(raw)
    _, signed = zendesk.parse_webhook(raw, "2026-11-26T12:00:00Z")
    _, later = zendesk.parse_webhook(raw, "2026-11-26T12:00:01Z")
    assert by_body == zendesk.parse_webhook(raw)[1]
    assert signed == zendesk.parse_webhook(raw, "2026-11-26T12:00:00Z")[1]
    assert signed.startswith("zendesk-signed:")
    assert len({by_body, signed, later}) == 3
    assert len(signed) <= 128
    # With the ticket's update time the body names the update: a retry signed anew folds.
    timed = json.dumps(
        {"ticket_id": "1", "ticket_priority": "High", "ticket_status": "Open",
         "ticket_updated_at": "2026-11-26T11:59:00Z"}
    ).encode()  # fmt: skip
    keys = {
        zendesk.parse_webhook(timed, ts)[1]
        for ts in ("2026-11-26T12:00:00Z", "2026-11-26T12:04:00Z")
    }
    assert len(keys) == 1


def test_the_signed_time_is_the_event_time_unless_the_body_has_the_update_time() -> None:
    body = {"ticket_id": "1", "ticket_priority": "High", "ticket_status": "Open"}
    event, _ = zendesk.parse_webhook(json.dumps(body).encode(), "2026-11-26T12:00:00Z")
    assert event.occurred_at == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    body["ticket_updated_at"] = "2026-11-26T11:59:00Z"
    event, _ = zendesk.parse_webhook(json.dumps(body).encode(), "2026-11-26T12:00:00Z")
    assert event.occurred_at == datetime(2026, 11, 26, 11, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "ticket_id", ["²", "①", "١٢٣", "\uff11\uff12\uff13", "1²", " ", "-1", "1.0"]
)
def test_a_ticket_id_of_anything_but_ascii_digits_is_refused_naming_the_field(
    ticket_id: str,
) -> None:
    raw = json.dumps({"ticket_id": ticket_id, "ticket_priority": "High", "ticket_status": "Open"})
    with pytest.raises(MissingField) as refused:
        zendesk.parse_webhook(raw.encode())
    assert refused.value.field == "zendesk_webhook.ticket_id"
    assert refused.value.status == 422
