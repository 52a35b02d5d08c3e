"""A process-wide budget of request-body bytes held before their signature is checked."""

from __future__ import annotations


class BodyBudget:
    """Bytes of unverified bodies held at once, at most ``limit``: a body that would take more
    is refused (503) instead of read, so slow or forged bodies cannot fill memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes if they fit; False (nothing reserved) otherwise."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        """Return ``size`` bytes taken earlier."""
        self.used -= size
