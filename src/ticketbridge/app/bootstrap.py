"""The composition root: builds the store, policy, adapters and workers from settings.

``build_services`` makes what the routes use; once the app's lifespan runs, ``open_store``
readies the database and ``build_workers`` wires the vendor clients, the guard, the
dispatcher, the scheduler and the cross-replica wake-ups into the ``Workers`` the lifespan
starts and stops. Nothing here does any work at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx
import structlog

import ticketbridge
from ticketbridge.adapters.outbound.freshdesk import FreshdeskApi
from ticketbridge.adapters.outbound.github.issues import GitHubIssues
from ticketbridge.adapters.outbound.ports import HelpdeskTicket
from ticketbridge.adapters.outbound.statuspage.atlassian import AtlassianStatuspage
from ticketbridge.adapters.outbound.statuspage.sender import StatusPageSender
from ticketbridge.adapters.outbound.victorops import VictorOpsRest
from ticketbridge.adapters.outbound.victorops_bridge import (
    VictorOpsIncidentBridge,
    VictorOpsRoutingKeyBridge,
)
from ticketbridge.adapters.outbound.zendesk import ZendeskApi
from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.store.rows import Announcement
from ticketbridge.adapters.store.unit_of_work import UnitOfWork
from ticketbridge.app.clock import Clock, DatabaseClock, SystemClock
from ticketbridge.app.policy_file import load_policy
from ticketbridge.app.services.ingest import (
    Incoming,
    IngestResult,
    PolicyBook,
    ingest,
    ingest_many,
    reread_event,
)
from ticketbridge.app.settings import Settings
from ticketbridge.app.workers.delivery import Sender
from ticketbridge.app.workers.dispatcher import Dispatcher
from ticketbridge.app.workers.group_commit import GroupCommit
from ticketbridge.app.workers.guard import EffectGuard, TicketReader
from ticketbridge.app.workers.lifecycle import Workers
from ticketbridge.app.workers.scheduler import Scheduler
from ticketbridge.app.workers.wakeups import PgWakeups
from ticketbridge.rules import Policy

if TYPE_CHECKING:  # metrics reads the app's state through http.deps, which imports this
    from ticketbridge.app.metrics import Metrics

T = TypeVar("T")
log = structlog.get_logger("ticketbridge")


# On PostgreSQL, the smallest group commit run on the event loop's thread (see GroupCommit).
PG_INLINE_FROM = 2
# On PostgreSQL, how long a group commit waits at most for company after a group of several
# (GroupCommit.linger): each transaction costs round trips, so fewer, fuller groups serve more
# webhooks. On SQLite a group costs little and waiting gains nothing; either way the setting
# TICKETBRIDGE_GROUP_COMMIT_LINGER_MS overrides it.
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
        event, key = reread_event(source, ticket)
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


async def open_store(svc: Services) -> None:
    """Ready the database for this process: migrate (if configured) and check the schema,
    measure the database clock, store the current policy, and (SQLite) void leases."""
    if svc.settings.migrate_on_start:
        await svc.run_db(svc.store.migrate)
    current, head = await svc.run_db(svc.store.schema_revisions)
    if current != head:
        raise RuntimeError(
            f"database schema is at {current}, this version needs {head}: "
            "run `ticketbridge migrate` (or set TICKETBRIDGE_MIGRATE_ON_START=true)"
        )
    db_clock = svc.clock
    if isinstance(db_clock, DatabaseClock):
        offset = await svc.run_db(db_clock.sync)
        log.info("clock.database", offset_s=round(offset, 4), round_trip_s=db_clock.round_trip)
    await svc.run_db(
        lambda: svc.policies.remember_current(svc.store, at=svc.clock.now().timestamp())
    )
    if svc.store.is_sqlite:
        # One process owns a SQLite file: leases left by a killed predecessor are void.
        await svc.run_db(svc.store.release_leases)


def build_workers(svc: Services, metrics: Metrics, *, run: bool = True) -> Workers:
    """Wire the workers of ``svc`` (its HTTP client, senders and readers made when not given);
    called on the event loop that will run them."""
    cfg = svc.settings
    own_http = svc.http is None
    if svc.http is None:
        svc.http = build_http(cfg)
    if svc.senders is None:
        svc.senders = build_senders(cfg, svc.http)
    if svc.readers is None:
        svc.readers = build_readers(cfg, svc.senders)
    guard = EffectGuard(
        store=svc.store, run_db=svc.run_db, readers=svc.readers, reconcile=svc.reconcile
    )
    dispatcher = Dispatcher(
        store=svc.store,
        senders=svc.senders,
        clock=svc.clock,
        settings=cfg.dispatch,
        run_db=svc.run_db,
        guard=guard,
        writer=svc.writer,
        on_outcome=metrics.effect,
        on_breach=metrics.breach,
    )
    scheduler = Scheduler(
        store=svc.store,
        policies=svc.policies,
        clock=svc.clock,
        run_db=svc.run_db,
        on_effects=dispatcher.wake,
        batch_size=cfg.scheduler.batch_size,
        poll_seconds=cfg.scheduler.poll_seconds,
        on_fired=lambda run: metrics.timers_fired(run.latenesses, run.breaches),
    )
    metrics.watch_store(svc.store.outbox_stats, svc.clock)

    async def close_http() -> None:
        if svc.http is not None:
            await svc.http.aclose()
            svc.http = None

    wakeups = None
    conninfo = svc.store.listen_conninfo()
    if run and conninfo is not None:

        def wake_workers(said: Announcement) -> None:
            """Another replica committed work: wake only the workers it concerns."""
            if said.effects is None or said.effects > 0:
                dispatcher.heard_others()
            if said.timer is not None:
                scheduler.wake_if_earlier(said.timer)
            elif said.effects is None:
                scheduler.wake()

        wakeups = PgWakeups(
            conninfo, wake_workers, asyncio.get_running_loop(), svc.store.is_own_backend
        )
        dispatcher.listen(wakeups.listening.is_set)
    return Workers(
        guard=guard,
        dispatcher=dispatcher,
        scheduler=scheduler,
        writer=svc.writer,
        wakeups=wakeups,
        db_clock=svc.clock if isinstance(svc.clock, DatabaseClock) else None,
        run_db=svc.run_db,
        run=run,
        close_http=close_http if own_http else None,
    )


def build_http(cfg: Settings) -> httpx.AsyncClient:
    """The HTTP client every vendor call shares."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(cfg.dispatch.http_timeout, connect=5.0),
        # httpcore checks every idle connection (a syscall each) on every request, so the
        # pool keeps no more idle ones than a burst per target opens at most.
        limits=httpx.Limits(max_keepalive_connections=cfg.dispatch.concurrency_per_target),
        headers={"User-Agent": f"ticketbridge/{ticketbridge.__version__}"},
    )
