"""The HTTP server's limits on hostile clients: uvicorn's httptools protocol with a cap on a
request head's size (431), deadlines for the head and the body (408, or the connection
closed), and a cap on open connections (503 at accept, nothing read)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, NamedTuple

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# After a refusal the connection reads and drops what the client still sends for this long,
# so that closing it does not reset the connection under the answer before the client read it.
LINGER_SECONDS = 2.0


class HttpLimits(NamedTuple):
    """What ``ticketbridge serve`` allows one client (see ``HttpSettings``)."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int


def _answer(status: int, reason: str) -> bytes:
    text = reason.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(text)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + text


CONNECTIONS_FULL = _answer(503, "Service Unavailable")
HEAD_TOO_LARGE = _answer(431, "Request Header Fields Too Large")
TOO_SLOW = _answer(408, "Request Timeout")


def protocol_class(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn as ``http``, enforcing ``limits``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` (llhttp, which has no size limit of its own) with ``limits``.

    A head is counted as it arrives, before the parser buffers it: bytes beyond
    ``max_header_bytes`` are never parsed (pipelined requests read in the same socket read as
    the previous body are counted from where the parser reports the new request: at most one
    read more). The head deadline runs from the connection's start, or from a kept-alive
    connection's next request's first byte, to the end of the head; the body deadline from
    the end of the head to the end of the body. Neither is reset by a byte arriving, so a
    byte every few seconds does not hold a connection.
    """

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_left = self.limits.max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._accepted = False
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            transport.write(CONNECTIONS_FULL)
            transport.close()
            return
        self._accepted = True
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._accepted:
            return
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        while data:
            if not self._in_head:
                super().data_received(data)
                return
            if self._head_left <= 0:
                self._refuse(HEAD_TOO_LARGE)
                return
            take = self._head_left
            chunk, data = (data, b"") if len(data) <= take else (data[:take], data[take:])
            self._head_left -= len(chunk)
            super().data_received(chunk)
            if self.transport.is_closing():
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_left = self.limits.max_header_bytes
        self._cancel_deadline()
        super().on_message_complete()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._deadline = None
        # A connection that never began a request is closed without an answer.
        if self.scope is not None and not self.transport.is_closing():
            self.transport.write(TOO_SLOW)
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_started and not self.transport.is_closing():
                self.transport.write(TOO_SLOW)
            # The app's next ``receive`` is a disconnect; whatever it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        """Answer and stop parsing; close once the client stops sending or ``LINGER_SECONDS``."""
        self._lingering = True
        self._cancel_deadline()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)
