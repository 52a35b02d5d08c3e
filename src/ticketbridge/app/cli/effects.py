"""``ticketbridge effects list|retry``: dead letters and replay, straight on the database.

Same rules as ``GET /v1/effects`` and ``POST /v1/effects/{id}/retry`` (one store function
each). A running service picks a replayed effect up at its next poll
(``TICKETBRIDGE_DISPATCH__POLL_SECONDS``, 1 s by default).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ticketbridge.adapters.store.dead_letters import EffectRecord
    from ticketbridge.adapters.store.engine import Store

effects_cli = typer.Typer(
    no_args_is_help=True,
    help="Dead letters and replay: list effects by state, re-drive one dead effect.",
)


class State(StrEnum):
    dead = "dead"
    retrying = "retrying"
    pending = "pending"
    sent = "sent"
    skipped = "skipped"


@contextmanager
def _store() -> Iterator[Store]:
    """The store from settings, refusing an outdated schema like the service does."""
    from ticketbridge.adapters.store.engine import Store
    from ticketbridge.adapters.store.errors import StoreError, StoreUnavailable
    from ticketbridge.adapters.urls import redact_url
    from ticketbridge.app.cli.main import _settings_or_exit
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        try:
            current, head = store.schema_revisions()
        except StoreError as exc:  # the database cannot be read
            typer.echo(f"{redact_url(store.url)}: unavailable ({exc})", err=True)
            raise typer.Exit(1) from None
        if current != head:
            typer.echo(
                f"database schema is at {current}, this version needs {head}: "
                "run `ticketbridge migrate`",
                err=True,
            )
            raise typer.Exit(2)
        try:
            yield store
        except StoreUnavailable as exc:  # its message: the driver error's name
            typer.echo(f"{redact_url(store.url)}: unavailable ({exc})", err=True)
            raise typer.Exit(1) from None
    finally:
        store.close()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _table(records: list[EffectRecord]) -> str:
    header = ("ID", "STATUS", "TARGET", "KIND", "TICKET", "ATTEMPTS", "CODE", "UPDATED", "ERROR")
    rows = [
        (
            str(r.id),
            r.status,
            r.target,
            r.kind,
            f"{r.source}/{r.ticket_id}",
            str(r.attempts),
            "" if r.last_code is None else str(r.last_code),
            _iso(r.updated_at),
            r.last_error or "",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in (header, *rows)
    )


@effects_cli.command("list")
def list_(
    state: Annotated[State, typer.Option(help="Which effects to list.")] = State.dead,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    before_id: Annotated[
        int | None, typer.Option(min=1, help="Only ids below this (the next page).")
    ] = None,
) -> None:
    """List effects in one state, newest first (dead letters by default)."""
    from ticketbridge.adapters.store.dead_letters import list_effects

    with _store() as store:
        records, next_before_id = list_effects(
            store, status=state.value, limit=limit, before_id=before_id
        )
    if not records:
        typer.echo(f"no {state.value} effects")
        return
    typer.echo(_table(records))
    if next_before_id is not None:
        typer.echo(f"(more: --before-id {next_before_id})")


@effects_cli.command()
def retry(
    effect_id: Annotated[int, typer.Argument(min=1, metavar="ID", help="The effect's id.")],
) -> None:
    """Replay one dead effect, once (attempts start again; the timeline records it)."""
    from ticketbridge.adapters.store.dead_letters import EffectNotDead, EffectNotFound, replay_dead

    with _store() as store:
        try:
            record = replay_dead(store, effect_id, now=time.time(), via="cli")
        except (EffectNotFound, EffectNotDead) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    typer.echo(f"effect {record.id} ({record.key}) is {record.status} again: {record.last_error}")
