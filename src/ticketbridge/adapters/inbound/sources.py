"""The inbound webhook sources, each written once: the headers it reads, how its credentials are
checked, how its body is parsed and how a sender signs a request.

The webhook routes, the recording proxy's check and replay's signing all read this table, so a
source's rules cannot drift apart between them. Sans I/O: every function takes the raw body and
the request's headers as received (``Headers``) and returns, or raises an ``InboundError``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ticketbridge.adapters.inbound import freshdesk, generic, signatures, zendesk
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.rules.model import TicketEvent

# A request's headers by lower-case name, the first value of each, as the server received them.
Headers = Mapping[bytes, bytes]

_AUTHORIZATION = "authorization"
_ZD_SIGNATURE = "x-zendesk-webhook-signature"
_ZD_TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
_WH_ID = "webhook-id"
_WH_TIMESTAMP = "webhook-timestamp"
_WH_SIGNATURE = "webhook-signature"
# The same names as received (ASGI header names are lower-case bytes).
_AUTHORIZATION_B = _AUTHORIZATION.encode()
_ZD_SIGNATURE_B = _ZD_SIGNATURE.encode()
_ZD_TIMESTAMP_B = _ZD_TIMESTAMP.encode()
_WH_ID_B = _WH_ID.encode()
_WH_TIMESTAMP_B = _WH_TIMESTAMP.encode()
_WH_SIGNATURE_B = _WH_SIGNATURE.encode()
# The user replay presents in Freshdesk's Basic credentials (the service reads the password only).
REPLAY_USER = b"ticketbridge-replay"


def first_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The ASGI header pairs by name, the first of each name kept, in one pass."""
    return dict(reversed(raw if isinstance(raw, list) else list(raw)))


def _text(headers: Headers, name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Source:
    """One webhook source: ``verify`` raises ``Unauthorized`` unless the request carries valid
    credentials for one of ``keys`` (``key`` turns a configured secret into one); ``parse``
    turns a verified body into ``(event, dedup_key)``; ``sign`` adds a sender's credentials
    to ``headers`` for ``body`` (``ValueError`` for an unusable secret)."""

    name: str
    # Lower-case names of the headers ``verify`` and ``parse`` read.
    headers: tuple[str, ...]
    # True: the credentials cover the body, which is read (within the budget of unverified
    # bytes) before ``verify``. False: they are in the headers alone and are checked before the
    # body is read; ``verify`` then ignores ``raw`` and ``now``.
    signs_body: bool
    # WWW-Authenticate on a 401, for a source whose sender answers a challenge.
    challenge: str | None
    # (wrapper object or None, key): the event time the parser reads.
    event_time: tuple[str | None, str]
    key: Callable[[str], bytes]
    verify: Callable[[Headers, bytes, Sequence[bytes], datetime | None], None]
    parse: Callable[[bytes, Headers], tuple[TicketEvent, str]]
    sign: Callable[[bytes, dict[str, str], str, datetime], None]


def _required(now: datetime | None) -> datetime:
    """The time a signed request is checked at: without one its freshness cannot be shown."""
    if now is None:
        raise Unauthorized()
    return now


def _utf8(secret: str) -> bytes:
    return secret.encode()


# --- Freshdesk: a shared secret as the Basic password (or Bearer token) ----------------------


def _freshdesk_verify(
    headers: Headers, raw: bytes, keys: Sequence[bytes], now: datetime | None
) -> None:
    value = headers.get(_AUTHORIZATION_B)
    check_shared_secret(None if value is None else value.decode("latin-1"), keys)


def _freshdesk_parse(raw: bytes, headers: Headers) -> tuple[TicketEvent, str]:
    return freshdesk.parse_webhook(raw)


def _freshdesk_sign(body: bytes, headers: dict[str, str], secret: str, now: datetime) -> None:
    token = base64.b64encode(REPLAY_USER + b":" + secret.encode("utf-8"))
    headers[_AUTHORIZATION] = "Basic " + token.decode("ascii")


# --- Zendesk: HMAC over the signed timestamp and the body ------------------------------------


def _zendesk_verify(
    headers: Headers, raw: bytes, keys: Sequence[bytes], now: datetime | None
) -> None:
    signatures.verify_zendesk(
        body=raw,
        signature=_text(headers, _ZD_SIGNATURE_B),
        timestamp=_text(headers, _ZD_TIMESTAMP_B),
        secrets=keys,
        now=_required(now),
    )


def _zendesk_parse(raw: bytes, headers: Headers) -> tuple[TicketEvent, str]:
    return zendesk.parse_webhook(raw, _text(headers, _ZD_TIMESTAMP_B))


def _zendesk_sign(body: bytes, headers: dict[str, str], secret: str, now: datetime) -> None:
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers[_ZD_TIMESTAMP] = stamp
    headers[_ZD_SIGNATURE] = signatures.zendesk_signature(secret.encode("utf-8"), stamp, body)


# --- generic: Standard Webhooks ---------------------------------------------------------------


def _generic_verify(
    headers: Headers, raw: bytes, keys: Sequence[bytes], now: datetime | None
) -> None:
    signatures.verify_standard(
        body=raw,
        msg_id=_text(headers, _WH_ID_B),
        timestamp=_text(headers, _WH_TIMESTAMP_B),
        signature=_text(headers, _WH_SIGNATURE_B),
        keys=keys,
        now=_required(now),
    )


def _generic_parse(raw: bytes, headers: Headers) -> tuple[TicketEvent, str]:
    return generic.parse_webhook(
        raw, _text(headers, _WH_ID_B), signed_at=_text(headers, _WH_TIMESTAMP_B)
    )


def _generic_id(body: bytes) -> str:
    """A ``webhook-id`` for a request without one: derived from its content, so sending the
    same body twice is a redelivery, as for a Freshdesk body."""
    return "msg_" + hashlib.sha256(b"generic\n" + body).hexdigest()[:32]


def _generic_sign(body: bytes, headers: dict[str, str], secret: str, now: datetime) -> None:
    try:
        key = signatures.standard_secret(secret)
    except ValueError:
        raise ValueError("must be whsec_<base64> (or base64)") from None
    msg_id = headers.get(_WH_ID) or _generic_id(body)
    stamp = str(int(now.timestamp()))
    headers[_WH_ID] = msg_id
    headers[_WH_TIMESTAMP] = stamp
    headers[_WH_SIGNATURE] = signatures.standard_signature(key, msg_id, stamp, body)


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            name="freshdesk",
            headers=(_AUTHORIZATION,),
            signs_body=False,
            challenge='Basic realm="ticketbridge"',
            event_time=(freshdesk.WRAPPER, "ticket_updated_at"),
            key=_utf8,
            verify=_freshdesk_verify,
            parse=_freshdesk_parse,
            sign=_freshdesk_sign,
        ),
        Source(
            name="zendesk",
            headers=(_ZD_SIGNATURE, _ZD_TIMESTAMP),
            signs_body=True,
            challenge=None,
            event_time=(zendesk.WRAPPER, "ticket_updated_at"),
            key=_utf8,
            verify=_zendesk_verify,
            parse=_zendesk_parse,
            sign=_zendesk_sign,
        ),
        Source(
            name="generic",
            headers=(_WH_ID, _WH_TIMESTAMP, _WH_SIGNATURE),
            signs_body=True,
            challenge=None,
            event_time=(None, "updated_at"),
            key=signatures.standard_secret,
            verify=_generic_verify,
            parse=_generic_parse,
            sign=_generic_sign,
        ),
    )
}
