"""Loopback receiver that records when each alert arrives (a fake VictorOps and a webhook sink).

- ``POST /integrations/generic/20131114/alert/<key>/<routing>``: a VictorOps REST alert; the
  ticket id is the last segment of its ``entity_id`` (``freshdesk/<account>/ticket/<id>``).
- ``POST /alertmanager``: an Alertmanager webhook; one record per alert, keyed by its
  ``ticket`` label.
- ``GET /records?kind=victorops|alertmanager``: ``[[kind, ticket, receive_ns, detail], ...]``.
- ``GET /healthz``.

Receive times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by every process on the
host) taken when the request reaches the app, so they compare with the sender's send times.
Pure ASGI (no framework) so the receiver adds as little as possible to what is measured.

    .venv/bin/python bench/recorder.py --port 8091
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import uvicorn

RECORDS: list[tuple[str, str, int, str]] = []
VICTOROPS_PREFIX = "/integrations/generic/20131114/alert/"


async def _body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _record(path: str, document: Any, at: int) -> int:
    if path.startswith(VICTOROPS_PREFIX):
        entity = str(document.get("entity_id", ""))
        RECORDS.append(("victorops", entity.rsplit("/", 1)[-1], at, document.get("message_type")))
        return 1
    if path == "/alertmanager":
        alerts = document.get("alerts", [])
        for alert in alerts:
            ticket = str(alert.get("labels", {}).get("ticket", ""))
            RECORDS.append(("alertmanager", ticket, at, alert.get("status", "")))
        return len(alerts)
    return 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    at = time.monotonic_ns()
    path = scope["path"]
    body = await _body(receive)
    if scope["method"] == "POST":
        try:
            document = json.loads(body)
        except ValueError:
            await _answer(send, 400, {"result": "failure", "message": "not JSON"})
            return
        if _record(path, document, at) == 0:
            await _answer(send, 404, {"result": "failure", "message": "unknown path"})
            return
        await _answer(send, 200, {"result": "success", "entity_id": document.get("entity_id")})
        return
    if path == "/records":
        kind = parse_qs(scope["query_string"].decode()).get("kind", [None])[0]
        rows = [r for r in RECORDS if kind is None or r[0] == kind]
        await _answer(send, 200, rows)
        return
    await _answer(send, 200, {"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
