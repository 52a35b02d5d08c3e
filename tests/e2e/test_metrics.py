"""``GET /metrics``: counters, gauges and histograms as Prometheus scrapes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import freshdesk_body
from ticketbridge.adapters.store.rows import OutboxStats
from ticketbridge.app.clock import FakeClock
from ticketbridge.app.http import middleware
from ticketbridge.app.http.app import create_app
from ticketbridge.app.metrics import Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(h: Any) -> Samples:
    response = await h.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
def vo() -> respx.MockRouter:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="vo.test").mock(return_value=httpx.Response(200, json={"result": "ok"}))
        yield mock


async def test_webhook_outcomes_duplicates_and_refusals_are_counted(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        assert (await h.post_freshdesk(freshdesk_body(1))).status_code == 202
        assert (await h.post_freshdesk(freshdesk_body(1))).status_code == 200
        assert (await h.post_freshdesk(freshdesk_body(2), secret="wrong")).status_code == 401
        samples = await scrape(h)

    def webhooks(outcome: str) -> float | None:
        return value(samples, "ticketbridge_webhooks_total", source="freshdesk", outcome=outcome)

    assert webhooks("accepted") == 1
    assert webhooks("duplicate") == 1  # duplicates are this outcome, not a metric of their own
    assert webhooks("401") == 1
    assert webhooks("stale") == 0  # present from the start
    assert webhooks("422") is None


async def test_effect_outcomes_outbox_gauges_and_dead_letters(
    harness_factory: Any, clock: FakeClock
) -> None:
    with respx.mock() as mock:
        mock.post(host="vo.test").mock(
            side_effect=[httpx.Response(503), httpx.Response(200), httpx.Response(400)]
        )
        async with harness_factory() as h:
            await h.post_freshdesk(freshdesk_body(10))
            clock.advance(30)
            before = await scrape(h)
            await h.dispatcher.run_once()  # 503: retrying
            clock.advance(120)
            await h.dispatcher.drain()  # 200: sent
            await h.post_freshdesk(freshdesk_body(11))
            await h.dispatcher.drain()  # 400: dead at once
            after = await scrape(h)

    assert value(before, "ticketbridge_outbox_depth") == 1
    assert value(before, "ticketbridge_outbox_oldest_age_seconds") == 30
    assert value(before, "ticketbridge_dead_letters") == 0
    assert value(before, "ticketbridge_store_up") == 1

    def effects(outcome: str) -> float | None:
        return value(after, "ticketbridge_effects_total", target="victorops", outcome=outcome)

    assert (effects("retrying"), effects("sent"), effects("dead")) == (1, 1, 1)
    assert effects("skipped") is None
    assert value(after, "ticketbridge_outbox_depth") == 0
    assert value(after, "ticketbridge_outbox_oldest_age_seconds") == 0
    assert value(after, "ticketbridge_dead_letters") == 1


async def test_an_unconfigured_target_counts_as_skipped(harness_factory: Any) -> None:
    async with harness_factory(victorops={}) as h:
        await h.post_freshdesk(freshdesk_body(12))
        await h.dispatcher.drain()
        samples = await scrape(h)
    assert value(samples, "ticketbridge_effects_total", target="victorops", outcome="skipped") == 1


async def test_timer_lateness_and_commitment_breaches(
    harness_factory: Any, clock: FakeClock, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(20, priority="Urgent"))
        empty = await scrape(h)
        # Urgent: Tier-One 30 min, engagement 60 min, customer update every 60 min (nobody
        # replied); the scheduler runs 90 s after the hour.
        clock.advance(timedelta(minutes=61, seconds=30))
        assert (await h.app.state.scheduler.run_once()).fired == 3
        samples = await scrape(h)

    assert value(empty, "ticketbridge_timer_lateness_seconds_count") == 0
    assert value(samples, "ticketbridge_timer_lateness_seconds_count") == 3
    assert value(samples, "ticketbridge_timer_lateness_seconds_sum") == 31.5 * 60 + 90 + 90
    assert value(samples, "ticketbridge_timer_lateness_seconds_bucket", le="60.0") == 0
    assert value(samples, "ticketbridge_timer_lateness_seconds_bucket", le="300.0") == 2
    assert value(samples, "ticketbridge_timer_lateness_seconds_bucket", le="+Inf") == 3

    def breaches(kind: str) -> float | None:
        return value(
            samples, "ticketbridge_commitment_breaches_total", kind=kind, priority="urgent"
        )

    assert breaches("engagement") == 1
    assert breaches("customer_update") == 1
    assert breaches("tier_one") is None  # an escalation step, not a missed commitment


async def test_http_latency_by_route_template_and_unknown_routes_as_other(
    harness_factory: Any, vo: respx.MockRouter
) -> None:
    async with harness_factory() as h:
        await h.post_freshdesk(freshdesk_body(30))
        await h.ticket(30)
        assert (await h.client.get("/no/such/path")).status_code == 404
        await h.client.get("/healthz")
        samples = await scrape(h)

    def count(method: str, route: str, status: str) -> float | None:
        return value(
            samples,
            "ticketbridge_http_request_duration_seconds_count",
            method=method,
            route=route,
            status=status,
        )

    assert count("POST", "/webhooks/freshdesk", "202") == 1
    assert count("GET", "/v1/tickets/{source}/{ticket_id}", "200") == 1
    assert count("GET", "other", "404") == 1
    assert count("GET", "/healthz", "200") == 1
    routes = {dict(labels)["route"] for name, labels in samples if "http_request" in name}
    assert "/v1/tickets/freshdesk/30" not in routes


async def test_metrics_is_logged_at_debug_and_left_out_of_the_openapi_document(
    harness_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recorder rather than structlog's capture_logs: a logger cached by an earlier test
    # (cache_logger_on_first_use) would escape it.
    levels: dict[str, str] = {}

    class Recorder:
        def debug(self, event: str, **kw: Any) -> None:
            levels[kw["path"]] = "debug"

        def info(self, event: str, **kw: Any) -> None:
            levels[kw["path"]] = "info"

    monkeypatch.setattr(middleware, "log", Recorder())
    async with harness_factory() as h:
        await h.client.get("/metrics")
        await h.client.get("/healthz")
    assert levels == {"/metrics": "debug", "/healthz": "info"}
    assert "/metrics" not in create_app().openapi()["paths"]


def test_a_failing_store_query_reports_store_down_and_keeps_the_scrape() -> None:
    metrics = Metrics()

    def broken() -> OutboxStats:
        raise OSError("connection refused")

    metrics.watch_store(broken, FakeClock())
    samples = parse(metrics.exposition().decode())
    assert value(samples, "ticketbridge_store_up") == 0
    assert value(samples, "ticketbridge_outbox_depth") is None
    assert (
        value(samples, "ticketbridge_webhooks_total", source="freshdesk", outcome="accepted") == 0
    )


def test_each_app_has_its_own_registry() -> None:
    first, second = create_app(), create_app()
    first.state.metrics.webhook("freshdesk", "accepted")
    labels = {"source": "freshdesk", "outcome": "accepted"}
    assert first.state.metrics.registry.get_sample_value("ticketbridge_webhooks_total", labels) == 1
    assert (
        second.state.metrics.registry.get_sample_value("ticketbridge_webhooks_total", labels) == 0
    )
