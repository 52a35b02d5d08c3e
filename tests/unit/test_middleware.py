"""RequestContext: the direct path for webhook POSTs, and everything else through the app."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ticketbridge.app.http.middleware import DirectApp, DirectRoute, RequestContext


async def _run(
    method: str, path: str, *, inner_calls: list[str], direct_calls: list[str]
) -> httpx.Response:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        inner_calls.append(f"{scope['method']} {scope['path']}")
        await Response(b"from the app", status_code=405)(scope, receive, send)

    async def endpoint(request: Request) -> Response:
        direct_calls.append(request.url.path)
        assert request.scope["route"] == DirectRoute("/hook")
        return JSONResponse({"body": (await request.body()).decode()}, status_code=202)

    app = RequestContext(inner, direct={"/hook": endpoint})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, content=b"hello")


async def test_a_post_to_a_direct_path_skips_the_app() -> None:
    inner: list[str] = []
    direct: list[str] = []
    answer = await _run("POST", "/hook", inner_calls=inner, direct_calls=direct)
    assert answer.status_code == 202
    assert answer.json() == {"body": "hello"}
    assert answer.headers["x-request-id"]
    assert direct == ["/hook"]
    assert inner == []


async def test_other_methods_and_paths_go_through_the_app() -> None:
    inner: list[str] = []
    direct: list[str] = []
    got = await _run("GET", "/hook", inner_calls=inner, direct_calls=direct)
    other = await _run("POST", "/hook/", inner_calls=inner, direct_calls=direct)
    assert (got.status_code, other.status_code) == (405, 405)
    assert inner == ["GET /hook", "POST /hook/"]
    assert direct == []


async def test_a_direct_endpoint_that_raises_answers_500_without_detail() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    async def endpoint(request: Request) -> Response:
        raise RuntimeError("secret detail")

    app = RequestContext(inner, direct={"/hook": endpoint})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.post("/hook", content=b"x")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error"}
    assert "secret" not in answer.text
    assert answer.headers["x-request-id"]


async def test_direct_app_serves_direct_posts_before_its_middleware_stack() -> None:
    seen_by_stack: list[str] = []

    async def endpoint(request: Request) -> Response:
        assert request.app is app
        return JSONResponse({"direct": True}, status_code=202)

    app = DirectApp()

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Response:
        seen_by_stack.append(f"{request.method} {request.url.path}")
        response: Response = await call_next(request)
        return response

    @app.get("/hook")
    async def _get() -> dict[str, bool]:
        return {"direct": False}

    app.context = RequestContext(app.router, direct={"/hook": endpoint})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        posted = await client.post("/hook", content=b"x")
        got = await client.get("/hook")
    assert (posted.status_code, posted.json()) == (202, {"direct": True})
    assert posted.headers["x-request-id"]
    assert (got.status_code, got.json()) == (200, {"direct": False})
    assert seen_by_stack == ["GET /hook"]
