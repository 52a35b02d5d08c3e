"""The recording proxy: a small app in front of the service that writes authentic webhooks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticketbridge.adapters.inbound import signatures
from ticketbridge.adapters.inbound.auth import check_shared_secret
from ticketbridge.adapters.inbound.errors import Unauthorized
from ticketbridge.app.recording.fixtures import SOURCES, FixtureWriter

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


def authentic(
    source: str, headers: Mapping[str, str], raw: bytes, secrets: SourceSecrets, now: datetime
) -> bool:
    """Whether the service itself would take these credentials (its own verifiers)."""
    try:
        if source == "freshdesk":
            check_shared_secret(
                headers.get("authorization"), [s.encode() for s in secrets.freshdesk]
            )
        elif source == "zendesk":
            signatures.verify_zendesk(
                body=raw,
                signature=headers.get("x-zendesk-webhook-signature"),
                timestamp=headers.get("x-zendesk-webhook-signature-timestamp"),
                secrets=[s.encode() for s in secrets.zendesk],
                now=now,
            )
        else:
            signatures.verify_standard(
                body=raw,
                msg_id=headers.get("webhook-id"),
                timestamp=headers.get("webhook-timestamp"),
                signature=headers.get("webhook-signature"),
                keys=[signatures.standard_secret(s) for s in secrets.generic],
                now=now,
            )
    except Unauthorized:
        return False
    return True


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


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
        try:
            raw = await _read_body(request, max_body_bytes)
        except _TooLarge:
            log(f"{source}: not recorded: body over {max_body_bytes} bytes (413)")
            return JSONResponse({"error": "body too large"}, status_code=413)
        except ClientDisconnect:
            return Response(status_code=400)
        client = state.get("client")
        if client is None:
            if not authentic(source, request.headers, raw, secrets, datetime.now(UTC)):
                log(f"{source}: not recorded: credentials refused (401)")
                challenge = {"WWW-Authenticate": 'Basic realm="ticketbridge"'}
                return JSONResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers=challenge if source == "freshdesk" else None,
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
