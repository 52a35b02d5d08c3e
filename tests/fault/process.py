"""Run ``ticketbridge serve`` as a real child process: start, probe, SIGKILL, restart, stop.

Every wait is bounded; a process that dies or never becomes healthy raises ``ServerFailed``
with the tail of its log, so a fault test fails with the reason instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

TICKETBRIDGE = Path(sys.executable).parent / "ticketbridge"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ServerFailed(AssertionError):
    """The service did not start, died, or did not stop in time."""


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A hermetic environment: no inherited TICKETBRIDGE_* or proxy variables, no secrets
    directory, plus ``settings`` (names without the ``TICKETBRIDGE_`` prefix)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TICKETBRIDGE_") and key.lower() not in PROXY_VARIABLES
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["TICKETBRIDGE_SECRETS_DIR"] = str(tmp_path / "no-secrets-dir")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"TICKETBRIDGE_{name.upper()}": value for name, value in settings.items()})
    return env


class TicketbridgeProcess:
    """One ``ticketbridge serve`` at a fixed port, restartable after a kill."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None):
        self.env = dict(env)
        self.port = port if port is not None else free_port()
        self.log_path = log_path
        self.starts = 0
        self.kills = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError("already running")
        self._reap()
        self.starts += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [str(TICKETBRIDGE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float) -> float:
        """Poll ``/healthz`` until 200; return the seconds it took. Raises ServerFailed."""
        started = time.monotonic()
        deadline = started + timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0, trust_env=False) as client:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    raise ServerFailed(
                        f"ticketbridge exited with {code} before it was healthy\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return time.monotonic() - started
                if time.monotonic() >= deadline:
                    raise ServerFailed(
                        f"ticketbridge not healthy within {timeout:.0f} s\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL and reap (no chance to drain, flush or release anything)."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServerFailed(f"ticketbridge was not running when killed\n{self.log_tail()}")
        self._proc.send_signal(signal.SIGKILL)
        self.kills += 1
        self._reap()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; idempotent, safe in finalizers."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired as exc:  # pragma: no cover - a kernel problem
                raise ServerFailed(f"ticketbridge pid {self._proc.pid} did not die") from exc
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path}:\n{tail}"
