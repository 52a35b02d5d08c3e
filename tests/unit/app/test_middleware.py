"""DirectApp: the direct path for webhook POSTs, and everything else through the app's stack."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ticketbridge.app.http.direct import Direct, DirectApp, DirectRoute, Endpoint
from ticketbridge.app.http.middleware import RequestContext


def _app(endpoint: Endpoint, stack_calls: list[str]) -> DirectApp:
    """An app serving ``endpoint`` directly on POST /hook, with a GET /hook and a POST /hook/
    of its own (405), and a middleware that records what goes through its stack."""
    app = DirectApp()

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Response:
        stack_calls.append(f"{request.method} {request.url.path}")
        response: Response = await call_next(request)
        return response

    @app.get("/hook")
    @app.post("/hook/")
    async def _other() -> Response:
        return Response(b"from the app", status_code=405)

    app.add_middleware(RequestContext)
    app.direct = Direct({"/hook": endpoint})
    return app


async def _run(app: DirectApp, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, content=b"hello")


async def test_a_post_to_a_direct_path_skips_the_app() -> None:
    stack: list[str] = []
    direct: list[str] = []

    async def endpoint(request: Request) -> Response:
        direct.append(request.url.path)
        assert request.scope["route"] == DirectRoute("/hook")
        assert request.app is app
        return JSONResponse({"body": (await request.body()).decode()}, status_code=202)

    app = _app(endpoint, stack)
    answer = await _run(app, "POST", "/hook")
    assert answer.status_code == 202
    assert answer.json() == {"body": "hello"}
    assert answer.headers["x-request-id"]
    assert direct == ["/hook"]
    assert stack == []


async def test_other_methods_and_paths_go_through_the_app() -> None:
    stack: list[str] = []
    direct: list[str] = []

    async def endpoint(request: Request) -> Response:
        direct.append(request.url.path)
        return Response(status_code=202)

    app = _app(endpoint, stack)
    got = await _run(app, "GET", "/hook")
    other = await _run(app, "POST", "/hook/")
    assert (got.status_code, other.status_code) == (405, 405)
    assert got.headers["x-request-id"]
    assert stack == ["GET /hook", "POST /hook/"]
    assert direct == []


async def test_a_direct_endpoint_that_raises_answers_500_without_detail() -> None:
    stack: list[str] = []

    async def endpoint(request: Request) -> Response:
        raise RuntimeError("secret detail")

    answer = await _run(_app(endpoint, stack), "POST", "/hook")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error"}
    assert "secret" not in answer.text
    assert answer.headers["x-request-id"]
    assert stack == []
