"""What every outbound sender returns when a call succeeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sent:
    """A successful vendor call: its HTTP status and what to store with the effect."""

    code: int
    info: dict[str, Any] = field(default_factory=dict)
