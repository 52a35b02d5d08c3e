"""A fake Freshdesk API (``/api/v2``) on loopback, for real-process tests.

It listens on 127.0.0.1 with an ephemeral port, in a background thread, and serves what
ticketbridge calls: ``GET /api/v2/tickets/{id}`` (the ticket as last set with ``set_ticket``,
404 when unknown), ``PUT /api/v2/tickets/{id}`` (applies ``status`` / ``priority`` /
``group_id`` / ``responder_id``), ``POST /api/v2/tickets/{id}/notes`` (201) and
``GET /api/v2/groups``. Every request is recorded. Any API key is accepted.

    with FakeFreshdesk() as fd:
        fd.set_ticket(7, priority=4, status=2)       # Urgent, Open
        ...                                          # TICKETBRIDGE_FRESHDESK__API_URL=fd.base_url
        fd.set_ticket(7, priority=4, status=4)       # resolved in the helpdesk
        assert fd.notes_for(7) == 1

Pure stdlib (``http.server``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

PREFIX = "/api/v2"
GROUPS = ({"id": 99, "name": "DDEV Live Support"},)


@dataclass(frozen=True)
class ApiRequest:
    at: float  # time.monotonic()
    method: str
    path: str
    body: Any
    status: int

    @property
    def ticket_id(self) -> int | None:
        parts = self.path.split("?", 1)[0].removeprefix(PREFIX).strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "tickets" and parts[1].isdigit():
            return int(parts[1])
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeFreshdesk) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanishes mid-request (a SIGKILLed ticketbridge) is expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_PUT(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)


class FakeFreshdesk:
    """The fake API. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[int, dict[str, Any]] = {}
        self._requests: list[ApiRequest] = []
        self._next_note = 1
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeFreshdesk:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-freshdesk",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeFreshdesk:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The account URL to configure (``TICKETBRIDGE_FRESHDESK__API_URL``)."""
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_ticket(self, ticket_id: int, *, priority: int, status: int) -> None:
        """What ``GET /tickets/{id}`` answers from now on (priority 1-4, status 2-5)."""
        with self._lock:
            self._tickets[ticket_id] = {
                "id": ticket_id,
                "priority": priority,
                "status": status,
                "group_id": 7,
                "responder_id": 42,
                "subject": "fake ticket",
                "updated_at": datetime.now(UTC).isoformat(),
            }

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._tickets.get(ticket_id)
            return dict(found) if found is not None else None

    @property
    def requests(self) -> list[ApiRequest]:
        with self._lock:
            return list(self._requests)

    def notes(self) -> Counter[int]:
        """Private notes added, per ticket id."""
        return Counter(
            r.ticket_id
            for r in self.requests
            if r.method == "POST" and r.path.endswith("/notes") and r.ticket_id is not None
        )

    def _handle(self, handler: _Handler) -> None:
        at = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        if len(raw) < length:
            handler.close_connection = True
            return
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = handler.path.split("?", 1)[0]
        with self._lock:
            status, payload = self._answer(handler.command, path, body)
            self._requests.append(ApiRequest(at, handler.command, handler.path, body, status))
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """(status, JSON answer); called with the lock held."""
        if not path.startswith(PREFIX + "/"):
            return 404, {"code": "not_found"}
        parts = path.removeprefix(PREFIX).strip("/").split("/")
        if parts == ["groups"] and method == "GET":
            return 200, list(GROUPS)
        if len(parts) < 2 or parts[0] != "tickets" or not parts[1].isdigit():
            return 404, {"code": "not_found"}
        ticket = self._tickets.get(int(parts[1]))
        if ticket is None:
            return 404, {"code": "not_found"}
        if len(parts) == 2 and method == "GET":
            return 200, ticket
        if len(parts) == 2 and method == "PUT" and isinstance(body, dict):
            for key in ("status", "priority", "group_id", "responder_id"):
                if key in body:
                    ticket[key] = body[key]
            ticket["updated_at"] = datetime.now(UTC).isoformat()
            return 200, ticket
        if parts[2:] == ["notes"] and method == "POST" and isinstance(body, dict):
            note = {"id": self._next_note, "body": body.get("body"), "private": True}
            self._next_note += 1
            return 201, note
        return 405, {"code": "method_not_allowed"}
