"""Field readers shared by the signed-source parsers (Zendesk, generic): 422 on bad values."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ticketbridge.adapters.inbound.errors import MissingField

MAX_FIELD = 65536
MAX_NAMES = 100
MAX_NAME = 100
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off", ""})


def _field(prefix: str, name: str) -> str:
    """The name an error gives: ``prefix.name``, or ``name`` alone without a prefix."""
    return f"{prefix}.{name}" if prefix else name


def text(obj: dict[str, Any], name: str, *, prefix: str, required: bool) -> str:
    """A string (or integer) field, stripped; ``""`` when absent and optional."""
    # Read for every field of every webhook: the usual case (a string) is tested first, and
    # the field's full name is built only for an error.
    value = obj.get(name)
    if isinstance(value, str):
        result = value.strip()
    elif value is None:
        if required:
            raise MissingField(_field(prefix, name), "is required")
        return ""
    elif isinstance(value, int) and not isinstance(value, bool):
        result = str(value).strip()
    else:
        raise MissingField(_field(prefix, name), "must be a string")
    if len(result) > MAX_FIELD:
        raise MissingField(_field(prefix, name), "is too long")
    if required and not result:
        raise MissingField(_field(prefix, name), "must not be empty")
    return result


def ascii_digits(value: str) -> bool:
    """True for one or more of the digits 0-9 and nothing else."""
    # str.isdigit() alone also takes "²", "①" and "١٢٣" (int() reads the last as 123): no
    # helpdesk writes an id so, and reading one as a number would renumber a ticket.
    return value.isascii() and value.isdigit()


def ticket_number(obj: dict[str, Any], name: str, *, prefix: str) -> str:
    """A required ticket number as a helpdesk writes it (up to 20 ASCII digits), normalized."""
    value = text(obj, name, prefix=prefix, required=True)
    if not ascii_digits(value) or len(value) > 20:
        raise MissingField(_field(prefix, name), "must be a ticket number (digits 0-9)")
    return str(int(value))


def timestamp(obj: dict[str, Any], name: str, *, prefix: str) -> datetime | None:
    """An optional ISO-8601 timestamp (no zone: UTC) from 2000 to 2099.

    The rules plan a new ticket's timers from it (response windows, business days), which
    near either end of ``datetime``'s range would overflow: such a value is refused here.
    """
    value = text(obj, name, prefix=prefix, required=False)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MissingField(_field(prefix, name), "must be an ISO-8601 timestamp") from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    try:
        in_range = EARLIEST <= when.astimezone(UTC) < LATEST
    except OverflowError:  # past either end of datetime's range once in UTC
        in_range = False
    if not in_range:
        raise MissingField(_field(prefix, name), "must be a time from 2000 to 2099")
    return when


def delivery_key(kind: str, delivery_id: str) -> str:
    """A dedup key from a sender's per-delivery id (hashed: any length, any bytes fit)."""
    return f"{kind}:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogateescape")).hexdigest()


def signed_key(kind: str, signed_at: str, raw: bytes) -> str:
    """A dedup key from a signed timestamp and the raw body it was signed with."""
    digest = hashlib.sha256(signed_at.encode("ascii", "surrogateescape") + b"\n" + raw)
    return f"{kind}:{digest.hexdigest()}"


def flag(obj: dict[str, Any], name: str, *, prefix: str) -> bool | None:
    """An optional yes/no field (a JSON boolean, or true/false/yes/no/1/0 as a helpdesk's
    checkbox placeholder renders it); None when absent."""
    if name not in obj:
        return None
    value = obj[name]
    if isinstance(value, bool):
        return value
    word = text(obj, name, prefix=prefix, required=False).lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise MissingField(_field(prefix, name), "must be true or false")


def names(
    obj: dict[str, Any], name: str, *, prefix: str, separators: str = ","
) -> tuple[str, ...] | None:
    """An optional list of short names: a JSON list of strings, or one string split on
    ``separators``; None when absent. At most 100 names of up to 100 characters each."""
    if name not in obj or obj[name] is None:
        return None
    value = obj[name]
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise MissingField(_field(prefix, name), "must be a list of strings")
        items: list[str] = value
    else:
        raw = text(obj, name, prefix=prefix, required=False)
        for sep in separators[1:]:
            raw = raw.replace(sep, separators[0])
        items = raw.split(separators[0]) if separators[0] != " " else raw.split()
    found = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if len(found) > MAX_NAMES or any(len(i) > MAX_NAME for i in found):
        raise MissingField(
            _field(prefix, name), f"at most {MAX_NAMES} names of up to {MAX_NAME} characters"
        )
    return found
