"""Wake-ups across replicas: LISTEN on PostgreSQL, so a commit on any replica wakes them all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import psycopg
import structlog

from ticketbridge.adapters.store.rows import CHANNEL, Announcement

log = structlog.get_logger("ticketbridge.wakeups")


class PgWakeups:
    """A thread holding one LISTEN connection; each NOTIFY from another replica (not from a
    server process ``is_own`` names) calls ``on_wake`` with what it announced, on the loop.
    A replica's own commits wake its own workers directly.

    Losing the connection only costs latency (the workers still poll), so it reconnects
    after a pause rather than failing the service.
    """

    def __init__(
        self,
        conninfo: str,
        on_wake: Callable[[Announcement], None],
        loop: asyncio.AbstractEventLoop,
        is_own: Callable[[int], bool] = lambda _pid: False,
    ) -> None:
        self._conninfo = conninfo
        self._on_wake = on_wake
        self._is_own = is_own
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
                    # Whatever was announced while not listening went unheard: look now.
                    self._loop.call_soon_threadsafe(self._on_wake, Announcement())
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            if not self._is_own(notify.pid):
                                said = Announcement.decode(notify.payload)
                                self._loop.call_soon_threadsafe(self._on_wake, said)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("wakeups.listen_failed", error=type(exc).__name__)
                self._stop.wait(2.0)
