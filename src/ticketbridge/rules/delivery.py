"""Delivery policy: which new effects may go out at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LeasePlan:
    """Which new effects may go out at once (leased to the caller): those whose ticket has no
    open effect on their target, neither in the store nor earlier among the new ones."""

    __slots__ = ("_open",)

    def __init__(self, open_targets: set[tuple[str, str, str]]) -> None:
        self._open = open_targets

    def take(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (an effect about to be inserted) may be leased; it is open after."""
        key = (row["source"], row["ticket_id"], row["target"])
        if key in self._open:
            return False
        self._open.add(key)
        return True
