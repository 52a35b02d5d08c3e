"""``create_app``: the FastAPI application, its routes, and a lifespan that starts and stops
what ``bootstrap`` builds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import ticketbridge
from ticketbridge.adapters.urls import redact_url
from ticketbridge.app.bootstrap import Services, build_services, build_workers, open_store
from ticketbridge.app.console import routes as console
from ticketbridge.app.http.direct import WEBHOOKS, Direct, DirectApp
from ticketbridge.app.http.middleware import RequestContext
from ticketbridge.app.http.routes import admin, effects, health, metrics, simulate, webhooks
from ticketbridge.app.metrics import Metrics
from ticketbridge.app.settings import Settings, load_settings

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
        await open_store(svc)
        workers = build_workers(svc, app_metrics, run=start_workers)
        app.state.services = svc
        app.state.workers = workers
        app.state.dispatcher = workers.dispatcher
        app.state.scheduler = workers.scheduler
        app.state.wakeups = workers.wakeups
        _warn_about_settings(svc)
        log.info(
            "service.started",
            database=redact_url(svc.store.url),
            policy=svc.policy.fingerprint,
            targets=sorted(svc.senders or ()),
        )
        await workers.start()
        try:
            yield
        finally:
            await workers.stop()
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
    app.include_router(console.router)
    app.mount("/ui/static", StaticFiles(packages=[("ticketbridge.app.console", "static")]))
    return app
