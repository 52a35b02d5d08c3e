"""The throughput reference: a bare FastAPI app whose one POST route reads the body, answers 202.

Served exactly as ``ticketbridge serve`` serves ticketbridge (src/ticketbridge/app/cli/main.py):
uvicorn, one worker, default loop/HTTP implementations, no access log, no server header,
root logging at WARNING (the level the benchmark gives ticketbridge).

    .venv/bin/python bench/bare_app.py --port 8090
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/webhooks/freshdesk", status_code=202)
async def receive(request: Request) -> Response:
    await request.body()
    return Response(status_code=202)


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
        timeout_graceful_shutdown=15,
        server_header=False,
    )


if __name__ == "__main__":
    main()
