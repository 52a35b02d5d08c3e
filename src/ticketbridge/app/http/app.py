"""``create_app``: the FastAPI application, its lifespan and its workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import ticketbridge
from ticketbridge.adapters.store.rows import Announcement
from ticketbridge.adapters.urls import redact_url
from ticketbridge.app.bootstrap import Services, build_readers, build_senders, build_services
from ticketbridge.app.clock import DatabaseClock
from ticketbridge.app.http.direct import WEBHOOKS, Direct, DirectApp
from ticketbridge.app.http.middleware import RequestContext
from ticketbridge.app.http.routes import admin, effects, health, metrics, simulate, webhooks
from ticketbridge.app.metrics import Metrics
from ticketbridge.app.settings import Settings, load_settings
from ticketbridge.app.workers.dispatcher import Dispatcher
from ticketbridge.app.workers.guard import EffectGuard
from ticketbridge.app.workers.scheduler import Scheduler
from ticketbridge.app.workers.wakeups import PgWakeups

log = structlog.get_logger("ticketbridge")


def _warn_about_settings(services: Services) -> None:
    s = services.settings
    if not s.freshdesk.webhook_secrets:
        log.warning(
            "config.freshdesk_webhook_secrets_unset",
            effect="POST /webhooks/freshdesk refuses every request with 401",
            fix="set TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS",
        )
    if s.freshdesk.api_url is None or s.freshdesk.api_key is None:
        log.warning(
            "config.freshdesk_api_unset",
            effect="helpdesk effects (notes, reassign, close) are recorded as skipped; no re-read",
            fix="set TICKETBRIDGE_FRESHDESK__API_URL and TICKETBRIDGE_FRESHDESK__API_KEY",
        )
    if s.victorops.rest_url is None:
        log.warning(
            "config.victorops_rest_url_unset",
            effect="VictorOps effects are recorded as skipped",
            fix="set TICKETBRIDGE_VICTOROPS__REST_URL",
        )
    if s.github.token is None or not s.github.repository:
        log.info(
            "config.github_unset",
            effect="write-up and follow-up issues are recorded as skipped",
            fix="set TICKETBRIDGE_GITHUB__TOKEN and TICKETBRIDGE_GITHUB__REPOSITORY",
        )
    if s.statuspage.api_key is None or not s.statuspage.page_id:
        log.info(
            "config.statuspage_unset",
            effect="status-page incidents are recorded as skipped",
            fix="set TICKETBRIDGE_STATUSPAGE__API_KEY and TICKETBRIDGE_STATUSPAGE__PAGE_ID",
        )
    if s.admin_token is None:
        log.warning(
            "config.admin_token_unset",
            effect="/v1/ answers 401",
            fix="set TICKETBRIDGE_ADMIN_TOKEN",
        )


CLOCK_SYNC_SECONDS = 30.0


async def _keep_in_sync(clock: DatabaseClock, run_db: Callable[..., Awaitable[Any]]) -> None:
    """Re-measure the database clock's offset every CLOCK_SYNC_SECONDS (until cancelled)."""
    while True:
        await asyncio.sleep(CLOCK_SYNC_SECONDS)
        try:
            await run_db(clock.sync)
        except Exception as exc:  # keep the last offset; the store's own errors show elsewhere
            log.warning("clock.sync_failed", error=type(exc).__name__)


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    start_workers: bool = True,
) -> FastAPI:
    """Build the app. Nothing touches the database or network until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings or load_settings())
        cfg = svc.settings
        if cfg.migrate_on_start:
            await svc.run_db(svc.store.migrate)
        current, head = await svc.run_db(svc.store.schema_revisions)
        if current != head:
            raise RuntimeError(
                f"database schema is at {current}, this version needs {head}: "
                "run `ticketbridge migrate` (or set TICKETBRIDGE_MIGRATE_ON_START=true)"
            )
        db_clock = svc.clock if isinstance(svc.clock, DatabaseClock) else None
        if db_clock is not None:
            offset = await svc.run_db(db_clock.sync)
            log.info("clock.database", offset_s=round(offset, 4), round_trip_s=db_clock.round_trip)
        await svc.run_db(
            lambda: svc.policies.remember_current(svc.store, at=svc.clock.now().timestamp())
        )
        if svc.store.is_sqlite:
            # One process owns a SQLite file: leases left by a killed predecessor are void.
            await svc.run_db(svc.store.release_leases)
        own_http = svc.http is None
        if svc.http is None:
            svc.http = httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.dispatch.http_timeout, connect=5.0),
                # httpcore checks every idle connection (a syscall each) on every request:
                # with 20 idle (its default), a POST cost 1.8 ms of CPU against 1.0 with one.
                # A burst per target opens at most ``concurrency_per_target`` connections.
                limits=httpx.Limits(max_keepalive_connections=cfg.dispatch.concurrency_per_target),
                headers={"User-Agent": f"ticketbridge/{ticketbridge.__version__}"},
            )
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
            on_outcome=app_metrics.effect,
            on_breach=app_metrics.breach,
        )
        scheduler = Scheduler(
            store=svc.store,
            policies=svc.policies,
            clock=svc.clock,
            run_db=svc.run_db,
            on_effects=dispatcher.wake,
            batch_size=cfg.scheduler.batch_size,
            poll_seconds=cfg.scheduler.poll_seconds,
            on_fired=lambda run: app_metrics.timers_fired(run.latenesses, run.breaches),
        )
        app_metrics.watch_store(svc.store.outbox_stats, svc.clock)
        app.state.services = svc
        app.state.dispatcher = dispatcher
        app.state.scheduler = scheduler
        _warn_about_settings(svc)
        log.info(
            "service.started",
            database=redact_url(svc.store.url),
            policy=svc.policy.fingerprint,
            targets=sorted(svc.senders),
        )
        tasks = (
            [asyncio.create_task(dispatcher.run()), asyncio.create_task(scheduler.run())]
            if start_workers
            else []
        )
        # Runs until cancelled at shutdown (awaiting it with the workers would never end).
        clock_sync = (
            asyncio.create_task(_keep_in_sync(db_clock, svc.run_db))
            if db_clock is not None
            else None
        )
        wakeups = None
        conninfo = svc.store.listen_conninfo()
        if start_workers and conninfo is not None:

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
            wakeups.start()
        app.state.wakeups = wakeups
        try:
            yield
        finally:
            if clock_sync is not None:
                clock_sync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock_sync
            if wakeups is not None:
                await asyncio.to_thread(wakeups.stop)
            if tasks:
                scheduler.stop()
                await dispatcher.stop()
                await asyncio.gather(*tasks)
            await svc.writer.close()
            if own_http:
                await svc.http.aclose()
                svc.http = None
            log.info("service.stopped")

    app = DirectApp(
        title="ticketbridge",
        version=ticketbridge.__version__,
        summary="Helpdesk ticket webhooks to VictorOps incidents, durably and exactly once.",
        lifespan=lifespan,
    )
    # One registry per app (tests build many); nothing global, nothing at import time.
    app_metrics = Metrics()
    app.state.metrics = app_metrics
    app.add_middleware(RequestContext, metrics=app_metrics)
    # The webhook POSTs, served before the middleware stack (never reaching ``app.router``).
    app.direct = Direct(WEBHOOKS, metrics=app_metrics)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(effects.router)
    app.include_router(simulate.router)
    app.include_router(metrics.router)
    return app
