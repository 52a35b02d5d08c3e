"""The composition root: builds the store, policy, adapters and workers from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx

from ticketbridge.adapters.outbound.freshdesk import FreshdeskApi
from ticketbridge.adapters.outbound.github import GitHubIssues
from ticketbridge.adapters.outbound.ports import HelpdeskTicket
from ticketbridge.adapters.outbound.statuspage.atlassian import AtlassianStatuspage
from ticketbridge.adapters.outbound.statuspage.sender import StatusPageSender
from ticketbridge.adapters.outbound.victorops import VictorOpsRest
from ticketbridge.adapters.outbound.victorops_bridge import (
    VictorOpsIncidentBridge,
    VictorOpsRoutingKeyBridge,
)
from ticketbridge.adapters.outbound.zendesk import STATUS_NAMES as ZENDESK_STATUS_NAMES
from ticketbridge.adapters.outbound.zendesk import ZendeskApi
from ticketbridge.adapters.store.sql import Store, UnitOfWork
from ticketbridge.app.clock import Clock, DatabaseClock, SystemClock
from ticketbridge.app.policy import load_policy
from ticketbridge.app.services.ingest import Incoming, IngestResult, PolicyBook, ingest, ingest_many
from ticketbridge.app.settings import Settings
from ticketbridge.app.workers.delivery import Sender
from ticketbridge.app.workers.group_commit import GroupCommit
from ticketbridge.app.workers.guard import TicketReader
from ticketbridge.rules import EventKind, Policy, TicketEvent

T = TypeVar("T")
STATUS_LABELS = {
    "freshdesk": {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"},
    "zendesk": ZENDESK_STATUS_NAMES,
}


# On PostgreSQL, the smallest group commit run on the event loop's thread (see GroupCommit).
PG_INLINE_FROM = 2
# On PostgreSQL, how long a group commit waits at most for company after a group of several
# (GroupCommit.linger). Two replicas under wrk, alternated with none: +22 %, +21 %, +25 % req/s.
# On SQLite a group costs little and waiting measured no gain (TICKETBRIDGE_GROUP_COMMIT_LINGER_MS).
PG_LINGER_MS = 4.0


@dataclass
class Services:
    """Everything the routes and workers use; tests build one with fakes."""

    settings: Settings
    store: Store
    policy: Policy
    clock: Clock = field(default_factory=SystemClock)
    senders: dict[str, Sender] | None = None
    readers: dict[str, TicketReader] | None = None
    http: httpx.AsyncClient | None = None
    db_limiter: anyio.CapacityLimiter | None = None
    # Effects of a committed webhook go out from the request's own process at once (leased
    # in the same transaction); off, they wait for the dispatcher's next claim.
    fast_path: bool = True
    policies: PolicyBook = field(init=False)
    writer: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.policies = PolicyBook(self.policy)
        self.writer = GroupCommit(
            store=self.store,
            run_db=self.run_db,
            # A batch's statements run on the event loop's thread, holding the store like any
            # other call (see ``GroupCommit``); not on an in-memory SQLite database (tests).
            inline=self.db_slot if self.store.supports_nowait else None,
            inline_from=1 if self.store.is_sqlite else PG_INLINE_FROM,
            linger=self.linger_ms / 1000,
        )

    @property
    def linger_ms(self) -> float:
        """The group commit's linger: the setting, else by backend (``PG_LINGER_MS``)."""
        chosen = self.settings.group_commit_linger_ms
        if chosen is not None:
            return chosen
        return 0.0 if self.store.is_sqlite else PG_LINGER_MS

    def ingest_many(self, uow: UnitOfWork, items: list[Incoming]) -> list[IngestResult]:
        """``services.ingest.ingest_many`` under this service's policies (the webhooks' group-commit
        job: see ``GroupCommit.submit_many``)."""
        configured = self.senders.keys() if self.senders is not None else None
        return ingest_many(uow, items, policies=self.policies, configured=configured)

    async def run_db(self, fn: Callable[[], T]) -> T:
        """Run a blocking store call in a worker thread (one writer at a time on SQLite)."""
        return await anyio.to_thread.run_sync(fn, limiter=self.db_slot())

    def db_slot(self) -> anyio.CapacityLimiter:
        """What a store call holds while it runs: as many as the store takes at once (one on
        SQLite)."""
        if self.db_limiter is None:
            self.db_limiter = anyio.CapacityLimiter(self.store.max_concurrency)
        return self.db_limiter

    async def reconcile(self, source: str, ticket: HelpdeskTicket) -> None:
        """Apply what the helpdesk API says about a ticket, as an event, through the rules."""
        event = TicketEvent(
            source=source,
            ticket_id=ticket.ticket_id,
            kind=EventKind.UPDATED,
            priority=ticket.priority,
            status=ticket.status,
            status_label=STATUS_LABELS.get(source, {}).get(
                ticket.status_code, f"Status {ticket.status_code}"
            ),
            change={"reread": "helpdesk API"},
        )
        stamp = ticket.updated_at.isoformat() if ticket.updated_at else "-"
        key = f"api:{ticket.ticket_id}:{stamp}:{ticket.priority.value}:{ticket.status_code}"
        now = self.clock.now()
        await self.run_db(
            lambda: ingest(self.store, event=event, dedup_key=key, now=now, policies=self.policies)
        )


def build_services(settings: Settings, **overrides: Any) -> Services:
    """Services from settings; ``overrides`` replace any part (clock, store, policy...)."""
    store = overrides.pop("store", None) or Store(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        stall_seconds=settings.stall_seconds,
    )
    policy = overrides.pop("policy", None) or load_policy(settings.policy_file)
    if "clock" not in overrides:
        use_database = settings.clock == "database" or (
            settings.clock == "auto" and not store.is_sqlite
        )
        overrides["clock"] = DatabaseClock(store.database_time) if use_database else SystemClock()
    return Services(settings=settings, store=store, policy=policy, **overrides)


def build_senders(settings: Settings, http: httpx.AsyncClient) -> dict[str, Sender]:
    """One sender per configured target; a target left out is recorded as skipped."""
    senders: dict[str, Sender] = {}
    vo = settings.victorops
    if vo.rest_url is not None:
        senders["victorops"] = VictorOpsRest(rest_url=vo.rest_url.get_secret_value(), client=http)
    if vo.api_id is not None and vo.api_key is not None and vo.tier_two_policy:
        # The public API wins when both bridge modes are configured.
        senders["victorops_bridge"] = VictorOpsIncidentBridge(
            api_url=vo.api_url,
            api_id=vo.api_id.get_secret_value(),
            api_key=vo.api_key.get_secret_value(),
            escalation_policy=vo.tier_two_policy,
            bridge_url=vo.bridge_url,
            bridge_phone=vo.bridge_phone,
            client=http,
        )
    elif vo.tier_two_routing_key is not None and vo.rest_url is not None:
        senders["victorops_bridge"] = VictorOpsRoutingKeyBridge(
            rest_url=vo.rest_url.get_secret_value(),
            routing_key=vo.tier_two_routing_key.get_secret_value(),
            client=http,
        )
    freshdesk = build_freshdesk(settings, http)
    if freshdesk is not None:
        senders["freshdesk"] = freshdesk
    zd = settings.zendesk
    if zd.api_url is not None and zd.api_email is not None and zd.api_token is not None:
        senders["zendesk"] = ZendeskApi(
            api_url=zd.api_url,
            email=zd.api_email,
            api_token=zd.api_token.get_secret_value(),
            client=http,
            calls_per_minute=zd.calls_per_minute,
        )
    gh = settings.github
    if gh.token is not None and gh.repository:
        senders["github"] = GitHubIssues(
            api_url=gh.api_url,
            token=gh.token.get_secret_value(),
            repository=gh.repository,
            client=http,
            creations_per_minute=gh.creations_per_minute,
        )
    sp = settings.statuspage
    if sp.api_key is not None and sp.page_id:
        senders["statuspage"] = StatusPageSender(
            AtlassianStatuspage(
                api_url=sp.api_url,
                api_key=sp.api_key.get_secret_value(),
                page_id=sp.page_id,
                client=http,
                components=sp.components,
                requests_per_second=sp.requests_per_second,
            )
        )
    return senders


def build_freshdesk(settings: Settings, http: httpx.AsyncClient) -> FreshdeskApi | None:
    fd = settings.freshdesk
    if fd.api_url is None or fd.api_key is None:
        return None
    return FreshdeskApi(
        api_url=fd.api_url,
        api_key=fd.api_key.get_secret_value(),
        client=http,
        calls_per_minute=fd.calls_per_minute,
    )


def build_readers(settings: Settings, senders: dict[str, Sender]) -> dict[str, TicketReader]:
    """Helpdesk APIs to re-read tickets from before effects that matter."""
    readers: dict[str, TicketReader] = {}
    freshdesk = senders.get("freshdesk")
    if settings.freshdesk.reread and isinstance(freshdesk, FreshdeskApi):
        readers["freshdesk"] = freshdesk
    zendesk = senders.get("zendesk")
    if settings.zendesk.reread and isinstance(zendesk, ZendeskApi):
        readers["zendesk"] = zendesk
    return readers
