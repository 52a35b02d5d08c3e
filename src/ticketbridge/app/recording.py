"""Recorded webhook fixtures: the file format, the scrubber, the recording proxy and replay.

A fixture is one inbound webhook as a JSON file named ``NNNN-<source>.json``::

    {"source": "zendesk", "offset_seconds": 42.125,
     "recorded_at": "2026-11-26T12:00:42.125Z",
     "headers": {"content-type": "application/json",
                 "x-zendesk-webhook-invocation-id": "8350205582"},
     "body": {"zendesk_webhook": {...}}}

``offset_seconds`` counts from the first request of the recording; ``recorded_at`` is when the
request arrived (UTC), from which replay shifts the event times in the body. ``headers`` keeps only
``KEPT_HEADERS`` (the content type and the delivery ids the service deduplicates on): never
``Authorization`` nor any signature or signature timestamp, because replay authenticates and
signs afresh with the secret it is given. ``body`` is the parsed JSON after ``Scrubber``.

Recording happens in a small proxy in front of the service (``create_recorder_app``), not in
the service itself, so the production request path stays as it is. A request is written only
once it is known to be authentic: the service's 2xx answer says so when forwarding; without a
service to forward to, the proxy checks the credentials itself with the service's own
verifiers. Replay re-signs every fixture, so recording a forged request would turn it into a
validly signed one.

Nothing here does any work at import time; nothing here prints or logs a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticketbridge.adapters.inbound import signatures
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.rules.effects import NOTE_MARKER

SOURCES = ("freshdesk", "zendesk", "generic")
# Lower-case header names a fixture keeps. Everything else is dropped, notably Authorization,
# X-Zendesk-Webhook-Signature(-Timestamp), webhook-signature and webhook-timestamp.
KEPT_HEADERS = (
    "content-type",
    "x-zendesk-webhook-id",
    "x-zendesk-webhook-invocation-id",
    "webhook-id",
)
FIXTURE_NAME = re.compile(r"(\d+)-([a-z]+)\.json")
DEFAULT_MAX_BODY = 1024 * 1024
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy recomputes: never relayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


class FixtureError(ValueError):
    """A fixture file that cannot be replayed (the message names the file, never a secret)."""


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """JSON text as UTF-8 can carry it: non-ASCII kept, escaped only when it must be (a lone
    surrogate, valid JSON but not Unicode text)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    return text


# --- scrubbing -------------------------------------------------------------------------------

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


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers a fixture keeps (``KEPT_HEADERS``), names in lower case."""
    kept: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in KEPT_HEADERS and lower not in kept:
            kept[lower] = value
    return kept


# --- the fixture files -----------------------------------------------------------------------


def _iso_z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_datetime(value: Any) -> datetime | None:
    """An ISO-8601 time (no zone: UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Fixture:
    """One recorded webhook, as read back for replay."""

    path: Path
    source: str
    offset_seconds: float
    headers: dict[str, str]
    body: Any
    recorded_at: datetime | None = None


def _order(path: Path) -> tuple[int, str]:
    match = FIXTURE_NAME.fullmatch(path.name)
    return (int(match.group(1)) if match else 1 << 62, path.name)


def fixture_paths(arguments: Sequence[Path]) -> list[Path]:
    """Files as given; a directory contributes its ``*.json`` files in number order."""
    paths: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            paths.extend(sorted(argument.glob("*.json"), key=_order))
        else:
            paths.append(argument)
    return paths


def read_fixture(path: Path) -> Fixture:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise FixtureError(f"{path}: a fixture is a JSON object")
    source = document.get("source")
    if source not in SOURCES:
        raise FixtureError(f"{path}: source must be one of {', '.join(SOURCES)}")
    offset = document.get("offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int | float) or not offset >= 0:
        raise FixtureError(f"{path}: offset_seconds must be a number >= 0")
    headers = document.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FixtureError(f"{path}: headers must be an object of strings")
    if "body" not in document:
        raise FixtureError(f"{path}: no body")
    recorded_at = None
    if document.get("recorded_at") is not None:
        recorded_at = _iso_datetime(document["recorded_at"])
        if recorded_at is None:
            raise FixtureError(f"{path}: recorded_at must be an ISO-8601 time")
    return Fixture(
        path=path,
        source=str(source),
        offset_seconds=float(offset),
        headers={k.lower(): v for k, v in headers.items()},
        body=document["body"],
        recorded_at=recorded_at,
    )


def load_fixtures(arguments: Sequence[Path]) -> list[Fixture]:
    return [read_fixture(path) for path in fixture_paths(arguments)]


class FixtureWriter:
    """Numbers, scrubs and writes fixtures into one directory; thread-safe.

    The directory must hold no fixture yet: placeholders and offsets belong to one recording.
    Each file appears whole (written aside, then renamed).
    """

    def __init__(self, directory: Path, scrubber: Scrubber) -> None:
        self.directory = directory
        self.scrubber = scrubber
        self._lock = threading.Lock()
        self._count = 0
        self._first: float | None = None

    def check_empty(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(FIXTURE_NAME.fullmatch(p.name) for p in self.directory.iterdir()):
            raise FixtureError(
                f"{self.directory} already holds fixtures: record into an empty directory"
            )

    def write(
        self,
        source: str,
        headers: Iterable[tuple[str, str]],
        body: Any,
        arrived: float,
        wall: datetime,
    ) -> Path:
        """Write one request that arrived at ``arrived`` (monotonic seconds), ``wall`` (UTC)."""
        with self._lock:
            if self._first is None:
                self._first = arrived
            self._count += 1
            fixture = {
                "source": source,
                "offset_seconds": round(max(0.0, arrived - self._first), 3),
                "recorded_at": _iso_z(wall),
                "headers": kept_headers(headers),
                "body": self.scrubber.body(body),
            }
            path = self.directory / f"{self._count:04d}-{source}.json"
            text = dumps_json(fixture, indent=2) + "\n"
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            return path


# --- the recording proxy ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSecrets:
    """Webhook secrets per source, as the service is configured (never in a repr)."""

    freshdesk: tuple[str, ...] = field(default=(), repr=False)
    zendesk: tuple[str, ...] = field(default=(), repr=False)
    generic: tuple[str, ...] = field(default=(), repr=False)


def authentic(
    source: str, headers: Mapping[str, str], raw: bytes, secrets: SourceSecrets, now: datetime
) -> bool:
    """Whether the service itself would take these credentials (its own verifiers)."""
    try:
        if source == "freshdesk":
            check_shared_secret(
                headers.get("authorization"), [s.encode() for s in secrets.freshdesk]
            )
        elif source == "zendesk":
            signatures.verify_zendesk(
                body=raw,
                signature=headers.get("x-zendesk-webhook-signature"),
                timestamp=headers.get("x-zendesk-webhook-signature-timestamp"),
                secrets=[s.encode() for s in secrets.zendesk],
                now=now,
            )
        else:
            signatures.verify_standard(
                body=raw,
                msg_id=headers.get("webhook-id"),
                timestamp=headers.get("webhook-timestamp"),
                signature=headers.get("webhook-signature"),
                keys=[signatures.standard_secret(s) for s in secrets.generic],
                now=now,
            )
    except Unauthorized:
        return False
    return True


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def create_recorder_app(
    writer: FixtureWriter,
    *,
    forward: str | None,
    secrets: SourceSecrets,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    timeout: float = 10.0,
    log: Callable[[str], None] = lambda line: None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The recording proxy: ``POST /webhooks/{freshdesk,zendesk,generic}`` and ``/healthz``.

    With ``forward`` (the service's base URL) every request goes there unchanged (hop-by-hop
    headers aside) and the answer comes back unchanged; it is recorded when that answer is
    2xx. Without it, the proxy checks the credentials against ``secrets`` (401 otherwise),
    records, and answers 202 ``{"outcome": "recorded"}``. ``log`` gets one line per request:
    the fixture written or why none was, never a header value or a body.
    """
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if forward is None:
            yield
            return
        async with httpx.AsyncClient(
            base_url=forward, timeout=timeout, trust_env=False, transport=transport
        ) as client:
            state["client"] = client
            yield
            state.pop("client", None)

    async def record(
        source: str, request: Request, document: Any, arrived: tuple[float, datetime]
    ) -> str | None:
        """The fixture's file name, or None (logged) if it could not be written."""
        try:
            path = await anyio.to_thread.run_sync(
                writer.write, source, list(request.headers.items()), document, *arrived
            )
        except OSError as exc:
            log(f"{source}: not recorded: cannot write the fixture ({type(exc).__name__})")
            return None
        return path.name

    async def webhook(request: Request) -> Response:
        source = str(request.path_params["source"])
        if source not in SOURCES:
            return JSONResponse({"error": "unknown webhook source"}, status_code=404)
        arrived = (time.monotonic(), datetime.now(UTC))
        try:
            raw = await _read_body(request, max_body_bytes)
        except _TooLarge:
            log(f"{source}: not recorded: body over {max_body_bytes} bytes (413)")
            return JSONResponse({"error": "body too large"}, status_code=413)
        except ClientDisconnect:
            return Response(status_code=400)
        client = state.get("client")
        if client is None:
            if not authentic(source, request.headers, raw, secrets, datetime.now(UTC)):
                log(f"{source}: not recorded: credentials refused (401)")
                challenge = {"WWW-Authenticate": 'Basic realm="ticketbridge"'}
                return JSONResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers=challenge if source == "freshdesk" else None,
                )
            document = _json_object(raw)
            if document is None:
                log(f"{source}: not recorded: body is not a JSON object (400)")
                return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
            name = await record(source, request, document, arrived)
            if name is None:  # the sender retries later
                return JSONResponse({"error": "cannot record"}, status_code=503)
            log(f"{source}: recorded {name} (202)")
            return JSONResponse({"outcome": "recorded", "fixture": name}, status_code=202)

        outbound = [
            (k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        try:
            upstream = await client.post(
                f"/webhooks/{source}",
                params=request.url.query or None,
                content=raw,
                headers=outbound,
            )
        except httpx.HTTPError as exc:
            log(f"{source}: not recorded: service unreachable ({type(exc).__name__}, 502)")
            return JSONResponse({"error": "service unreachable"}, status_code=502)
        status = upstream.status_code
        if 200 <= status < 300:
            document = _json_object(raw)
            if document is None:
                log(f"{source}: not recorded: body is not a JSON object ({status})")
            elif (name := await record(source, request, document, arrived)) is not None:
                # A fixture that cannot be written never changes the service's answer.
                log(f"{source}: recorded {name} ({status})")
        else:
            log(f"{source}: not recorded: the service answered {status}")
        response = Response(content=upstream.content, status_code=status)
        response.raw_headers.extend(
            (k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP
        )
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "recording"})

    return Starlette(
        routes=[
            Route("/webhooks/{source}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


# --- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySecrets:
    """The one secret replay authenticates or signs with, per source (never in a repr)."""

    freshdesk: str | None = field(default=None, repr=False)
    zendesk: str | None = field(default=None, repr=False)
    generic: str | None = field(default=None, repr=False)

    def of(self, source: str) -> str | None:
        value: str | None = getattr(self, source)
        return value


def gaps(
    offsets: Sequence[float], *, speed: float = 1.0, compress: bool = False, max_wait: float = 60
) -> list[float]:
    """Seconds to leave between the start of one request and the next, one per fixture
    (the first is 0): the recorded gap divided by ``speed``, at most ``max_wait``, none when
    ``compress``. Offsets out of order give no wait."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    result = [0.0] * len(offsets)
    if compress:
        return result
    for i in range(1, len(offsets)):
        gap = max(0.0, offsets[i] - offsets[i - 1]) / speed
        result[i] = min(gap, max(0.0, max_wait))
    return result


# The event time the service reads (and orders events by), per source: (wrapper, key).
EVENT_TIME_FIELDS = {
    "freshdesk": ("freshdesk_webhook", "ticket_updated_at"),
    "zendesk": ("zendesk_webhook", "ticket_updated_at"),
    "generic": (None, "updated_at"),
}


def shift_time_text(text: str, delta: timedelta) -> str:
    """``text`` (ISO-8601) moved by ``delta``, written in the same style (``Z`` or offset or no
    zone; fractions only if it had them); anything else unchanged."""
    stripped = text.strip()
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        return text
    moved = when + delta
    spec = "seconds" if moved.microsecond == 0 and "." not in stripped else "microseconds"
    rendered = moved.isoformat(timespec=spec)
    if stripped.endswith("Z") and rendered.endswith("+00:00"):
        rendered = rendered[: -len("+00:00")] + "Z"
    return rendered


def shift_event_time(source: str, body: Any, delta: timedelta) -> Any:
    """A copy of ``body`` with the event time the service reads (Freshdesk and Zendesk
    ``ticket_updated_at``, generic ``updated_at``) moved by ``delta``; nothing else changes."""
    wrapper, key = EVENT_TIME_FIELDS[source]
    if not isinstance(body, dict):
        return body
    if wrapper is not None and wrapper in body:  # as the parsers unwrap it
        inner = body[wrapper]
        return {**body, wrapper: _shift_key(inner, key, delta)}
    return _shift_key(body, key, delta)


def _shift_key(obj: Any, key: str, delta: timedelta) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
        return obj
    return {**obj, key: shift_time_text(obj[key], delta)}


def time_reference(fixtures: Sequence[Fixture]) -> datetime | None:
    """When the first fixture was recorded (from any fixture's ``recorded_at`` and the
    offsets), or None when no fixture says."""
    if not fixtures:
        return None
    for fixture in fixtures:
        if fixture.recorded_at is not None:
            return fixture.recorded_at - timedelta(
                seconds=fixture.offset_seconds - fixtures[0].offset_seconds
            )
    return None


def _generic_id(body: bytes) -> str:
    """A ``webhook-id`` for a fixture without one: derived from its content, so replaying
    the same fixture twice is a redelivery, as for a Freshdesk body."""
    return "msg_" + hashlib.sha256(b"generic\n" + body).hexdigest()[:32]


def signed_request(
    fixture: Fixture, secrets: ReplaySecrets, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers to send: the fixture's kept headers plus fresh credentials.

    Raises ``FixtureError`` when the source's secret is missing or unusable.
    """
    body = dumps_json(fixture.body).encode("utf-8")
    headers = {k: v for k, v in fixture.headers.items() if k in KEPT_HEADERS}
    headers.setdefault("content-type", "application/json")
    secret = secrets.of(fixture.source)
    if not secret:
        raise FixtureError(f"{fixture.path.name}: no {fixture.source} secret to sign with")
    if fixture.source == "freshdesk":
        token = base64.b64encode(b"ticketbridge-replay:" + secret.encode("utf-8"))
        headers["authorization"] = "Basic " + token.decode("ascii")
    elif fixture.source == "zendesk":
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers["x-zendesk-webhook-signature-timestamp"] = stamp
        headers["x-zendesk-webhook-signature"] = signatures.zendesk_signature(
            secret.encode("utf-8"), stamp, body
        )
    else:
        try:
            key = signatures.standard_secret(secret)
        except ValueError:
            raise FixtureError("the generic secret must be whsec_<base64> (or base64)") from None
        msg_id = headers.get("webhook-id") or _generic_id(body)
        stamp = str(int(now.timestamp()))
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = stamp
        headers["webhook-signature"] = signatures.standard_signature(key, msg_id, stamp, body)
    return body, headers


@dataclass(frozen=True)
class Sent:
    fixture: Fixture
    status: int | None  # None: no answer (connection refused, timeout)
    outcome: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _outcome(response: httpx.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return response.reason_phrase or "-"
    if not isinstance(answer, dict):
        return "-"
    if "outcome" in answer:
        parts = [str(answer["outcome"])]
        if "ticket_id" in answer:
            parts.append(f"ticket={answer['ticket_id']}")
        if "effects" in answer:
            parts.append(f"effects={answer['effects']}")
        return " ".join(parts)
    if "error" in answer:
        return f"error: {str(answer['error'])[:200]}"
    return "-"


def replay(
    fixtures: Sequence[Fixture],
    *,
    client: httpx.Client,
    secrets: ReplaySecrets,
    waits: Sequence[float],
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    shift_times: bool = True,
    report: Callable[[Sent], None] = lambda sent: None,
) -> list[Sent]:
    """POST each fixture to ``client``'s ``/webhooks/<source>``, in order.

    ``waits[i]`` is the time between the start of request ``i-1`` and of request ``i``
    (``gaps``); the time a request took counts towards the next wait. Credentials are made
    when the request goes out, so a slow replay never sends a stale signature.

    With ``shift_times`` every body's event time moves by one amount, whole seconds: from
    when the first fixture was recorded to when it is sent (``time_reference``). The
    recording's timeline then starts now and keeps its spacing and order, and a redelivery
    stays byte-identical to its first delivery.
    """
    reference = time_reference(fixtures) if shift_times else None
    delta: timedelta | None = None
    results: list[Sent] = []
    previous: float | None = None
    for fixture, wait in zip(fixtures, waits, strict=True):
        if previous is not None:
            remaining = wait - (monotonic() - previous)
            if remaining > 0:
                sleep(remaining)
        previous = monotonic()
        sending_at = now()
        if reference is not None and delta is None:
            delta = timedelta(seconds=round((sending_at - reference).total_seconds()))
        if delta is not None:
            fixture = replace(fixture, body=shift_event_time(fixture.source, fixture.body, delta))
        body, headers = signed_request(fixture, secrets, sending_at)
        try:
            response = client.post(f"/webhooks/{fixture.source}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            sent = Sent(fixture, None, f"no answer: {type(exc).__name__}")
        else:
            sent = Sent(fixture, response.status_code, _outcome(response))
        results.append(sent)
        report(sent)
    return results
