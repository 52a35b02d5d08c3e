"""Shared fixtures: a policy, a fake clock, a migrated store, the app with its lifespan.

Every test that uses the store (``store``, ``database_url``, ``harness_factory``) runs twice:
on SQLite and on PostgreSQL. The PostgreSQL server is ``TICKETBRIDGE_TEST_POSTGRESQL_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``); each test gets a database of its own,
copied from a template migrated once per session, and dropped afterwards. An unreachable
server fails those tests; it never skips them. ``-k sqlite`` or ``-k postgresql`` selects one
backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from ticketbridge.adapters.store.engine import Store
from ticketbridge.adapters.urls import redact_url
from ticketbridge.app.bootstrap import Services
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http.app import create_app
from ticketbridge.app.policy_file import load_policy
from ticketbridge.app.settings import Settings
from ticketbridge.rules import Policy

# The machine is shared and noisy: no per-example deadline, a fixed example budget.
hypothesis_settings.register_profile("ticketbridge", deadline=None, max_examples=200)
hypothesis_settings.load_profile("ticketbridge")
# `make mutation` runs the rules' tests once per mutant: fewer examples, each run short.
hypothesis_settings.register_profile("mutation", deadline=None, max_examples=25)

WEBHOOK_SECRET = "fd-secret-do-not-log"
ADMIN_TOKEN = "admin-token-do-not-log"
VO_API_KEY = "vo-api-key-do-not-log"
VO_ROUTING_KEY = "vo-routing-key-do-not-log"
VO_URL = f"https://vo.test/integrations/generic/20131114/alert/{VO_API_KEY}/{VO_ROUTING_KEY}"


@pytest.fixture
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


BACKENDS = ("sqlite", "postgresql")
POSTGRESQL_URL = os.environ.get(
    "TICKETBRIDGE_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _connect(admin_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {redact_url(admin_url)} is unreachable ({exc}).\n"
            "The store tests run on SQLite and on PostgreSQL: start the server, or point "
            "TICKETBRIDGE_TEST_POSTGRESQL_URL at one (a user that may CREATE DATABASE).",
            pytrace=False,
        )


def _create(conn: psycopg.Connection[Any], *, template: str | None = None) -> str:
    """A new empty (or ``template``-copied) database; returns its name."""
    name = f"tb_test_{uuid.uuid4().hex[:16]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    conn.execute(statement)
    return name


def _drop(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class PostgresServer:
    """Throwaway databases on the test server.

    One ``CREATE DATABASE ... TEMPLATE`` takes ~0.2 s, several at once take hardly longer: a
    few background threads keep ``READY`` copies made ahead and drop used ones, so a test
    waits for neither.
    """

    READY = 4
    WORKERS = 3

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._admin = _connect(admin_url)
        self._template: str | None = None
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []

    def url(self, database: str) -> str:
        return sa.make_url(self.admin_url).set(database=database).render_as_string(False)

    def empty(self) -> str:
        """A new database without any schema."""
        return _create(self._admin)

    def migrated(self) -> str:
        """A new database at the newest schema, copied from a template migrated once."""
        if not self._workers:
            template = _create(self._admin)
            store = Store(self.url(template))
            try:
                store.migrate()
            finally:
                store.close()  # a template must have no connections to be copied
            self._template = template
            self._workers = [
                threading.Thread(target=self._work, name=f"pg-databases-{i}", daemon=True)
                for i in range(self.WORKERS)
            ]
            for worker in self._workers:
                worker.start()
            for _ in range(self.READY):
                self._jobs.put(("create", template))
        made = self._ready.get(timeout=60)
        if isinstance(made, BaseException):
            raise RuntimeError("could not copy the PostgreSQL template database") from made
        assert self._template is not None
        self._jobs.put(("create", self._template))
        return made

    def drop(self, name: str) -> None:
        """Drop ``name`` (in the background once the worker runs)."""
        if not self._workers:
            _drop(self._admin, name)
        else:
            self._jobs.put(("drop", name))

    def drop_now(self, name: str) -> None:
        """Drop ``name`` at once, whoever is connected to it (tests of a lost database)."""
        _drop(self._admin, name)

    def _work(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            while (job := self._jobs.get()) is not None:
                action, name = job
                try:
                    if action == "create":
                        self._ready.put(_create(conn, template=name))
                    else:
                        _drop(conn, name)
                except Exception as exc:
                    self._ready.put(exc)

    def close(self) -> None:
        left: list[str] = []  # copies nobody will use need not be made, only dropped
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if job is not None and job[0] == "drop":
                left.append(job[1])
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, str):
                left.append(made)
        for name in left:
            _drop(self._admin, name)
        if self._template is not None:
            _drop(self._admin, self._template)
        self._admin.close()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    server = PostgresServer(POSTGRESQL_URL)
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend the test runs on: every store test runs on each."""
    name: str = request.param
    return name


@contextlib.contextmanager
def _database(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, *, migrated: bool
) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'tb.db'}"
        if migrated:
            store = Store(url, sqlite_synchronous="NORMAL")
            store.migrate()
            store.close()
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    name = server.migrated() if migrated else server.empty()
    try:
        yield server.url(name)
    finally:
        server.drop(name)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database on ``backend`` (no schema yet)."""
    with _database(request, backend, tmp_path, migrated=False) as url:
        yield url


@pytest.fixture
def store(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Store]:
    """A store at the newest schema, in a database of its own, on each backend."""
    with _database(request, backend, tmp_path, migrated=True) as url:
        s = Store(url, sqlite_synchronous="NORMAL")
        try:
            yield s
        finally:
            s.close()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite:///unused.db",
        "admin_token": ADMIN_TOKEN,
        "freshdesk": {"webhook_secrets": [WEBHOOK_SECRET, "rotated-second-secret"]},
        "victorops": {"rest_url": VO_URL},
        "dispatch": {"backoff_initial": 1.0, "backoff_max": 60.0, "max_attempts": 4},
    }
    values.update(overrides)
    return Settings.model_validate(values)


def freshdesk_body(
    ticket_id: str | int = 11,
    *,
    priority: str = "Urgent",
    status: str = "Open",
    triggered: str = "{ticket_action:created}",
    **extra: str,
) -> dict[str, Any]:
    inner = {
        "triggered_event": triggered,
        "ticket_id": str(ticket_id),
        "ticket_url": f"https://acme.freshdesk.com/helpdesk/tickets/{ticket_id}",
        "ticket_type": "Incident",
        "ticket_subject": "Checkout fails",
        "ticket_status": status,
        "ticket_priority": priority,
        **extra,
    }
    return {"freshdesk_webhook": inner}


class AppHarness:
    """The app running with its lifespan, an ASGI client, and the services behind it."""

    def __init__(self, client: httpx.AsyncClient, services: Services, app: Any) -> None:
        self.client = client
        self.services = services
        self.app = app

    @property
    def dispatcher(self) -> Any:
        return self.app.state.dispatcher

    async def post_freshdesk(
        self, body: Any, *, secret: str = WEBHOOK_SECRET, **kwargs: Any
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return await self.client.post(
            "/webhooks/freshdesk",
            content=content,
            headers=headers,
            auth=("freshdesk", secret),
            **kwargs,
        )

    async def ticket(self, ticket_id: str | int, source: str = "freshdesk") -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/tickets/{source}/{ticket_id}",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
def harness_factory(store: Store, clock: FakeClock, policy: Policy) -> Callable[..., Any]:
    """``async with harness_factory(**settings) as h``: app + lifespan, workers off."""

    @contextlib.asynccontextmanager
    async def factory(
        *, start_workers: bool = False, fast_path: bool = False, **overrides: Any
    ) -> AsyncIterator[AppHarness]:
        settings = make_settings(**overrides)
        services = Services(settings=settings, store=store, policy=policy, clock=clock)
        services.fast_path = fast_path  # off: tests drive the dispatcher step by step
        app = create_app(settings, services=services, start_workers=start_workers)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tb.test") as client:
                yield AppHarness(client, services, app)

    return factory
