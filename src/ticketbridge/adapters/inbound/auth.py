"""Shared-secret checks for senders that cannot sign (Freshdesk automation webhooks)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from ticketbridge.adapters.inbound.errors import Unauthorized

MAX_AUTH_HEADER = 8192
OWS = " \t"  # HTTP's optional whitespace (RFC 9110, section 5.6.3)


def _wire_bytes(value: str) -> bytes:
    """The bytes a header value arrived as: the server decodes them as latin-1."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (a recorded fixture's text): as UTF-8
        return value.encode("utf-8", "surrogateescape")


def presented_secret(authorization: str | None) -> bytes | None:
    """The secret a request presents: the Basic password (any user) or the Bearer token."""
    if not authorization or len(authorization) > MAX_AUTH_HEADER:
        return None
    # Only HTTP's own whitespace is trimmed: str.strip() would also drop a trailing NBSP or
    # "\x85", and a secret that differs from the configured one by those must not match.
    scheme, _, rest = authorization.strip(OWS).partition(" ")
    rest = rest.strip(OWS)
    if scheme.lower() == "bearer" and rest:
        return _wire_bytes(rest)
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(rest.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        _, sep, password = decoded.partition(b":")
        return password if sep else None
    return None


def check_shared_secret(authorization: str | None, secrets: Sequence[bytes]) -> None:
    """Raise Unauthorized unless the request presents one of ``secrets``.

    Every configured secret is compared (constant time each) so the answer's timing does
    not tell which one, or how much of one, matched. An empty secret never verifies: it
    would match an empty password, which anyone can send.
    """
    presented = presented_secret(authorization)
    if presented is None:
        raise Unauthorized()
    matched = False
    for secret in secrets:
        if secret and hmac.compare_digest(presented, secret):
            matched = True
    if not matched:
        raise Unauthorized()
