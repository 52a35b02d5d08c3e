"""Signed-webhook verifiers: Zendesk's HMAC scheme and Standard Webhooks.

Sans I/O: each verifier takes the raw body, the header values as received and the current
time, and returns ``None`` or raises ``Unauthorized``. Nothing else escapes, whatever the
input: a missing, oversized, non-ASCII or structurally broken header is ``Unauthorized`` too
(401 with no detail, as for Freshdesk: telling a forger *why* a signature failed helps them).

Common rules:

- verify the raw bytes, before anything parses them;
- a list of active secrets (rotation): any one may match, every one is compared, each in
  constant time (``hmac.compare_digest``), so timing does not tell which matched;
- an empty secret never verifies;
- replay protection: the signed timestamp must be within ``tolerance`` seconds of ``now``,
  both ways (clock skew); a replay inside the window is caught by the parser's dedup key,
  built only from what the signature covers (``zendesk.parse_webhook``,
  ``generic.parse_webhook``), and by the rules' stale check on the signed time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime

from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.adapters.inbound.fields import ascii_digits

TOLERANCE_SECONDS = 300
MAX_HEADER = 8192  # any real signature header is far shorter
MAX_SIGNATURES = 16  # Standard Webhooks entries looked at per request
WHSEC_PREFIX = "whsec_"


def _ascii(value: str | None) -> str:
    """The header value if present, short and printable ASCII; else Unauthorized."""
    if value is None or len(value) > MAX_HEADER:
        raise Unauthorized()
    value = value.strip(" \t")  # HTTP's optional whitespace only
    if not value or not value.isascii() or not value.isprintable():
        raise Unauthorized()
    return value


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _within(signed_at: float, now: datetime, tolerance: int) -> None:
    if abs(now.timestamp() - signed_at) > tolerance:
        raise Unauthorized()


def _matches(presented: Sequence[bytes], secrets: Sequence[bytes], message: bytes) -> bool:
    """True if any presented digest equals HMAC-SHA256(secret, message) for any secret.

    No early exit: every pair is compared, so the time taken does not depend on which matched.
    """
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        for digest in presented:
            if hmac.compare_digest(digest, expected):
                matched = True
    return matched


# --- Zendesk ---------------------------------------------------------------------------------


def zendesk_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Zendesk-Webhook-Signature`` Zendesk sends: base64(HMAC-SHA256(ts + body))."""
    digest = hmac.new(secret, timestamp.encode("ascii") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def zendesk_time(timestamp: str | None) -> datetime:
    """The instant an ``X-Zendesk-Webhook-Signature-Timestamp`` names; else Unauthorized."""
    signed_ts = _ascii(timestamp)
    try:
        when = datetime.fromisoformat(signed_ts.replace("Z", "+00:00"))
    except ValueError:
        raise Unauthorized() from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        when.timestamp()
    except (OverflowError, OSError, ValueError):
        raise Unauthorized() from None
    return when


def standard_time(timestamp: str | None) -> datetime:
    """The instant a ``webhook-timestamp`` (unix seconds) names; else Unauthorized."""
    signed_ts = _ascii(timestamp)
    if not ascii_digits(signed_ts) or len(signed_ts) > 12:
        raise Unauthorized()
    try:
        return datetime.fromtimestamp(int(signed_ts), UTC)
    except (OverflowError, OSError, ValueError):
        raise Unauthorized() from None


def verify_zendesk(
    *,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    secrets: Sequence[bytes],
    now: datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Check ``X-Zendesk-Webhook-Signature`` / ``-Signature-Timestamp`` against ``secrets``.

    The signed message is the timestamp header exactly as sent, followed by the raw body with
    no separator. The timestamp is ISO-8601 (Zendesk sends ``2024-04-17T17:18:10Z``); one
    without a zone is read as UTC.
    """
    signed_ts = _ascii(timestamp)
    presented = _b64(_ascii(signature))
    if presented is None or len(presented) != hashlib.sha256().digest_size:
        raise Unauthorized()
    _within(zendesk_time(signed_ts).timestamp(), now, tolerance)
    if not _matches([presented], secrets, signed_ts.encode("ascii") + body):
        raise Unauthorized()


# --- Standard Webhooks (https://www.standardwebhooks.com/) ------------------------------------


def standard_secret(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret: base64 after an optional ``whsec_``.

    Raises ``ValueError`` for a secret that is not base64 (the settings refuse it at start).
    """
    text = secret.strip()
    if text.startswith(WHSEC_PREFIX):
        text = text[len(WHSEC_PREFIX) :]
    key = _b64(text)
    if not key:
        raise ValueError("must be base64, optionally prefixed with whsec_")
    return key


def standard_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """One ``webhook-signature`` entry, ``v1,<base64>``, as a sender computes it."""
    message = f"{msg_id}.{timestamp}.".encode("ascii") + body
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_standard(
    *,
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    keys: Sequence[bytes],
    now: datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Check ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` against ``keys``.

    ``keys`` are decoded secrets (``standard_secret``). The signature header holds
    space-separated ``version,base64`` entries; ``v1`` entries are HMAC-SHA256 over
    ``id.timestamp.body``, and any one matching any key verifies (rotation on both sides).
    Entries of other versions (``v1a``: asymmetric) are ignored.
    """
    identifier = _ascii(msg_id)
    signed_ts = _ascii(timestamp)
    header = _ascii(signature)
    _within(standard_time(signed_ts).timestamp(), now, tolerance)
    presented: list[bytes] = []
    for entry in header.split()[:MAX_SIGNATURES]:
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        digest = _b64(encoded)
        if digest is not None and len(digest) == hashlib.sha256().digest_size:
            presented.append(digest)
    if not presented:
        raise Unauthorized()
    message = f"{identifier}.{signed_ts}.".encode("ascii") + body
    if not _matches(presented, keys, message):
        raise Unauthorized()
