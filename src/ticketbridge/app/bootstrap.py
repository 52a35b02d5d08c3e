"""The composition root: builds the store, policy, adapters and workers from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx

from ticketbridge.adapters.outbound.victorops import VictorOpsRest
from ticketbridge.adapters.store.sql import Store
from ticketbridge.app.clock import Clock, SystemClock
from ticketbridge.app.dispatcher import Sender
from ticketbridge.app.policy import load_policy
from ticketbridge.app.settings import Settings
from ticketbridge.rules import Policy

T = TypeVar("T")


@dataclass
class Services:
    """Everything the routes and workers use; tests build one with fakes."""

    settings: Settings
    store: Store
    policy: Policy
    clock: Clock = field(default_factory=SystemClock)
    senders: dict[str, Sender] | None = None
    http: httpx.AsyncClient | None = None
    db_limiter: anyio.CapacityLimiter | None = None

    async def run_db(self, fn: Callable[[], T]) -> T:
        """Run a blocking store call in a worker thread (one writer at a time on SQLite)."""
        if self.db_limiter is None:
            self.db_limiter = anyio.CapacityLimiter(1 if self.store.is_sqlite else 16)
        return await anyio.to_thread.run_sync(fn, limiter=self.db_limiter)


def build_services(settings: Settings, **overrides: Any) -> Services:
    """Services from settings; ``overrides`` replace any part (clock, store, policy...)."""
    store = overrides.pop("store", None) or Store(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    policy = overrides.pop("policy", None) or load_policy(settings.policy_file)
    return Services(settings=settings, store=store, policy=policy, **overrides)


def build_senders(settings: Settings, http: httpx.AsyncClient) -> dict[str, Sender]:
    """One sender per configured target; a target left out is recorded as skipped."""
    senders: dict[str, Sender] = {}
    if settings.victorops.rest_url is not None:
        senders["victorops"] = VictorOpsRest(
            rest_url=settings.victorops.rest_url.get_secret_value(), client=http
        )
    return senders
