"""Checks every vendor client applies to what it sends and to what a vendor sends back.

``vendor`` is the vendor's name as messages show it ("Freshdesk"); every error here is final
(``retryable=False``): a malformed answer or a refused id does not improve on retry.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

import httpx

from ticketbridge.adapters.outbound.errors import AdapterError


def is_int(value: object) -> TypeGuard[int]:
    """True for an int that is not a bool (JSON's ``true`` is not an id)."""
    return isinstance(value, int) and not isinstance(value, bool)


def malformed(vendor: str, what: str) -> AdapterError:
    """The error for an answer that does not hold what ``what`` must."""
    return AdapterError(f"{vendor} sent a malformed {what}", retryable=False)


def json_of(response: httpx.Response, vendor: str, what: str) -> Any:
    """The answer's JSON document, or ``malformed``."""
    try:
        return response.json()
    except ValueError:
        raise malformed(vendor, what) from None


def optional_int(data: dict[str, Any], key: str, vendor: str) -> int | None:
    """``data[key]`` when it is an int, None when absent or null; else ``malformed``."""
    value = data.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise malformed(vendor, f"ticket ({key})")
    return int(value)


def checked_id(value: object, pattern: re.Pattern[str], what: str, *, numbers: bool) -> str:
    """``value`` as a URL path segment: text ``pattern`` matches whole or, with ``numbers``, a
    positive int whose digits it matches; else a final error naming ``what``. So no payload can
    reach another path."""
    if numbers and is_int(value) and value > 0 and pattern.fullmatch(str(value)):
        return str(value)
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise AdapterError(f"invalid {what} {str(value)[:40]!r}", retryable=False)
