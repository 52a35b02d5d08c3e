"""The fixture file format: reading fixtures back, and writing them one recording at a time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticketbridge.adapters.inbound.sources import SOURCES
from ticketbridge.app.recording.scrub import Scrubber

# Lower-case header names a fixture keeps. Everything else is dropped, notably Authorization,
# X-Zendesk-Webhook-Signature(-Timestamp), webhook-signature and webhook-timestamp.
KEPT_HEADERS = (
    "content-type",
    "x-zendesk-webhook-id",
    "x-zendesk-webhook-invocation-id",
    "webhook-id",
)
FIXTURE_NAME = re.compile(r"(\d+)-([a-z]+)\.json")


class FixtureError(ValueError):
    """A fixture file that cannot be replayed (the message names the file, never a secret)."""


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """JSON text as UTF-8 can carry it: non-ASCII kept, escaped only when it must be (a lone
    surrogate, valid JSON but not Unicode text)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    return text


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers a fixture keeps (``KEPT_HEADERS``), names in lower case."""
    kept: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in KEPT_HEADERS and lower not in kept:
            kept[lower] = value
    return kept


def _iso_z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_datetime(value: Any) -> datetime | None:
    """An ISO-8601 time (no zone: UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Fixture:
    """One recorded webhook, as read back for replay."""

    path: Path
    source: str
    offset_seconds: float
    headers: dict[str, str]
    body: Any
    recorded_at: datetime | None = None


def _order(path: Path) -> tuple[int, str]:
    match = FIXTURE_NAME.fullmatch(path.name)
    return (int(match.group(1)) if match else 1 << 62, path.name)


def fixture_paths(arguments: Sequence[Path]) -> list[Path]:
    """Files as given; a directory contributes its ``*.json`` files in number order."""
    paths: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            paths.extend(sorted(argument.glob("*.json"), key=_order))
        else:
            paths.append(argument)
    return paths


def read_fixture(path: Path) -> Fixture:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise FixtureError(f"{path}: a fixture is a JSON object")
    source = document.get("source")
    if not isinstance(source, str) or source not in SOURCES:
        raise FixtureError(f"{path}: source must be one of {', '.join(SOURCES)}")
    offset = document.get("offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int | float) or not offset >= 0:
        raise FixtureError(f"{path}: offset_seconds must be a number >= 0")
    headers = document.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise FixtureError(f"{path}: headers must be an object of strings")
    if "body" not in document:
        raise FixtureError(f"{path}: no body")
    recorded_at = None
    if document.get("recorded_at") is not None:
        recorded_at = _iso_datetime(document["recorded_at"])
        if recorded_at is None:
            raise FixtureError(f"{path}: recorded_at must be an ISO-8601 time")
    return Fixture(
        path=path,
        source=str(source),
        offset_seconds=float(offset),
        headers={k.lower(): v for k, v in headers.items()},
        body=document["body"],
        recorded_at=recorded_at,
    )


def load_fixtures(arguments: Sequence[Path]) -> list[Fixture]:
    return [read_fixture(path) for path in fixture_paths(arguments)]


class FixtureWriter:
    """Numbers, scrubs and writes fixtures into one directory; thread-safe.

    The directory must hold no fixture yet: placeholders and offsets belong to one recording.
    Each file appears whole (written aside, then renamed).
    """

    def __init__(self, directory: Path, scrubber: Scrubber) -> None:
        self.directory = directory
        self.scrubber = scrubber
        self._lock = threading.Lock()
        self._count = 0
        self._first: float | None = None

    def check_empty(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(FIXTURE_NAME.fullmatch(p.name) for p in self.directory.iterdir()):
            raise FixtureError(
                f"{self.directory} already holds fixtures: record into an empty directory"
            )

    def write(
        self,
        source: str,
        headers: Iterable[tuple[str, str]],
        body: Any,
        arrived: float,
        wall: datetime,
    ) -> Path:
        """Write one request that arrived at ``arrived`` (monotonic seconds), ``wall`` (UTC)."""
        with self._lock:
            if self._first is None:
                self._first = arrived
            self._count += 1
            fixture = {
                "source": source,
                "offset_seconds": round(max(0.0, arrived - self._first), 3),
                "recorded_at": _iso_z(wall),
                "headers": kept_headers(headers),
                "body": self.scrubber.body(body),
            }
            path = self.directory / f"{self._count:04d}-{source}.json"
            text = dumps_json(fixture, indent=2) + "\n"
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            return path
