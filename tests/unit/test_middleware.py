"""RequestContext: the direct path for webhook POSTs, and everything else through the app."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ticketbridge.app.middleware import DirectRoute, RequestContext


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
