"""The timeline format: offsets, carry-over, repeats, late events, and errors that name lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ticketbridge.app.simulation.simulate import simulate, summarise
from ticketbridge.app.simulation.timeline import (
    DEFAULT_START,
    TimelineError,
    deliveries,
    format_offset,
    parse_offset,
    parse_timeline,
    validate_timeline,
)
from ticketbridge.rules import EventKind, Policy, Priority, Status

M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("0", 0),
        ("0m", 0),
        (0, 0),
        ("+20m", 20),
        ("2h", 120),
        ("1h30m", 90),
        ("3d", 3 * 24 * 60),
        ("1d2h3m", 24 * 60 + 123),
        (90, 1.5),
        ("90s", 1.5),
    ],
)
def test_offsets_are_read_like_policy_durations_and_combine(text: Any, minutes: float) -> None:
    assert parse_offset(text) == minutes * M


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5 minutes", "1.5h", "m", True, 400 * 86400])
def test_a_bad_offset_is_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_offset(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [(0 * M, "0m"), (20 * M, "20m"), (90 * M, "1h30m"), (M * 60 * 50, "2d2h"), (M / 4, "15s")],
)
def test_offsets_are_written_compactly(delta: timedelta, text: str) -> None:
    assert format_offset(delta) == text
    assert parse_offset(text) == delta


def test_fields_left_out_carry_over_and_the_event_kind_is_inferred() -> None:
    timeline = validate_timeline(
        {
            "events": [
                {"at": 0, "priority": "Urgent", "status_label": "Waiting on vendor"},
                {"at": "10m", "event": "agent_reply"},
                {"at": "20m", "priority": "medium"},
                {"at": "30m", "status": "pending"},
                {"at": "40m", "tags": ["vip"]},
                {"at": "50m", "event": "followup_requested", "title": "Fix it"},
            ]
        }
    )
    made = deliveries(timeline)
    assert [d.event.kind for d in made] == [
        EventKind.CREATED,
        EventKind.AGENT_REPLY,
        EventKind.PRIORITY_CHANGED,
        EventKind.STATUS_CHANGED,
        EventKind.UPDATED,
        EventKind.FOLLOWUP_REQUESTED,
    ]
    assert [(d.event.priority, d.event.status, d.event.status_label) for d in made] == [
        (Priority.URGENT, Status.OPEN, "Waiting on vendor"),
        (Priority.URGENT, Status.OPEN, "Waiting on vendor"),
        (Priority.MEDIUM, Status.OPEN, "Waiting on vendor"),
        (Priority.MEDIUM, Status.PENDING, "Pending"),
        (Priority.MEDIUM, Status.PENDING, "Pending"),
        (Priority.MEDIUM, Status.PENDING, "Pending"),
    ]
    assert [d.event.tags for d in made] == [None, None, None, None, ("vip",), None]
    assert made[5].event.change == {"simulated": True, "title": "Fix it"}
    assert {(d.event.source, d.event.ticket_id) for d in made} == {("simulated", "SIM-1")}
    assert made[2].at == DEFAULT_START + 20 * M
    assert made[2].event.occurred_at == DEFAULT_START + 20 * M
    assert len({d.dedup_key for d in made}) == 6


def test_a_repeat_is_the_same_delivery_and_a_late_event_does_not_carry_over() -> None:
    timeline = validate_timeline(
        {
            "events": [
                {"at": 0, "priority": "high"},
                {"at": "5m", "repeat": 1},
                {"at": "20m", "event": "agent_reply"},
                {"at": "50m", "updated_at": "10m", "priority": "low", "status": "pending"},
                {"at": "1h", "status": "resolved"},
            ]
        }
    )
    made = deliveries(timeline)
    assert (made[1].event, made[1].dedup_key, made[1].repeat_of) == (
        made[0].event,
        made[0].dedup_key,
        1,
    )
    assert made[3].event.occurred_at == DEFAULT_START + 10 * M
    assert made[4].event.priority is Priority.HIGH  # carried from 20m, not from the late one


def test_the_same_body_twice_is_one_delivery_unless_delivery_ids_say_otherwise() -> None:
    same = {"at": "0m", "event": "created", "priority": "low", "updated_at": "0m"}
    made = deliveries(
        validate_timeline({"events": [same, {**same, "at": "5m"}, {**same, "at": "6m"}]})
    )
    assert made[0].dedup_key == made[1].dedup_key == made[2].dedup_key
    made = deliveries(
        validate_timeline(
            {
                "events": [
                    {**same, "delivery_id": "a"},
                    {**same, "at": "5m", "delivery_id": "b"},
                ]
            }
        )
    )
    assert made[0].dedup_key != made[1].dedup_key


TEXT = """\
name: broken
events:
  - {at: 0m, priority: urgent}
  - at: 20m
    repeat: 5
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (TEXT, "t.yaml:5: events[2].repeat: must name an earlier event (1 to 1)"),
        (
            "events:\n  - {at: 0m, priority: low}\n  - {at: 1m, repeat: 1, status: open}\n",
            "t.yaml:3: events[2].repeat: a repeat is the same delivery again; it takes no status",
        ),
        (
            "events:\n  - {at: 0m, event: followup_requested, priority: low}\n",
            "t.yaml:2: events[1].event: followup_requested needs a ticket opened before it",
        ),
        (
            "events:\n  - {at: 0m, priority: low, title: x}\n",
            "t.yaml:2: events[1].title: title and body are for followup_requested only",
        ),
        (
            "events:\n  - {at: 1h, priority: low, updated_at: 2h}\n",
            "t.yaml:2: events[1].updated_at: cannot be after the delivery",
        ),
        (
            "events:\n  - {at: 0m, priority: low}\n  - at: 1m\n    tags: vip\n",
            "t.yaml:4: events[2].tags: Input should be a valid list",
        ),
        ("source: Fresh Desk\nevents: [{at: 0m, priority: low}]\n", "t.yaml:1: source:"),
        ("events:\n  - at: 0m\n    colour: red\n", "t.yaml:3: events[1].colour: unknown field"),
        ("- just a list\n", "t.yaml:1: (top): a timeline is a mapping"),
        ("events: [\n", "t.yaml:2: (syntax):"),
    ],
)
def test_errors_name_the_field_and_its_line(text: str, problem: str) -> None:
    with pytest.raises(TimelineError) as caught:
        parse_timeline(text, source="t.yaml")
    assert problem in str(caught.value).splitlines()[1]
    assert str(caught.value).startswith("invalid timeline\n")


def test_a_failed_event_is_not_also_reported_as_missing() -> None:
    with pytest.raises(TimelineError) as caught:
        parse_timeline("events:\n  - {at: 0m, colour: red}\n", source="t.yaml")
    assert [key for key, _, _ in caught.value.problems] == ["events[1].colour"]


def test_start_must_name_its_time_zone() -> None:
    with pytest.raises(TimelineError, match="start needs a time zone"):
        validate_timeline({"start": datetime(2026, 1, 1), "events": [{"at": 0, "priority": "low"}]})
    timeline = validate_timeline(
        {"start": "2026-01-01T10:00:00+02:00", "events": [{"at": 0, "priority": "low"}]}
    )
    assert timeline.start == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_the_step_budget_stops_a_run_and_says_so(policy: Policy) -> None:
    timeline = validate_timeline({"events": [{"at": 0, "priority": "urgent"}]})
    result = simulate(timeline, policy, max_steps=3)
    assert result.stopped == "steps"
    assert len([n for n in result.notes if "fired" in n.note]) == 3


def test_a_quiet_ticket_stops_when_no_timer_is_pending(policy: Policy) -> None:
    timeline = validate_timeline(
        {"events": [{"at": 0, "priority": "low"}, {"at": "1h", "status": "closed"}]}
    )
    result = simulate(timeline, policy)
    assert (result.stopped, result.pending_timers) == ("quiet", [])
    assert result.end_offset == "1d1h"  # the write-up reminder was the last timer


@pytest.mark.parametrize(
    ("payload", "summary"),
    [
        ({"action": "reassign", "group": "Tier 2"}, "unassign the agent, set group 'Tier 2'"),
        ({"action": "close", "ticket_id": "1"}, "close the ticket"),
        (
            {"action": "note", "body": "<p>[ticketbridge] a &amp; b</p>"},
            "private note: a & b",
        ),
        ({"weird": 1, "marker": "x"}, "weird=1"),
    ],
)
def test_payload_summaries_say_what_is_asked(payload: dict[str, Any], summary: str) -> None:
    assert summarise(payload) == summary
