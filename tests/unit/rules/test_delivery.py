"""rules.delivery: which effects still apply to a re-read ticket, and a recovery's page key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent, TicketState, decide
from ticketbridge.rules import effects as made
from ticketbridge.rules.delivery import page_key_of_recovery, still_applies

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ACTIVE = (Status.OPEN, Status.PENDING)
DONE = (Status.RESOLVED, Status.CLOSED)


@pytest.mark.parametrize("kind", ["page", "bridge"])
@pytest.mark.parametrize("priority", list(Priority))
@pytest.mark.parametrize("status", list(Status))
def test_a_page_or_bridge_applies_only_to_an_active_paging_ticket(
    kind: str, priority: Priority, status: Status
) -> None:
    paging = priority in (Priority.URGENT, Priority.HIGH)
    assert still_applies(kind, priority, status) is (paging and status in ACTIVE)


@pytest.mark.parametrize("status", list(Status))
def test_a_close_applies_only_to_a_pending_ticket(status: Status) -> None:
    for priority in Priority:
        assert still_applies("close", priority, status) is (status is Status.PENDING)


@pytest.mark.parametrize("kind", ["reassign", "note", "info"])
def test_reassigns_notes_and_infos_apply_to_any_active_ticket(kind: str) -> None:
    for priority in Priority:
        for status in ACTIVE:
            assert still_applies(kind, priority, status) is True
        for status in DONE:
            assert still_applies(kind, priority, status) is False


def _state(policy: Policy, ticket_id: str) -> TicketState:
    event = TicketEvent(
        source="freshdesk",
        ticket_id=ticket_id,
        kind=EventKind.CREATED,
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_label="Open",
        domain="acme",
        url=f"https://acme.freshdesk.com/a/tickets/{ticket_id}",
        subject="Checkout fails",
    )
    return decide(None, event, now=NOW, policy=policy).state


@pytest.mark.parametrize("generation", [1, 2, 17])
@pytest.mark.parametrize("ticket_id", ["7", "1234567890", "a:b"])
def test_a_recovery_names_the_page_of_its_own_generation(
    policy: Policy, ticket_id: str, generation: int
) -> None:
    state = _state(policy, ticket_id).model_copy(update={"page_generation": generation})
    page = made.page(state, "paged", NOW)
    recovery = made.recover(state, "resolved", NOW)
    assert recovery.kind == "recover"
    assert page_key_of_recovery(recovery.key) == page.key
    older = state.model_copy(update={"page_generation": generation - 1})
    assert page_key_of_recovery(recovery.key) != made.page(older, "paged", NOW).key


@pytest.mark.parametrize(
    "key",
    [
        "victorops:freshdesk/7:page:1",
        "freshdesk:freshdesk/7:note:bridge-open",
        "victorops:freshdesk/7:recover",
        ":recover:1",
        "recover",
        "",
    ],
)
def test_a_key_of_any_other_kind_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not the key of a recovery"):
        page_key_of_recovery(key)
