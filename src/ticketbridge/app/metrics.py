"""Prometheus metrics: one registry per app (built in ``create_app``), nothing at import time.

Counters and histograms are updated where things happen (webhook route, dispatcher, scheduler,
request middleware); the outbox gauges are read from the store when ``/metrics`` is scraped.
Every label takes values from a bounded set: route templates (never raw paths), HTTP methods
and status codes, targets, ticket priorities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

from ticketbridge.adapters.store.rows import OutboxStats
from ticketbridge.app.clock import Clock
from ticketbridge.app.http.deps import from_state

log = structlog.get_logger("ticketbridge.metrics")

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
WEBHOOK_OUTCOMES = ("accepted", "duplicate", "stale")
# Seconds: a timer normally fires within the scheduler's poll (1 s); after downtime, hours.
LATENESS_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/tickets/{source}/{ticket_id}``), else ``other``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else "other"


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


class OutboxCollector(Collector):
    """Outbox depth, oldest open effect's age and dead letters, queried at scrape time."""

    def __init__(self) -> None:
        self._stats: Callable[[], OutboxStats] | None = None
        self._clock: Clock | None = None

    def watch(self, stats: Callable[[], OutboxStats], clock: Clock) -> None:
        self._stats = stats
        self._clock = clock

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "ticketbridge_store_up",
                "1 if the store answered the outbox query of this scrape, else 0",
            ),
            GaugeMetricFamily(
                "ticketbridge_outbox_depth", "Effects waiting to go out (pending or retrying)"
            ),
            GaugeMetricFamily(
                "ticketbridge_outbox_oldest_age_seconds",
                "Age of the oldest effect still pending or retrying (0 when none)",
            ),
            GaugeMetricFamily(
                "ticketbridge_dead_letters", "Effects that are dead (gave up; need a human)"
            ),
        )

    def describe(self) -> Iterable[Metric]:
        # Without describe() the registry would call collect() (a query) on registration.
        return self._families()

    def collect(self) -> Iterator[Metric]:
        up, depth, age, dead = self._families()
        if self._stats is None or self._clock is None:
            return  # the lifespan has not started: no store yet
        try:
            stats = self._stats()
        except Exception as exc:  # any driver error: report the store down, keep the scrape
            log.warning("metrics.store_unavailable", error=type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        now = self._clock.now().timestamp()
        oldest = stats.oldest_open_created_at
        up.add_metric([], 1.0)
        depth.add_metric([], float(stats.open))
        age.add_metric([], max(0.0, now - oldest) if oldest is not None else 0.0)
        dead.add_metric([], float(stats.dead))
        yield from (up, depth, age, dead)


class Metrics:
    """The app's registry and every ticketbridge metric in it."""

    def __init__(self) -> None:
        # The text format would otherwise add a ``*_created`` series beside every counter.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, ...], Any] = {}
        r = self.registry
        self.webhooks = Counter(
            "ticketbridge_webhooks",
            "Webhooks received, by outcome: accepted, duplicate (a redelivery), stale, or the "
            "HTTP status of a refusal (401, 413, 415, 400, 422, 503)",
            ["source", "outcome"],
            registry=r,
        )
        self.effects = Counter(
            "ticketbridge_effects",
            "Effect delivery attempts, by outcome: sent, retrying, dead, skipped",
            ["target", "outcome"],
            registry=r,
        )
        self.timer_lateness = Histogram(
            "ticketbridge_timer_lateness_seconds",
            "How late each timer fired after its due time",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.breaches = Counter(
            "ticketbridge_commitment_breaches",
            "Commitments missed (kind engagement: no initial engagement in time; "
            "customer_update: a customer update overdue; write_up: the post-event write-up still "
            "open at its deadline), by ticket priority",
            ["kind", "priority"],
            registry=r,
        )
        self.http_duration = Histogram(
            "ticketbridge_http_request_duration_seconds",
            "HTTP request latency, by method, route template (other: no route) and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.outbox = OutboxCollector()
        r.register(self.outbox)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        for outcome in WEBHOOK_OUTCOMES:  # present (at 0) from the start, so rate() works
            for source in ("freshdesk", "zendesk", "generic"):
                self.webhooks.labels(source, outcome)

    def watch_store(self, stats: Callable[[], OutboxStats], clock: Clock) -> None:
        """Read the outbox gauges through ``stats`` (a cheap store query) at each scrape."""
        self.outbox.watch(stats, clock)

    def webhook(self, source: str, outcome: str) -> None:
        self._child(self.webhooks, source, outcome).inc()

    def effect(self, target: str, outcome: str) -> None:
        self._child(self.effects, target, outcome).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the lookup validates and locks each time,
        a measurable share of a webhook. Label sets are bounded (route templates, statuses,
        targets), so the cache is too."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def timers_fired(
        self, latenesses: Iterable[float], breaches: Iterable[tuple[str, str]]
    ) -> None:
        for late in latenesses:
            self.timer_lateness.observe(late)
        for kind, priority in breaches:
            self.breach(kind, priority)

    def breach(self, kind: str, priority: str) -> None:
        """One missed commitment (engagement, customer update, write-up) of ``priority``."""
        self.breaches.labels(kind, priority).inc()

    def http_request(self, scope: Scope, status: int, seconds: float) -> None:
        self._child(
            self.http_duration,
            method_label(str(scope.get("method", ""))),
            route_label(scope),
            str(status),
        ).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format (queries the store: run it in a worker thread)."""
        return prometheus_client.generate_latest(self.registry)


def metrics_of(app: Any) -> Metrics:
    """The metrics of the app serving a request."""
    metrics: Metrics = from_state(app, "metrics")
    return metrics
