"""The admin API, the probes, the published contract, and secrets kept out of every output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog
import yaml
from structlog.testing import capture_logs

from tests.conftest import (
    ADMIN_TOKEN,
    VO_API_KEY,
    VO_ROUTING_KEY,
    VO_URL,
    WEBHOOK_SECRET,
    freshdesk_body,
)
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.http.app import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", f"Bearer {WEBHOOK_SECRET}", b"Bearer \xc3\xa9"],
    ids=["missing", "wrong", "wrong-scheme", "webhook-secret-is-not-admin", "non-ascii"],
)
async def test_admin_api_needs_its_own_token(
    harness_factory: Any, authorization: str | bytes | None
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(1, priority="Low"))
        if isinstance(authorization, str):
            authorization = authorization.encode()
        headers = [(b"authorization", authorization)] if authorization else []
        response = await h.client.get("/v1/tickets/freshdesk/1", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}


async def test_admin_api_without_a_configured_token_answers_401(harness_factory: Any) -> None:
    async with harness_factory(admin_token=None) as h:
        response = await h.client.get(
            "/v1/tickets/freshdesk/1", headers={"authorization": "Bearer "}
        )
    assert response.status_code == 401


async def test_unknown_ticket_is_404(harness_factory: Any) -> None:
    async with harness_factory() as h:
        response = await h.client.get(
            "/v1/tickets/freshdesk/404", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    assert response.status_code == 404
    assert response.json() == {"error": "no ticket freshdesk/404"}


async def test_probes(harness_factory: Any) -> None:
    async with harness_factory() as h:
        alive = await h.client.get("/healthz")
        ready = await h.client.get("/readyz")
    assert (alive.status_code, alive.json()["status"]) == (200, "ok")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")


async def test_readyz_is_503_when_the_schema_is_behind(harness_factory: Any, store: Store) -> None:
    async with harness_factory() as h:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
        ready = await h.client.get("/readyz")
    assert ready.status_code == 503
    assert "run `ticketbridge migrate`" in ready.json()["detail"]


async def test_start_up_refuses_an_outdated_schema_unless_told_to_migrate(
    database_url: str, clock: Any, policy: Any
) -> None:
    from tests.conftest import make_settings
    from ticketbridge.app.bootstrap import Services

    settings = make_settings(migrate_on_start=False)
    store = Store(database_url)
    app = create_app(
        settings,
        services=Services(settings=settings, store=store, policy=policy, clock=clock),
        start_workers=False,
    )
    with pytest.raises(RuntimeError, match="run `ticketbridge migrate`"):
        async with app.router.lifespan_context(app):
            pass
    store.close()


def test_openapi_yaml_matches_the_app() -> None:
    published = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    actual = json.loads(json.dumps(create_app().openapi()))
    assert published == actual, "openapi.yaml is stale: run `make openapi` and review the diff"


async def test_no_secret_appears_in_logs_errors_or_api_output(
    harness_factory: Any, clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from ticketbridge.app.logging import configure_logging

    secrets = [WEBHOOK_SECRET, ADMIN_TOKEN, VO_API_KEY, VO_ROUTING_KEY, VO_URL]
    outputs: list[str] = []
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(fmt="json", level="debug")  # stdlib loggers (httpx!) at their loudest
    # A logger cached now would bypass every later test's capture_logs().
    structlog.configure(cache_logger_on_first_use=False)
    request = logging.getLogger("httpx")
    assert request.getEffectiveLevel() == logging.WARNING
    with respx.mock() as mock, capture_logs() as logs:
        mock.post(VO_URL).mock(
            side_effect=[
                httpx.ConnectError(f"cannot reach {VO_URL}"),
                httpx.Response(500),
                httpx.Response(400, text=f"bad key {VO_API_KEY}"),
            ]
        )
        async with harness_factory() as h:
            outputs.append((await h.post_freshdesk(freshdesk_body(5))).text)
            outputs.append((await h.post_freshdesk(freshdesk_body(5), secret="nope")).text)
            for _ in range(3):
                await h.dispatcher.run_once()
                clock.advance(120)
            outputs.append(json.dumps(await h.ticket(5)))
            outputs.append(repr(h.services.senders))
            outputs.append(repr(h.services.settings))
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    structlog.reset_defaults()
    assert json.loads(outputs[2])["effects"][0]["status"] == "dead"
    outputs.extend(json.dumps(entry, default=str) for entry in logs)
    captured = capsys.readouterr()
    outputs.extend([captured.out, captured.err])
    blob = "\n".join(outputs)
    for secret in secrets:
        assert secret not in blob
