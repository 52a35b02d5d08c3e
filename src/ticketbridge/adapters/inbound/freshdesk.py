"""Freshdesk automation-rule webhooks ("Trigger Webhook", JSON) parsed into rules events.

Sans I/O: takes raw bytes, returns a ``TicketEvent`` or raises an ``InboundError``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from ticketbridge.adapters.inbound import fields
from ticketbridge.adapters.inbound.errors import MalformedPayload, MissingField
from ticketbridge.rules.effects import NOTE_MARKER
from ticketbridge.rules.model import EventKind, Priority, Status, TicketEvent

SOURCE = "freshdesk"
WRAPPER = "freshdesk_webhook"

PRIORITY_LABELS = {
    "low": Priority.LOW,
    "medium": Priority.MEDIUM,
    "high": Priority.HIGH,
    "urgent": Priority.URGENT,
    "1": Priority.LOW,
    "2": Priority.MEDIUM,
    "3": Priority.HIGH,
    "4": Priority.URGENT,
}
STATUS_LABELS = {
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "resolved": Status.RESOLVED,
    "closed": Status.CLOSED,
    "2": Status.OPEN,
    "3": Status.PENDING,
    "4": Status.RESOLVED,
    "5": Status.CLOSED,
}
# Set per automation rule ("ticketbridge_event": "agent_reply" on the rule for agent replies...):
# Freshdesk's triggered_event does not say who replied.
RULE_EVENTS = {
    "agent_reply": EventKind.AGENT_REPLY,
    "customer_reply": EventKind.CUSTOMER_REPLY,
    "assigned": EventKind.ASSIGNED,
}


class TriggeredEventError(ValueError):
    """``triggered_event`` is not in Freshdesk's ``{key:value}`` mini-syntax."""


TriggeredValue = str | dict[str, "TriggeredValue"]


class _TriggerParser:
    # Grammar: obj := '{' [pair (',' pair)*] '}' ; pair := key ':' (obj | atom)
    # atoms and keys run up to the next ',', ':', '{' or '}' and are stripped.
    MAX_DEPTH = 8

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> TriggeredEventError:
        return TriggeredEventError(f"{what} at position {self.pos}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",:{}":
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self.fail("expected a name or value")
        return value

    def obj(self, depth: int) -> dict[str, TriggeredValue]:
        if depth > self.MAX_DEPTH:
            raise self.fail("nested too deeply")
        self.expect("{")
        result: dict[str, TriggeredValue] = {}
        if self.peek() == "}":
            self.pos += 1
            return result
        while True:
            self.peek()
            key = self.token()
            self.expect(":")
            value: TriggeredValue = self.obj(depth + 1) if self.peek() == "{" else self.token()
            result[key] = value
            nxt = self.peek()
            self.pos += 1
            if nxt == "}":
                return result
            if nxt != ",":
                self.pos -= 1
                raise self.fail("expected ',' or '}'")


# Fast paths for the two shapes Freshdesk sends, "{ticket_action:created}" and
# "{status:{from:4,to:6}}" (word characters, no spaces): a regular expression reads them to the
# same dict as _TriggerParser, which walks the text a character at a time and costs five times
# as much. Anything else, bad input included, goes to _TriggerParser and its error messages.
_ONE_PAIR = re.compile(r"\{(\w+):(\w+)\}")
_ONE_CHANGE = re.compile(r"\{(\w+):\{(\w+):(\w+),(\w+):(\w+)\}\}")


def parse_triggered_event(text: str) -> dict[str, TriggeredValue]:
    """Parse ``{status:{from:4,to:6}}`` and friends into nested dicts of strings."""
    if not isinstance(text, str) or len(text) > 4096:
        raise TriggeredEventError("triggered_event must be a short string")
    if match := _ONE_PAIR.fullmatch(text):
        return {match[1]: match[2]}
    if match := _ONE_CHANGE.fullmatch(text):
        name, key1, value1, key2, value2 = match.groups()
        return {name: {key1: value1, key2: value2}}
    return _parse_triggered_event(text)


def _parse_triggered_event(text: str) -> dict[str, TriggeredValue]:
    """The general parser: any input (the fast paths' shapes too, to the same result)."""
    parser = _TriggerParser(text)
    result = parser.obj(0)
    if parser.peek():
        raise parser.fail("unexpected text after the closing brace")
    return result


def _kind_of(trigger: dict[str, TriggeredValue]) -> EventKind:
    if trigger.get("ticket_action") == "created":
        return EventKind.CREATED
    if "priority" in trigger:
        return EventKind.PRIORITY_CHANGED
    if "status" in trigger:
        return EventKind.STATUS_CHANGED
    if "note_type" in trigger:
        return EventKind.NOTE_ADDED
    return EventKind.UPDATED


def _reject_constant(name: str) -> Any:
    raise MalformedPayload(f"body is not valid JSON: {name} is not allowed")


# One decoder for every body: json.loads(raw, parse_constant=...) would build a new one (and
# its scanner) on every call, as it does whenever a keyword is passed.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, bounded nesting and integer size; else MalformedPayload."""
    try:
        # As json.loads decodes bytes: UTF-8, -16 or -32 as json.detect_encoding tells from
        # the first bytes. A body opening with "{" then any byte but NUL has no byte-order
        # mark and no UTF-16/32 zero byte, so detect_encoding would answer UTF-8; it is asked
        # only about other bodies (it is Python code, a sixth of the cost of this function).
        plain = raw[:1] == b"{" and raw[1:2] != b"\x00"
        encoding = "utf-8" if plain else json.detect_encoding(raw)
        return _STRICT_DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except MalformedPayload:
        raise
    except RecursionError as exc:
        raise MalformedPayload("body is not valid JSON: nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        # ValueError covers JSONDecodeError and int-too-large-to-convert.
        raise MalformedPayload(f"body is not valid JSON: {str(exc)[:120]}") from exc


# The ticket URLs Freshdesk sends: "http(s)://", a plain host name, then the end or the path,
# query or fragment. urlsplit's hostname for these is the name lower-cased; matching them here
# costs a seventh of urlsplit. Anything else (a port, user info, IPv6, another scheme, what
# urlsplit cleans up, such as tabs or leading control characters, or refuses) goes to urlsplit.
_PLAIN_HTTP_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?:[/?#]|\Z)")


def hostname(url: str) -> str:
    """``urlsplit(url).hostname or ""`` (and its ValueError), sooner for a plain URL."""
    if match := _PLAIN_HTTP_URL.match(url):
        return match[1].lower()
    return urlsplit(url).hostname or ""


def unwrap(document: Any) -> dict[str, Any]:
    """The ticket object: the ``freshdesk_webhook`` wrapper's content, or a bare object."""
    if not isinstance(document, dict):
        raise MissingField(WRAPPER, "the body must be a JSON object")
    inner = document.get(WRAPPER, document)
    if not isinstance(inner, dict):
        raise MissingField(WRAPPER, "must be a JSON object")
    return inner


# The dedup key's canonical form: what json.dumps(inner, sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) writes, with one encoder reused rather than one built per call.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dedup_key(inner: dict[str, Any]) -> str:
    """A redelivery of the same webhook gives the same key (Freshdesk sends no event id)."""
    canonical = _CANONICAL_ENCODER.encode(inner)
    try:
        encoded = canonical.encode("utf-8")
    except UnicodeEncodeError as exc:  # "\ud800" alone is valid JSON but not Unicode text
        raise MalformedPayload(
            "body is not valid JSON: a string holds an unpaired surrogate"
        ) from exc
    return hashlib.sha256(encoded).hexdigest()


def parse_webhook(raw: bytes) -> tuple[TicketEvent, str]:
    """Parse a Freshdesk webhook body into ``(event, dedup_key)``."""
    inner = unwrap(load_json(raw))
    ticket_id = fields.ticket_number(inner, "ticket_id", prefix=WRAPPER)

    priority_label = fields.text(inner, "ticket_priority", prefix=WRAPPER, required=True)
    priority = PRIORITY_LABELS.get(priority_label.lower())
    if priority is None:
        raise MissingField(
            f"{WRAPPER}.ticket_priority",
            f"unknown priority {priority_label[:40]!r} (expected Low, Medium, High or Urgent)",
        )

    status_label = fields.text(inner, "ticket_status", prefix=WRAPPER, required=True)
    # Custom statuses (6+, e.g. "Waiting on Customer") keep their label and count as open.
    status = STATUS_LABELS.get(status_label.lower(), Status.OPEN)
    if fields.ascii_digits(status_label):
        status_label = status.value.capitalize() if status_label in STATUS_LABELS else status_label

    trigger_text = fields.text(inner, "triggered_event", prefix=WRAPPER, required=False)
    trigger: dict[str, TriggeredValue] = {}
    if trigger_text:
        try:
            trigger = parse_triggered_event(trigger_text)
        except TriggeredEventError as exc:
            raise MissingField(f"{WRAPPER}.triggered_event", str(exc)) from exc

    url = fields.text(inner, "ticket_url", prefix=WRAPPER, required=False)
    domain = ""
    if url:
        try:
            host = hostname(url)
        except ValueError as exc:  # e.g. "http://[::1": an unclosed IPv6 address
            raise MissingField(f"{WRAPPER}.ticket_url", f"is not a URL: {exc}") from exc
        domain = host.split(".")[0] if host.endswith(".freshdesk.com") else host

    kind = _kind_of(trigger)
    rule_event = fields.text(inner, "ticketbridge_event", prefix=WRAPPER, required=False)
    if rule_event:
        if rule_event not in RULE_EVENTS:
            raise MissingField(
                f"{WRAPPER}.ticketbridge_event",
                f"unknown event {rule_event[:40]!r} (expected {', '.join(RULE_EVENTS)})",
            )
        kind = RULE_EVENTS[rule_event]
    assigned = None
    if inner.get("ticket_agent_email") is not None:
        assigned = bool(fields.text(inner, "ticket_agent_email", prefix=WRAPPER, required=False))
    tags = fields.names(inner, "ticket_tags", prefix=WRAPPER)
    note_text = fields.text(inner, "ticket_latest_private_comment", prefix=WRAPPER, required=False)

    event = TicketEvent(
        source=SOURCE,
        ticket_id=ticket_id,
        kind=kind,
        priority=priority,
        status=status,
        status_label=status_label,
        domain=domain,
        url=url,
        subject=fields.text(inner, "ticket_subject", prefix=WRAPPER, required=False)[:500],
        occurred_at=fields.timestamp(inner, "ticket_updated_at", prefix=WRAPPER),
        change=dict(trigger),
        agent_assigned=assigned,
        tags=tags,
        system_wide=fields.flag(inner, "ticket_system_wide", prefix=WRAPPER),
        components=fields.names(inner, "ticket_components", prefix=WRAPPER) or (),
        own_echo=kind is EventKind.NOTE_ADDED and NOTE_MARKER in note_text,
    )
    return event, dedup_key(inner)
