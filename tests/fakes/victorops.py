"""A fake VictorOps (Splunk On-Call) REST endpoint integration on loopback.

It listens on 127.0.0.1 with an ephemeral port, in a background thread, and accepts
``POST /integrations/generic/20131114/alert/{api_key}/{routing_key}`` with a JSON body.
Every complete request is recorded (time, path, body, the answer given); one whose body is
cut short (the client died mid-request) is only counted, in ``aborted``. Alerts are applied with
VictorOps' incident semantics, keyed by ``entity_id``:

- ``CRITICAL`` (or ``WARNING``) for an entity with no open incident opens one (a page);
- ``CRITICAL`` while one is open folds into it (no new page);
- ``ACKNOWLEDGEMENT`` acknowledges the open incident; ``RECOVERY`` resolves it;
- ``INFO`` never opens anything.

A scripted fault schedule makes the next requests answer differently::

    with FakeVictorOps() as vo:
        vo.schedule(Fault(status=500), Fault(status=500))        # 500 twice, then normal
        vo.schedule(Fault(status=429, headers={"Retry-After": "2"}))
        vo.schedule(Fault(act=True, drop=True, delay=1.0))         # acts, then no answer
        url = vo.rest_url()                                        # give this to ticketbridge
        ...
        assert vo.incidents_opened()["freshdesk/acme/ticket/1"] == 1

Pure stdlib (``http.server``); safe to use from sync or async tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

ALERT_PREFIX = "/integrations/generic/20131114/alert/"
OPENING = frozenset({"CRITICAL", "WARNING"})
MESSAGE_TYPES = frozenset({"CRITICAL", "WARNING", "INFO", "ACKNOWLEDGEMENT", "RECOVERY"})


@dataclass(frozen=True)
class Fault:
    """How to answer one request instead of the normal 200.

    ``status``: the HTTP status to answer. ``headers``: extra response headers (e.g.
    ``Retry-After``). ``delay``: seconds to wait before answering (or before dropping).
    ``act``: apply the alert anyway (an ambiguous failure: VictorOps acted but the caller
    sees an error). ``drop``: close the connection without any answer.
    """

    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    act: bool = False
    drop: bool = False


@dataclass(frozen=True)
class AlertRequest:
    """One request as received, and what the fake did with it."""

    at: float  # time.monotonic() when the request was read
    wall: float  # time.time() at the same moment
    method: str
    path: str
    api_key: str | None
    routing_key: str | None
    headers: Mapping[str, str]
    raw: bytes
    body: Any  # parsed JSON, or None when the body was not JSON
    status: int | None  # the status answered; None when the connection was dropped
    applied: bool  # the alert changed (or was folded into) incident state
    opened: bool  # this request opened a new incident

    @property
    def entity_id(self) -> str | None:
        return self.body.get("entity_id") if isinstance(self.body, dict) else None

    @property
    def message_type(self) -> str | None:
        return self.body.get("message_type") if isinstance(self.body, dict) else None

    @property
    def effect_key(self) -> str | None:
        """ticketbridge's idempotency key (the ``ticketbridge_effect`` body field)."""
        return self.body.get("ticketbridge_effect") if isinstance(self.body, dict) else None


@dataclass
class Incident:
    number: int
    entity_id: str
    opened_at: float
    state: str = "triggered"  # triggered, acknowledged, resolved
    alerts: int = 1  # alerts folded into it, the opening one included
    resolved_at: float | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeVictorOps) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanishes mid-request (e.g. a SIGKILLed ticketbridge) is expected.
        self.fake._note_handler_error()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # an idle keep-alive connection is dropped after this
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class FakeVictorOps:
    """The fake server. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, *, api_key: str | None = None, routing_key: str | None = None) -> None:
        """``api_key``/``routing_key``: when given, other keys in the path answer 404."""
        self.api_key = api_key
        self.routing_key = routing_key
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[AlertRequest] = []
        self._faults: deque[Fault] = deque()
        self._incidents: list[Incident] = []
        self._open: dict[str, Incident] = {}
        self._handler_errors = 0
        self._aborted = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> FakeVictorOps:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-victorops-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with server.connections_lock:
            open_connections = list(server.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeVictorOps:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rest_url(self, api_key: str | None = None, routing_key: str | None = None) -> str:
        """The REST endpoint URL to configure (``TICKETBRIDGE_VICTOROPS__REST_URL``)."""
        key = api_key or self.api_key or "KEY"
        route = routing_key or self.routing_key or "RK"
        return f"{self.base_url}{ALERT_PREFIX}{key}/{route}"

    # --- fault schedule --------------------------------------------------------------------
    def schedule(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order; then normally again."""
        with self._lock:
            self._faults.extend(faults)

    def fail_next(self, count: int, status: int = 500, **kwargs: Any) -> None:
        """Shorthand: the next ``count`` requests answer ``status`` (Fault kwargs allowed)."""
        self.schedule(*(Fault(status=status, **kwargs) for _ in range(count)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # --- what happened ---------------------------------------------------------------------
    @property
    def requests(self) -> list[AlertRequest]:
        """Every request recorded so far (a copy), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def handler_errors(self) -> int:
        """Connections that failed inside the server (e.g. the client vanished)."""
        with self._lock:
            return self._handler_errors

    @property
    def aborted(self) -> int:
        """Requests cut off before their body was complete (not recorded, not acted on)."""
        with self._lock:
            return self._aborted

    def incidents(self) -> list[Incident]:
        with self._lock:
            return list(self._incidents)

    def incidents_opened(self) -> Counter[str]:
        """Incidents opened (pages) per ``entity_id``; more than 1 means paged twice."""
        with self._lock:
            return Counter(incident.entity_id for incident in self._incidents)

    def open_incidents(self) -> dict[str, Incident]:
        with self._lock:
            return dict(self._open)

    def effect_keys(self) -> Counter[str]:
        """Requests per ``ticketbridge_effect`` key (more than 1: the effect was re-sent)."""
        with self._lock:
            return Counter(r.effect_key for r in self._requests if r.effect_key is not None)

    def raw_resends(self) -> int:
        """Requests beyond the first one per effect key."""
        return sum(n - 1 for n in self.effect_keys().values())

    def wait_until(self, predicate: Callable[[FakeVictorOps], bool], *, timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after some request, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.1))

    def reset(self) -> None:
        """Forget requests, incidents and faults (the server keeps running)."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._incidents.clear()
            self._open.clear()
            self._handler_errors = 0
            self._aborted = 0

    # --- request handling (server threads) -------------------------------------------------
    def _note_handler_error(self) -> None:
        with self._lock:
            self._handler_errors += 1

    def _handle(self, handler: _Handler) -> None:
        at, wall = time.monotonic(), time.time()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        if len(raw) < length:
            # The client vanished mid-body (e.g. SIGKILLed): nothing arrived to act on.
            with self._lock:
                self._aborted += 1
            handler.close_connection = True
            return
        headers = {k.lower(): v for k, v in handler.headers.items()}
        api_key, routing_key, path_ok = self._parse_path(handler.path)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None

        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            status, payload, applied, opened = self._decide(
                handler.command, path_ok, body, fault, wall
            )
            self._requests.append(
                AlertRequest(
                    at=at,
                    wall=wall,
                    method=handler.command,
                    path=handler.path,
                    api_key=api_key,
                    routing_key=routing_key,
                    headers=headers,
                    raw=raw,
                    body=body,
                    status=None if fault is not None and fault.drop else status,
                    applied=applied,
                    opened=opened,
                )
            )
            self._changed.notify_all()

        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.drop:
            handler.close_connection = True
            return
        handler.send_json(status, payload, fault.headers if fault is not None else {})

    def _parse_path(self, path: str) -> tuple[str | None, str | None, bool]:
        if not path.startswith(ALERT_PREFIX):
            return None, None, False
        parts = path[len(ALERT_PREFIX) :].split("?", 1)[0].split("/")
        if len(parts) != 2 or not all(parts):
            return None, None, False
        api_key, routing_key = parts
        ok = (self.api_key is None or api_key == self.api_key) and (
            self.routing_key is None or routing_key == self.routing_key
        )
        return api_key, routing_key, ok

    def _decide(
        self, method: str, path_ok: bool, body: Any, fault: Fault | None, wall: float
    ) -> tuple[int, dict[str, Any], bool, bool]:
        """(status, response body, applied, opened); called with the lock held."""
        if method != "POST" or not path_ok:
            return 404, {"result": "failure", "message": "Not found"}, False, False
        valid = (
            isinstance(body, dict)
            and body.get("message_type") in MESSAGE_TYPES
            and isinstance(body.get("entity_id"), str)
            and body["entity_id"] != ""
        )
        if fault is not None and not fault.act:
            return fault.status, {"result": "failure", "message": "scripted fault"}, False, False
        if not valid:
            status = fault.status if fault is not None else 400
            return status, {"result": "failure", "message": "Malformed alert"}, False, False
        applied, opened = self._apply(body["message_type"], body["entity_id"], wall)
        if fault is not None:
            return fault.status, {"result": "failure", "message": "scripted fault"}, True, opened
        return 200, {"result": "success", "entity_id": body["entity_id"]}, applied, opened

    def _apply(self, message_type: str, entity_id: str, wall: float) -> tuple[bool, bool]:
        """VictorOps incident semantics; returns (applied, opened). Lock held."""
        current = self._open.get(entity_id)
        if message_type in OPENING:
            if current is not None:
                current.alerts += 1
                return True, False
            incident = Incident(
                number=len(self._incidents) + 1, entity_id=entity_id, opened_at=wall
            )
            self._incidents.append(incident)
            self._open[entity_id] = incident
            return True, True
        if current is None:
            return False, False
        current.alerts += 1
        if message_type == "ACKNOWLEDGEMENT":
            current.state = "acknowledged"
        elif message_type == "RECOVERY":
            current.state = "resolved"
            current.resolved_at = wall
            del self._open[entity_id]
        return True, False


def entity_ids(requests: Iterable[AlertRequest]) -> set[str]:
    """The entity ids named by these requests."""
    return {r.entity_id for r in requests if r.entity_id is not None}
