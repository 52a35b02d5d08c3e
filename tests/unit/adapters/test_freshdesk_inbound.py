"""Freshdesk inbound parsing: triggered_event mini-syntax, labels, wrapper, dedup key."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import freshdesk_body
from ticketbridge.adapters.inbound.errors import InboundError, MalformedPayload, MissingField
from ticketbridge.adapters.inbound.fields import text as fields_text
from ticketbridge.adapters.inbound.freshdesk import (
    TriggeredEventError,
    _parse_triggered_event,
    dedup_key,
    hostname,
    load_json,
    parse_triggered_event,
    parse_webhook,
)
from ticketbridge.rules import EventKind, Priority, Status

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "vendors" / "freshdesk"


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


def triggered_event_by_grammar(text: str) -> dict[str, Any] | None:
    """What the triggered_event grammar says ``text`` means, worked out another way: every
    name or value quoted, the result read as JSON (an object of objects and strings, at most
    nine deep, the last of two equal keys kept); None when it is not in the grammar."""
    quoted = re.sub(
        r"[^,:{}]+", lambda m: json.dumps(m.group().strip()) if m.group().strip() else "", text
    )
    try:
        document = json.loads(quoted)
    except json.JSONDecodeError:
        return None

    def depth(value: Any) -> int:
        return 1 + max(map(depth, value.values()), default=0) if isinstance(value, dict) else 0

    return document if isinstance(document, dict) and depth(document) <= 9 else None


# Texts of the grammar (names and values may be blank, which it refuses), and each with one
# character put in or taken out: a near miss of the syntax is one keystroke from it.
_atoms = st.text(alphabet="abc019 ", max_size=4)
_objects: st.SearchStrategy[str] = st.deferred(
    lambda: st.lists(st.tuples(_atoms, _atoms | _objects), max_size=3).map(
        lambda pairs: "{" + ",".join(f"{name}:{value}" for name, value in pairs) + "}"
    )
)
near_misses = st.builds(
    lambda text, at, put, cut: text[:at] + put + text[at + cut :],
    _objects,
    st.integers(0, 40),
    st.sampled_from(["", "{", "}", ":", ",", " ", "a"]),
    st.integers(0, 1),
)


@given(st.text(alphabet="{}:, abc019", max_size=60) | near_misses)
@example("{a:{b:{c:{d:{e:{f:{g:{h:{i:1}}}}}}}}}")  # nine deep: the most it takes
@example("{a:{b:{c:{d:{e:{f:{g:{h:{i:{j:1}}}}}}}}}}")
@example("{a:1, a:2}")
def test_near_miss_syntax_is_accepted_exactly_as_the_grammar_says(text: str) -> None:
    try:
        parsed: dict[str, Any] | None = parse_triggered_event(text)
    except TriggeredEventError:
        parsed = None
    assert parsed == triggered_event_by_grammar(text)


@given(st.binary(max_size=300))
@example(json.dumps(freshdesk_body(5)).encode())
def test_any_bytes_are_refused_with_an_inbound_error_unless_they_are_a_webhook(
    raw: bytes,
) -> None:
    try:
        event, _ = parse_webhook(raw)
    except InboundError as exc:
        refused: int | None = exc.status
    else:
        refused = None
        assert event.ticket_id == json.loads(raw)["freshdesk_webhook"]["ticket_id"]
    assert refused in (None, 400, 422)


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


# Pinned behaviour: the parser is on the hot path and has been optimised; these hold it to what
# it did before (stored dedup keys must keep matching redeliveries, refusals keep their text).

KEYED_BODY = (
    b'{"freshdesk_webhook": {'
    b'"ticket_subject": "Caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ </x>\\n",'
    b' "ticket_id": "0042", "ticket_priority": "Urgent", "ticket_status": "5",'
    b' "triggered_event": "{status:{from:4,to:5}}",'
    b' "ticket_url": "https://Acme.freshdesk.com/a/tickets/42", "z_float": 1.5e300,'
    b' "a_int": -12345678901234567890, "m_list": [true, false, null, 0.1, {"b": 1, "a": 2}],'
    b' "ticket_tags": ["vip", "billing"], "\\u00e9l\\u00e8ve": {}}}'
)


def test_the_dedup_key_of_a_known_body_never_changes() -> None:
    # Computed once: a stored key must keep matching the same webhook's redeliveries.
    event, key = parse_webhook(KEYED_BODY)
    assert key == "6f6ad0e352f357c88ca22043da1f5b8a6d25c15b715100fd91a9f3b00c2e8f4a"
    assert (event.ticket_id, event.status_label, event.domain) == ("42", "Closed", "acme")
    assert event.change == {"status": {"from": "4", "to": "5"}}


def _reference_load_json(raw: bytes) -> Any:
    """load_json as first written: json.loads with a parse_constant that refuses NaN and co."""

    def reject(name: str) -> Any:
        raise MalformedPayload(f"body is not valid JSON: {name} is not allowed")

    try:
        return json.loads(raw, parse_constant=reject)
    except MalformedPayload:
        raise
    except RecursionError as exc:
        raise MalformedPayload("body is not valid JSON: nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {str(exc)[:120]}") from exc


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    try:
        return ("returned", function(*args))
    except Exception as exc:  # the exception, its class and text, is what is compared
        return ("raised", type(exc), str(exc))


json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
encodings = st.sampled_from(
    ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)


@given(
    st.one_of(
        st.binary(max_size=40),
        st.binary(max_size=40).map(lambda tail: b"{" + tail),
        st.builds(
            lambda document, encoding: json.dumps(document, ensure_ascii=False).encode(
                encoding, "surrogatepass"
            ),
            json_documents,
            encodings,
        ),
        st.sampled_from([b'{"x": NaN}', b'{"x": -Infinity}', b"[Infinity]", b"{\x00}", b"{"]),
    )
)
def test_load_json_decodes_and_refuses_as_json_loads_does(raw: bytes) -> None:
    assert _outcome(load_json, raw) == _outcome(_reference_load_json, raw)


@given(st.dictionaries(st.text(max_size=10), json_documents, max_size=6))
def test_the_dedup_key_is_the_hash_of_the_canonical_json(inner: dict[str, Any]) -> None:
    try:
        canonical = json.dumps(inner, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        with pytest.raises(MalformedPayload, match="unpaired surrogate"):
            dedup_key(inner)
    else:
        assert dedup_key(inner) == expected


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://acme.freshdesk.com/a/tickets/1", "acme"),
        ("https://Acme.FreshDesk.COM/a/tickets/1", "acme"),
        ("HTTPS://ACME.FRESHDESK.COM", "acme"),
        ("https://user:pw@acme.freshdesk.com:443/x", "acme"),
        ("http://desk.acme.example?x#y", "desk.acme.example"),
        ("http://[::1]:8080/x", "::1"),
        ("https://\tacme.freshdesk.com/", "acme"),
        ("acme.freshdesk.com/a/tickets/1", ""),
        ("ftp://Files.example/x", "files.example"),
    ],
)
def test_the_domain_is_the_url_host(url: str, domain: str) -> None:
    assert parse_webhook(_fd(ticket_url=url))[0].domain == domain


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ticket_id": None}, "freshdesk_webhook.ticket_id: is required"),
        ({"ticket_id": " "}, "freshdesk_webhook.ticket_id: must not be empty"),
        ({"ticket_id": True}, "freshdesk_webhook.ticket_id: must be a string"),
        ({"ticket_priority": 1.5}, "freshdesk_webhook.ticket_priority: must be a string"),
        ({"ticket_subject": ["a"]}, "freshdesk_webhook.ticket_subject: must be a string"),
        ({"ticket_subject": "x" * 65537}, "freshdesk_webhook.ticket_subject: is too long"),
        (
            {"triggered_event": "{a:b"},
            "freshdesk_webhook.triggered_event: expected ',' or '}' at position 4",
        ),
        (
            {"ticket_updated_at": "soon"},
            "freshdesk_webhook.ticket_updated_at: must be an ISO-8601 timestamp",
        ),
        (
            {"ticket_updated_at": "1999-12-31T23:59:59Z"},
            "freshdesk_webhook.ticket_updated_at: must be a time from 2000 to 2099",
        ),
        ({"ticket_tags": [1]}, "freshdesk_webhook.ticket_tags: must be a list of strings"),
        ({"ticket_system_wide": 2}, "freshdesk_webhook.ticket_system_wide: must be true or false"),
    ],
)
def test_refusals_keep_their_messages(fields: dict[str, object], message: str) -> None:
    with pytest.raises(MissingField) as info:
        parse_webhook(_fd(**fields))
    assert str(info.value) == message


def test_a_url_urlsplit_refuses_is_a_422_naming_the_field() -> None:
    # It was a bare ValueError (a 500) before: bad input is never a 500.
    with pytest.raises(MissingField, match=r"^freshdesk_webhook\.ticket_url: is not a URL"):
        parse_webhook(_fd(ticket_url="http://[::1"))


def test_a_field_read_without_a_prefix_is_named_bare() -> None:
    with pytest.raises(MissingField, match=r"^ticket_id: is required$"):
        fields_text({}, "ticket_id", prefix="", required=True)


# The fast paths against the general code they shortcut: same results, same errors.

names = st.text(alphabet="ab_1٣é\u00a0 \t", min_size=0, max_size=4)
near_fast_shapes = st.one_of(
    st.from_regex(r"\A\{\w+:\w+\}\Z"),
    st.from_regex(r"\A\{\w+:\{\w+:\w+,\w+:\w+\}\}\Z"),
    st.builds("{{{}:{}}}".format, names, names),
    st.builds("{{{}:{{{}:{},{}:{}}}}}".format, names, names, names, names, names),
    st.text(alphabet="{}:, \tab_1", max_size=30),
    st.text(max_size=30),
)


@given(near_fast_shapes)
def test_the_trigger_fast_paths_agree_with_the_general_parser(text: str) -> None:
    # repr: the keys' order too (the event's change dict is stored as it is).
    fast, general = _outcome(parse_triggered_event, text), _outcome(_parse_triggered_event, text)
    assert repr(fast) == repr(general)


hosts = st.text(alphabet="aZ09.-_@:[]%/?#\t\n \x01\u212a\uff0e\u00e9", max_size=16)
urls = st.one_of(
    st.builds(
        "{}{}{}".format,
        st.sampled_from(
            ["http://", "https://", "HTTP://", "ftp://", "//", "", "https:", "h\ttp://"]
        ),
        hosts,
        st.sampled_from(["", "/", "/a?b#c", "?q", "#f", ":8080/x", "\n/x", "@h/x"]),
    ),
    st.text(max_size=30),
)


@given(urls)
def test_hostname_is_urlsplits(url: str) -> None:
    assert _outcome(hostname, url) == _outcome(lambda u: urlsplit(u).hostname or "", url)
