"""Shared-secret checks for senders that cannot sign (Freshdesk automation webhooks)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from ticketbridge.adapters.inbound.errors import Unauthorized

MAX_AUTH_HEADER = 8192


def presented_secret(authorization: str | None) -> bytes | None:
    """The secret a request presents: the Basic password (any user) or the Bearer token."""
    if not authorization or len(authorization) > MAX_AUTH_HEADER:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return rest.encode("utf-8", "surrogateescape")
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
