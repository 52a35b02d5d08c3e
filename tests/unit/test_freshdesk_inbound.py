"""Freshdesk inbound parsing: triggered_event mini-syntax, labels, wrapper, dedup key."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.adapters.inbound.errors import InboundError, MalformedPayload, MissingField
from ticketbridge.adapters.inbound.freshdesk import (
    TriggeredEventError,
    parse_triggered_event,
    parse_webhook,
)
from ticketbridge.rules import EventKind, Priority, Status

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "freshdesk"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("{ticket_action:created}", {"ticket_action": "created"}),
        ("{status:{from:4,to:6}}", {"status": {"from": "4", "to": "6"}}),
        ("{priority:{from:1,to:4}}", {"priority": {"from": "1", "to": "4"}}),
        ("{note_type:private}", {"note_type": "private"}),
        ("{ status : { from : 2 , to : 3 } }", {"status": {"from": "2", "to": "3"}}),
        ("{}", {}),
    ],
)
def test_triggered_event_forms(text: str, parsed: dict[str, object]) -> None:
    assert parse_triggered_event(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "{", "}", "{a}", "{a:b", "{a:b}}", "x{a:b}", "{:b}", "{a:}", "{a:{b:c}", "[a:b]"]
)
def test_malformed_triggered_events_raise_their_own_error(text: str) -> None:
    with pytest.raises(TriggeredEventError):
        parse_triggered_event(text)


@given(st.text(max_size=200))
def test_the_triggered_event_parser_raises_only_its_own_error(text: str) -> None:
    try:
        result = parse_triggered_event(text)
    except TriggeredEventError:
        return
    assert isinstance(result, dict)


@given(st.text(alphabet="{}:, abc019", max_size=60))
def test_the_parser_on_near_miss_syntax(text: str) -> None:
    with contextlib.suppress(TriggeredEventError):
        parse_triggered_event(text)


@given(st.binary(max_size=300))
def test_the_webhook_parser_raises_only_inbound_errors(raw: bytes) -> None:
    with contextlib.suppress(InboundError):
        parse_webhook(raw)


@pytest.mark.parametrize(
    ("sample", "kind", "priority", "status", "label"),
    [
        ("ticket_created.json", EventKind.CREATED, Priority.URGENT, Status.OPEN, "Open"),
        (
            "status_changed.json",
            EventKind.STATUS_CHANGED,
            Priority.LOW,
            Status.OPEN,
            "Waiting on Customer",
        ),
        ("priority_changed.json", EventKind.PRIORITY_CHANGED, Priority.URGENT, Status.OPEN, "Open"),
        ("note_added.json", EventKind.NOTE_ADDED, Priority.HIGH, Status.PENDING, "Pending"),
        ("resolved.json", EventKind.STATUS_CHANGED, Priority.HIGH, Status.RESOLVED, "Resolved"),
    ],
)
def test_recorded_payloads_parse(
    sample: str, kind: EventKind, priority: Priority, status: Status, label: str
) -> None:
    event, key = parse_webhook((SAMPLES / sample).read_bytes())
    assert (event.kind, event.priority, event.status, event.status_label) == (
        kind,
        priority,
        status,
        label,
    )
    assert event.source == "freshdesk"
    assert event.ticket_id.isdigit()
    assert len(key) == 64


def test_the_sample_from_the_design_parses_with_its_custom_status() -> None:
    event, _ = parse_webhook((SAMPLES / "status_changed.json").read_bytes())
    assert event.ticket_id == "11"
    assert event.domain == "test1234zzz"
    assert event.change == {"status": {"from": "4", "to": "6"}}


@pytest.mark.parametrize(
    ("label", "priority"),
    [
        ("Urgent", Priority.URGENT),
        ("high", Priority.HIGH),
        ("MEDIUM", Priority.MEDIUM),
        ("Low", Priority.LOW),
        ("4", Priority.URGENT),
        ("1", Priority.LOW),
    ],
)
def test_priority_labels_and_codes(label: str, priority: Priority) -> None:
    body = {
        "freshdesk_webhook": {"ticket_id": "5", "ticket_priority": label, "ticket_status": "Open"}
    }
    assert parse_webhook(json.dumps(body).encode())[0].priority is priority


@pytest.mark.parametrize(
    ("label", "status", "kept"),
    [
        ("Open", Status.OPEN, "Open"),
        ("Pending", Status.PENDING, "Pending"),
        ("Resolved", Status.RESOLVED, "Resolved"),
        ("Closed", Status.CLOSED, "Closed"),
        ("5", Status.CLOSED, "Closed"),
        ("Waiting on Third Party", Status.OPEN, "Waiting on Third Party"),
        ("7", Status.OPEN, "7"),
    ],
)
def test_status_labels_custom_ones_kept(label: str, status: Status, kept: str) -> None:
    body = {
        "freshdesk_webhook": {"ticket_id": "5", "ticket_priority": "Low", "ticket_status": label}
    }
    event = parse_webhook(json.dumps(body).encode())[0]
    assert (event.status, event.status_label) == (status, kept)


def test_the_bare_object_without_the_wrapper_is_accepted() -> None:
    body = {"ticket_id": "5", "ticket_priority": "High", "ticket_status": "Open"}
    assert parse_webhook(json.dumps(body).encode())[0].priority is Priority.HIGH


def test_the_dedup_key_ignores_formatting_but_not_content() -> None:
    a = b'{"freshdesk_webhook": {"ticket_id": "5", "ticket_priority": "High", "ticket_status":"O"}}'
    b = b'{"freshdesk_webhook":{"ticket_status":"O","ticket_priority":"High","ticket_id":"5"}}'
    c = b'{"freshdesk_webhook": {"ticket_id": "5", "ticket_priority": "Low", "ticket_status": "O"}}'
    assert parse_webhook(a)[1] == parse_webhook(b)[1] != parse_webhook(c)[1]


def test_integers_are_accepted_where_freshdesk_sends_strings() -> None:
    body = {"freshdesk_webhook": {"ticket_id": 5, "ticket_priority": 4, "ticket_status": 2}}
    event = parse_webhook(json.dumps(body).encode())[0]
    assert (event.ticket_id, event.priority, event.status) == ("5", Priority.URGENT, Status.OPEN)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{", MalformedPayload),
        (b'{"x": Infinity}', MalformedPayload),
        (b"[]", MissingField),
        (
            b'{"freshdesk_webhook": {"ticket_id": true, "ticket_priority": "Low", '
            b'"ticket_status": "Open"}}',
            MissingField,
        ),
    ],
)
def test_errors_are_typed(raw: bytes, error: type[InboundError]) -> None:
    with pytest.raises(error):
        parse_webhook(raw)


def _fd(**fields: object) -> bytes:
    inner = {
        "ticket_id": "11",
        "ticket_status": "Open",
        "ticket_priority": "Urgent",
        "triggered_event": "{ticket_action:created}",
        **fields,
    }
    return json.dumps({"freshdesk_webhook": inner}).encode()


def test_tags_absent_means_not_reported_and_present_is_a_clean_list() -> None:
    event, _ = parse_webhook(_fd())
    assert event.tags is None  # the rules keep the ticket's known tags
    event, _ = parse_webhook(_fd(ticket_tags=" system-wide, component:api ,,system-wide"))
    assert event.tags == ("system-wide", "component:api")
    event, _ = parse_webhook(_fd(ticket_tags=""))
    assert event.tags == ()  # reported, and none: every tag was removed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("Yes", True), ("1", True), ("false", False), ("", False), ("no", False)],
)
def test_system_wide_custom_field(value: str, expected: bool) -> None:
    event, _ = parse_webhook(_fd(ticket_system_wide=value, ticket_components="api, checkout"))
    assert event.system_wide is expected
    assert event.components == ("api", "checkout")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"ticket_system_wide": "maybe"}, "ticket_system_wide"),
        ({"ticket_tags": ",".join(f"t{i}" for i in range(101))}, "ticket_tags"),
        ({"ticket_components": "x" * 101}, "ticket_components"),
    ],
)
def test_bad_custom_fields_are_422_naming_the_field(fields: dict[str, str], named: str) -> None:
    with pytest.raises(MissingField, match=named) as info:
        parse_webhook(_fd(**fields))
    assert info.value.status == 422
