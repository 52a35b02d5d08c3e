"""Wake-ups across replicas: LISTEN on PostgreSQL, so a commit on any replica wakes them all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import psycopg
import structlog

from ticketbridge.adapters.store.sql import CHANNEL

log = structlog.get_logger("ticketbridge.wakeups")


class PgWakeups:
    """A thread holding one LISTEN connection; each NOTIFY calls ``on_wake`` on the loop.

    Losing the connection only costs latency (the workers still poll), so it reconnects
    after a pause rather than failing the service.
    """

    def __init__(
        self, conninfo: str, on_wake: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._conninfo = conninfo
        self._on_wake = on_wake
        self._loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._loop.call_soon_threadsafe(self._on_wake)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("wakeups.listen_failed", error=type(exc).__name__)
                self._stop.wait(2.0)
