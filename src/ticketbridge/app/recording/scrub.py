"""The scrubber: personal data in a webhook body replaced by stable placeholders."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ticketbridge.rules.effects import NOTE_MARKER

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PLACEHOLDER_DOMAIN = "example.invalid"
ADDRESS_LIST_REST = re.compile(r"[\s,;]*")
PLACEHOLDER = re.compile(r"(?:person-\d+@example\.invalid|(?:name|phone|text|subject)-\d+)", re.I)
# A phone-number candidate: digits with separators, optionally after "+"; checked further in
# ``_is_phone`` (8 to 15 digits, a "+" or a separator, not a date).
PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\+\s?)?\(?\d[\d ().\-/]{5,24}\d(?!\w)")
DATE_START = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
# Key words (the last ``_``-separated part of a key, lower case) that say what a value holds.
PERSON_WORDS = frozenset(
    {
        "requester",
        "requesters",
        "assignee",
        "assignees",
        "submitter",
        "agent",
        "customer",
        "contact",
        "user",
        "author",
        "reporter",
        "caller",
        "responder",
        "cc",
        "ccs",
        "follower",
        "followers",
        "collaborator",
        "collaborators",
        "recipient",
        "recipients",
    }
)
TEXT_WORDS = frozenset(
    {
        "description",
        "comment",
        "comments",
        "body",
        "note",
        "notes",
        "message",
        "messages",
        "text",
        "html",
        "content",
        "reply",
    }
)
SUBJECT_KEYS = frozenset({"subject", "ticketsubject", "title", "tickettitle"})
# Structured values (ids, times, links, Freshdesk's triggered_event) are not searched for phone
# numbers, which their digits would resemble; e-mail addresses are looked for everywhere.
NO_PHONE_WORDS = frozenset({"id", "at", "url", "link", "event", "date", "time", "timestamp"})


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]


def _is_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not 8 <= digits <= 15:
        return False
    body = candidate.lstrip("+ ")
    if candidate.startswith("+"):
        return True
    if not any(c in " ().-/" for c in body):
        return False  # a bare run of digits: an order or ticket number more likely
    return not DATE_START.match(body)


@dataclass
class Scrubber:
    """Replaces personal data in a webhook body by stable placeholders.

    One instance serves one recording: the same address, name, phone number or text maps to
    the same placeholder every time (so a redelivery still looks like a redelivery), and
    different ones to different placeholders. The maps live in memory only.

    By key (any depth, key compared in lower case):

    - a key ending in ``email``/``emails`` → every address in it becomes
      ``person-N@example.invalid`` (a value that holds anything but addresses and separators,
      such as ``Jane Roe <jane@...>``, is replaced whole); an empty value stays empty
      (``ticket_agent_email: ""`` means "unassigned");
    - a key containing ``phone``, ``mobile`` or ending in ``fax`` → ``phone-N``;
    - a key ending in ``name`` (``requester_name``, ``name``, ``display_name``) → ``name-N``;
    - a key whose last word names a person (``requester``, ``assignee``, ``agent``,
      ``customer``, ``user``, ``cc``... see ``PERSON_WORDS``) → every string under it is a
      name or an address;
    - a key whose last word is free text (``description``, ``comment``, ``body``, ``note``,
      ``message``, ``text``, ``html``... see ``TEXT_WORDS``) → every string under it becomes
      ``text-N`` (keeping ticketbridge's own ``[ticketbridge]`` note marker, which the service
      looks for);
    - the subject (``ticket_subject``, ``subject``, ``title``) → ``subject-N`` only with
      ``scrub_subject``.

    Every other string (the subject when kept, tags, status labels, URLs...) has e-mail
    addresses replaced, and, unless its key names an id, time, link or event, phone numbers
    (``+`` and 8-15 digits, or 8-15 digits with separators that are not a date).
    """

    scrub_subject: bool = False
    _maps: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    _counters: dict[str, int] = field(default_factory=dict, repr=False)
    _taken: set[str] = field(default_factory=set, repr=False)

    def _placeholder(self, kind: str, value: str, render: Callable[[int], str]) -> str:
        seen = self._maps.setdefault(kind, {})
        if value not in seen:
            n = self._counters.get(kind, 0) + 1
            while render(n) in self._taken:  # a placeholder the bodies already hold
                n += 1
            self._counters[kind] = n
            seen[value] = render(n)
            self._taken.add(seen[value])
        return seen[value]

    def _kept(self, value: str) -> bool:
        """True for a placeholder already (a re-recorded replay): it is kept as it is."""
        if PLACEHOLDER.fullmatch(value.strip()):
            self._taken.add(value.strip().lower())
            return True
        return False

    def email(self, address: str) -> str:
        if self._kept(address):
            return address
        return self._placeholder(
            "email", address.lower(), lambda n: f"person-{n}@{PLACEHOLDER_DOMAIN}"
        )

    def _emails_in(self, text: str) -> str:
        return EMAIL.sub(lambda m: self.email(m.group(0)), text)

    def _phones_in(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            found = match.group(0)
            if not _is_phone(found):
                return found
            digits = "".join(c for c in found if c.isdigit())
            return self._placeholder("phone", digits, lambda n: f"phone-{n}")

        return PHONE_CANDIDATE.sub(replace, text)

    def _string(self, value: str, mode: str, words: Sequence[str]) -> str:
        if not value.strip():
            return value  # empty stays empty: it can carry meaning ("no agent")
        if mode == "text" and NOTE_MARKER in value:
            core = value.replace(NOTE_MARKER, "").strip()
            return f"{NOTE_MARKER} {self._string(core, mode, words)}"
        if mode and self._kept(value):
            return value
        if mode == "email":
            if ADDRESS_LIST_REST.fullmatch(EMAIL.sub("", value)):
                return self._emails_in(value)  # addresses and separators only
            return self.email(value.strip())  # "Jane Roe <jane@...>", or no address at all
        if mode == "phone":
            digits = "".join(c for c in value if c.isdigit()) or value
            return self._placeholder("phone", digits, lambda n: f"phone-{n}")
        if mode == "name":
            return self._placeholder("name", value, lambda n: f"name-{n}")
        if mode == "person":
            if EMAIL.fullmatch(value.strip()):
                return self.email(value.strip())
            return self._placeholder("name", value, lambda n: f"name-{n}")
        if mode == "text":
            return self._placeholder("text", value, lambda n: f"text-{n}")
        if mode == "subject":
            return self._placeholder("subject", value, lambda n: f"subject-{n}")
        value = self._emails_in(value)
        if not (words and words[-1] in NO_PHONE_WORDS):
            value = self._phones_in(value)
        return value

    def _mode_of(self, key: str, inherited: str) -> str:
        words = _words(key)
        compact = "".join(words)
        if compact.endswith(("email", "emails")):
            return "email"
        if "phone" in compact or "mobile" in compact or compact.endswith("fax"):
            return "phone"
        if compact.endswith(("name", "names")):
            return "name"
        if words and words[-1] in PERSON_WORDS:
            return "person"
        if words and words[-1] in TEXT_WORDS:
            return "text"
        if inherited in ("person", "text"):
            return inherited  # any other string under a person or a text is one too
        if compact in SUBJECT_KEYS and self.scrub_subject:
            return "subject"
        return ""

    def _value(self, value: Any, mode: str, words: Sequence[str]) -> Any:
        if isinstance(value, str):
            return self._string(value, mode, words)
        if isinstance(value, dict):
            return {
                k: self._value(v, self._mode_of(str(k), mode), _words(str(k)))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._value(v, mode, words) for v in value]
        if mode == "phone" and isinstance(value, int | float) and not isinstance(value, bool):
            return self._placeholder("phone", str(value), lambda n: f"phone-{n}")
        return value  # numbers, booleans and null carry no personal data

    def body(self, document: Any) -> Any:
        """A scrubbed copy of a parsed JSON body (the input is not changed)."""
        return self._value(document, "", ())
