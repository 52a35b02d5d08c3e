"""The recording proxy: a small app in front of the service that writes authentic webhooks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticketbridge.adapters.inbound.errors import InboundError, Unauthorized
from ticketbridge.adapters.inbound.sources import SOURCES, Headers, first_headers
from ticketbridge.app.http.body import PayloadTooLarge, read_body
from ticketbridge.app.recording.fixtures import FixtureWriter

DEFAULT_MAX_BODY = 1024 * 1024
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy recomputes: never relayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


@dataclass(frozen=True)
class SourceSecrets:
    """Webhook secrets per source, as the service is configured (never in a repr)."""

    freshdesk: tuple[str, ...] = field(default=(), repr=False)
    zendesk: tuple[str, ...] = field(default=(), repr=False)
    generic: tuple[str, ...] = field(default=(), repr=False)

    def of(self, source: str) -> tuple[str, ...]:
        """The secrets of ``source``."""
        value: tuple[str, ...] = getattr(self, source)
        return value


def authentic(
    source: str, headers: Headers, raw: bytes, secrets: SourceSecrets, now: datetime
) -> bool:
    """Whether the service itself would take these credentials (its own verifiers)."""
    entry = SOURCES[source]
    try:
        entry.verify(headers, raw, [entry.key(s) for s in secrets.of(source)], now)
    except Unauthorized:
        return False
    return True


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def create_recorder_app(
    writer: FixtureWriter,
    *,
    forward: str | None,
    secrets: SourceSecrets,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    timeout: float = 10.0,
    log: Callable[[str], None] = lambda line: None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The recording proxy: ``POST /webhooks/{freshdesk,zendesk,generic}`` and ``/healthz``.

    With ``forward`` (the service's base URL) every request goes there unchanged (hop-by-hop
    headers aside) and the answer comes back unchanged; it is recorded when that answer is
    2xx. Without it, the proxy checks the credentials against ``secrets`` (401 otherwise),
    records, and answers 202 ``{"outcome": "recorded"}``. ``log`` gets one line per request:
    the fixture written or why none was, never a header value or a body.
    """
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if forward is None:
            yield
            return
        async with httpx.AsyncClient(
            base_url=forward, timeout=timeout, trust_env=False, transport=transport
        ) as client:
            state["client"] = client
            yield
            state.pop("client", None)

    async def record(
        source: str, request: Request, document: Any, arrived: tuple[float, datetime]
    ) -> str | None:
        """The fixture's file name, or None (logged) if it could not be written."""
        try:
            path = await anyio.to_thread.run_sync(
                writer.write, source, list(request.headers.items()), document, *arrived
            )
        except OSError as exc:
            log(f"{source}: not recorded: cannot write the fixture ({type(exc).__name__})")
            return None
        return path.name

    async def webhook(request: Request) -> Response:
        source = str(request.path_params["source"])
        if source not in SOURCES:
            return JSONResponse({"error": "unknown webhook source"}, status_code=404)
        arrived = (time.monotonic(), datetime.now(UTC))
        headers = first_headers(request.scope["headers"])
        try:
            raw = await read_body(request.receive, headers.get(b"content-length"), max_body_bytes)
        except PayloadTooLarge:
            log(f"{source}: not recorded: body over {max_body_bytes} bytes (413)")
            return JSONResponse({"error": "body too large"}, status_code=413)
        except InboundError:  # the client left before the body's end
            return Response(status_code=400)
        client = state.get("client")
        if client is None:
            if not authentic(source, headers, raw, secrets, datetime.now(UTC)):
                log(f"{source}: not recorded: credentials refused (401)")
                challenge = SOURCES[source].challenge
                return JSONResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": challenge} if challenge else None,
                )
            document = _json_object(raw)
            if document is None:
                log(f"{source}: not recorded: body is not a JSON object (400)")
                return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
            name = await record(source, request, document, arrived)
            if name is None:  # the sender retries later
                return JSONResponse({"error": "cannot record"}, status_code=503)
            log(f"{source}: recorded {name} (202)")
            return JSONResponse({"outcome": "recorded", "fixture": name}, status_code=202)

        outbound = [
            (k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        try:
            upstream = await client.post(
                f"/webhooks/{source}",
                params=request.url.query or None,
                content=raw,
                headers=outbound,
            )
        except httpx.HTTPError as exc:
            log(f"{source}: not recorded: service unreachable ({type(exc).__name__}, 502)")
            return JSONResponse({"error": "service unreachable"}, status_code=502)
        status = upstream.status_code
        if 200 <= status < 300:
            document = _json_object(raw)
            if document is None:
                log(f"{source}: not recorded: body is not a JSON object ({status})")
            elif (name := await record(source, request, document, arrived)) is not None:
                # A fixture that cannot be written never changes the service's answer.
                log(f"{source}: recorded {name} ({status})")
        else:
            log(f"{source}: not recorded: the service answered {status}")
        response = Response(content=upstream.content, status_code=status)
        response.raw_headers.extend(
            (k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP
        )
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "recording"})

    return Starlette(
        routes=[
            Route("/webhooks/{source}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
