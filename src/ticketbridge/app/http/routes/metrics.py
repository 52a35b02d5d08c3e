"""``GET /metrics``: Prometheus text format. No auth: keep it off the public internet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ticketbridge.app.http.deps import ServicesDep
from ticketbridge.app.metrics import CONTENT_TYPE, metrics_of

router = APIRouter(tags=["operations"])


# Not in openapi.yaml: it is for Prometheus, not API clients, and its format is Prometheus'.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    # The outbox gauges query the store: render in a worker thread, like any store call.
    body = await services.run_db(metrics_of(request.app).exposition)
    return Response(body, media_type=CONTENT_TYPE)
