"""The signed sources' body parsers under Hypothesis: for any input, only their own errors.

``zendesk.parse_webhook`` and ``generic.parse_webhook`` get the bytes the signature covered and
the signed headers (delivery id, timestamp); whatever those hold, they return an event or raise
an ``InboundError`` (400/422, 401 for a timestamp), never anything else (a 500). An event they
return must be one the rules can decide as a new ticket: a 9999-12-31 update time parsed, then
overflowed in the rules' timer arithmetic (a 500 on all three routes, Freshdesk's too: the same
field reader). The Freshdesk parser's other inputs and the verifiers have theirs in
``test_freshdesk_inbound.py`` and ``test_signatures.py``.

Three levels of input: any bytes (mostly not JSON), any JSON document, and valid bodies with a
few fields changed to values of every JSON type, near-miss strings or any instant, or dropped,
which is where a parser gets past its first checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.conftest import freshdesk_body
from ticketbridge.adapters.inbound import freshdesk, generic, zendesk
from ticketbridge.adapters.inbound.errors import InboundError, MissingField
from ticketbridge.app.policy_file import load_policy
from ticketbridge.rules import TicketEvent, decide

POLICY = load_policy(None)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

Parser = Callable[[bytes, str | None], tuple[TicketEvent, str]]
# The signed headers a route passes its parser besides the body: (delivery id, timestamp).
Headers = tuple[str | None, str | None]
PARSERS: dict[str, Callable[[bytes, Headers], tuple[TicketEvent, str]]] = {
    "zendesk": lambda raw, headers: zendesk.parse_webhook(raw, headers[1]),
    "generic": lambda raw, headers: generic.parse_webhook(raw, headers[0], signed_at=headers[1]),
}

# Header values arrive as str (latin-1 decoded), may be absent, empty, long or odd; the route
# verified them, but the parser must not fail otherwise than with its own errors whatever
# they hold (a timestamp it cannot read is 401, as the verifier answers it).
delivery_ids = st.tuples(
    st.none() | st.text(max_size=80),
    st.none()
    | st.sampled_from(["2026-11-26T12:00:00Z", "2026-11-26T12:00:00+01:00", "1795694400"])
    | st.text(max_size=40),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)

# Strings a helpdesk template could render into a field, and near misses of them.
plausible = st.sampled_from(
    [
        "", " ", "-", "1", "007", "0", "-1", "1.5", "9" * 25, "T-1", "a/b", "acme-desk",
        "freshdesk", "zendesk", "generic", "urgent", "Urgent", "normal", "medium", "high",
        "low", "p1", "new", "open", "pending", "hold", "on-hold", "solved", "resolved",
        "closed", "Waiting on vendor", "created", "updated", "status_changed", "note_added",
        "true", "false", "yes", "maybe", "vip, billing", "vip billing", "a," * 150,
        "2026-11-26T12:00:00Z", "2026-11-26", "2026-13-40T25:61:00", "0000-00-00",
        "9999-12-31T23:59:59+23:59", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00",
        "acme.zendesk.com/agent/tickets/1", "http://[::1", "https://desk.acme.example/t/1",
        "\ud800", "\x00", "x" * 70000,
    ]
)  # fmt: skip
field_values = st.one_of(plausible, plausible.map(str.upper), json_values)
# Any instant, with or without an offset (up to ±23:59), as ISO-8601: the ends of the range too.
offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
timestamps = st.datetimes(timezones=st.none() | offsets.map(timezone)).map(datetime.isoformat)

# Every field each parser reads, valid; a near miss changes or drops a few of them.
ZENDESK_VALID: dict[str, Any] = {
    "ticket_id": "11",
    "ticket_url": "acme.zendesk.com/agent/tickets/11",
    "ticket_subject": "Checkout fails",
    "ticket_status": "open",
    "ticket_priority": "urgent",
    "ticket_updated_at": "2026-11-26T12:00:00Z",
    "ticket_assignee_email": "agent@acme.example",
    "ticket_tags": "vip billing",
    "ticketbridge_event": "created",
    "ticket_system_wide": "false",
    "ticket_components": "api,web",
}
GENERIC_VALID: dict[str, Any] = {
    "source": "acme-desk",
    "ticket_id": "T-1",
    "priority": "urgent",
    "status": "open",
    "status_label": "Waiting on vendor",
    "event": "created",
    "domain": "acme",
    "url": "https://desk.acme.example/t/1",
    "subject": "Checkout fails",
    "updated_at": "2026-11-26T12:00:00Z",
    "assigned": True,
    "tags": ["vip"],
    "system_wide": False,
    "components": ["api"],
}


def near_miss(valid: dict[str, Any], timestamp: str) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with up to three fields changed, maybe ``timestamp`` to any instant, and up to
    two dropped."""
    names = st.sampled_from(sorted(valid))
    changed = st.dictionaries(names, field_values, max_size=3)
    when = st.fixed_dictionaries({}, optional={timestamp: timestamps})
    return st.builds(
        lambda changed, when, dropped: {
            k: v for k, v in {**valid, **changed, **when}.items() if k not in dropped
        },
        changed,
        when,
        st.sets(names, max_size=2),
    )


zendesk_documents = near_miss(ZENDESK_VALID, "ticket_updated_at").flatmap(
    lambda inner: st.sampled_from([inner, {"zendesk_webhook": inner}])
)
DOCUMENTS = {"zendesk": zendesk_documents, "generic": near_miss(GENERIC_VALID, "updated_at")}


def parse_or_refuse(source: str, raw: bytes, delivery_id: Headers) -> None:
    """Parse; a refusal must be an InboundError (400/422), an event one the rules can decide
    (a new ticket: its timers are planned from the event's timestamp)."""
    try:
        parsed, key = PARSERS[source](raw, delivery_id)
    except InboundError as exc:
        refused = exc.status
    else:
        refused = None
        assert isinstance(parsed, TicketEvent)
        assert parsed.ticket_id
        assert 0 < len(key) <= 128
        assert PARSERS[source](raw, delivery_id) == (parsed, key)  # deterministic
        if source == "zendesk":
            assert parsed.ticket_id.isascii()
            assert parsed.ticket_id.isdigit()
        else:
            assert parsed.source not in generic.RESERVED_SOURCES
        decide(None, parsed, now=NOW, policy=POLICY)  # what is accepted, the rules can take
    assert refused in (None, 400, 422) or (refused == 401 and delivery_id[1] is not None)
    event(f"refused {refused}" if refused else "parsed")  # see --hypothesis-show-statistics


@pytest.mark.parametrize(
    ("source", "valid", "expected"),
    [
        ("zendesk", ZENDESK_VALID, ("zendesk", "11", ("vip", "billing"), ("api", "web"))),
        ("generic", GENERIC_VALID, ("acme-desk", "T-1", ("vip",), ("api",))),
    ],
)
def test_the_valid_bodies_the_near_misses_start_from_parse(
    source: str, valid: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    parsed, key = PARSERS[source](json.dumps(valid).encode(), (None, None))
    assert (parsed.source, parsed.ticket_id, parsed.tags, parsed.components) == expected
    assert (parsed.kind.value, parsed.priority.value, parsed.status.value) == (
        "created",
        "urgent",
        "open",
    )
    assert parsed.occurred_at == NOW
    assert parsed.subject == "Checkout fails"
    assert key


@pytest.mark.parametrize("source", list(PARSERS))
@given(raw=st.binary(max_size=400), delivery_id=delivery_ids)
def test_any_bytes_raise_only_inbound_errors(source: str, raw: bytes, delivery_id: Headers) -> None:
    parse_or_refuse(source, raw, delivery_id)


@pytest.mark.parametrize("source", list(PARSERS))
@given(document=json_values, delivery_id=delivery_ids)
def test_any_json_raises_only_inbound_errors(
    source: str, document: Any, delivery_id: Headers
) -> None:
    parse_or_refuse(source, json.dumps(document).encode(), delivery_id)


@pytest.mark.parametrize("source", list(PARSERS))
@given(data=st.data(), delivery_id=delivery_ids)
def test_near_miss_bodies_raise_only_inbound_errors(
    source: str, data: st.DataObject, delivery_id: Headers
) -> None:
    document = data.draw(DOCUMENTS[source])
    # ensure_ascii=False: the body as a sender writes it, unpaired surrogates and all.
    raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    parse_or_refuse(source, raw, delivery_id)


TIMESTAMPED: dict[str, tuple[Parser, dict[str, Any], str]] = {
    "zendesk": (zendesk.parse_webhook, ZENDESK_VALID, "ticket_updated_at"),
    "generic": (generic.parse_webhook, GENERIC_VALID, "updated_at"),
    # The same field reader: Freshdesk's ticket_updated_at answered 500 at the range's ends too.
    "freshdesk": (
        lambda raw, _: freshdesk.parse_webhook(raw),
        freshdesk_body(11)["freshdesk_webhook"],
        "ticket_updated_at",
    ),
}


@pytest.mark.parametrize("source", list(TIMESTAMPED))
@given(when=timestamps)
@example(when="9999-12-31T23:59:59")  # the rules add the response windows to it
@example(when="0001-01-01T00:00:00+14:00")  # before the first instant in UTC
def test_any_update_time_is_refused_or_one_the_rules_can_plan_from(source: str, when: str) -> None:
    parse, valid, field = TIMESTAMPED[source]
    try:
        parsed, _ = parse(json.dumps({**valid, field: when}).encode(), None)
    except MissingField as exc:
        refused: str | None = exc.field
    else:
        refused = None
        assert parsed.occurred_at is not None
        decide(None, parsed, now=NOW, policy=POLICY)
    assert refused is None or refused.endswith(field)
