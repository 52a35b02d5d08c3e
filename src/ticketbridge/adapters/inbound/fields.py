"""Field readers shared by the signed-source parsers (Zendesk, generic): 422 on bad values."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ticketbridge.adapters.inbound.errors import MissingField

MAX_FIELD = 65536


def text(obj: dict[str, Any], name: str, *, prefix: str, required: bool) -> str:
    """A string (or integer) field, stripped; ``""`` when absent and optional."""
    field = f"{prefix}.{name}" if prefix else name
    value = obj.get(name)
    if value is None:
        if required:
            raise MissingField(field, "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MissingField(field, "must be a string")
    result = str(value).strip()
    if len(result) > MAX_FIELD:
        raise MissingField(field, "is too long")
    if required and not result:
        raise MissingField(field, "must not be empty")
    return result


def timestamp(obj: dict[str, Any], name: str, *, prefix: str) -> datetime | None:
    """An optional ISO-8601 timestamp (no zone: UTC)."""
    value = text(obj, name, prefix=prefix, required=False)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        field = f"{prefix}.{name}" if prefix else name
        raise MissingField(field, "must be an ISO-8601 timestamp") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def delivery_key(kind: str, delivery_id: str) -> str:
    """A dedup key from a sender's per-delivery id (hashed: any length, any bytes fit)."""
    return f"{kind}:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogateescape")).hexdigest()
