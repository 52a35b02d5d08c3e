"""``ticketbridge simulate``, ``ticketbridge explain`` and ``ticketbridge policy diff``.

Exit codes: 0 done (``policy diff``: the effects are identical), 1 ``policy diff``: they
differ / ``explain``: no such ticket or the store is unavailable, 2 an invalid or unreadable
timeline, policy or option.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ticketbridge.app.services.explain import Explanation
    from ticketbridge.app.simulation.simulate import SimulationResult
    from ticketbridge.app.simulation.timeline import Timeline
    from ticketbridge.rules import Policy

policy_cli = typer.Typer(
    no_args_is_help=True, help="Policy files: compare what two of them do to ticket timelines."
)

PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        envvar="TICKETBRIDGE_POLICY_FILE",
        help="Policy YAML (default: TICKETBRIDGE_POLICY_FILE, else the built-in policy).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HorizonOption = Annotated[
    str | None,
    typer.Option(
        help="Run on this long after the last event, e.g. 8h (default: the timeline's "
        "`horizon`, else until no timer is pending, at most 30d)."
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def _load_policy(path: Path | None) -> Policy:
    from ticketbridge.app.policy_file import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise _fail(str(exc)) from None


def _load_timeline(path: Path) -> Timeline:
    from ticketbridge.app.simulation.timeline import TimelineError, parse_timeline

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_timeline(text, source=str(path))
    except TimelineError as exc:
        raise _fail(str(exc)) from None


def _horizon(value: str | None) -> timedelta | None:
    from ticketbridge.app.simulation.timeline import parse_offset

    if value is None:
        return None
    try:
        return parse_offset(value)
    except ValueError as exc:
        raise _fail(f"--horizon: {exc}") from None


def _columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows aligned in columns; the last column runs on unpadded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in (header, *rows)
    ]


def render_simulation(result: SimulationResult) -> str:
    """The simulation as a table of effects (offset, target, kind, why), then its events,
    the notes behind the effects, and how the run ended."""
    lines = [f"# {result.ticket} under policy {result.policy}, starting {result.start}"]
    rows = [(e.offset, e.target, e.kind, e.reason) for e in result.effects]
    lines += _columns(("OFFSET", "TARGET", "KIND", "WHY"), rows) if rows else ["(no effects)"]
    lines.append("")
    lines.append("events:")
    for ev in result.events:
        again = f" (repeat of #{ev.repeat_of})" if ev.repeat_of else ""
        lines.append(
            f"  #{ev.number} {ev.offset} {ev.event}{again}: {ev.priority}, {ev.status} -> "
            f"{ev.outcome}, {ev.effects} effect(s)"
        )
    if result.notes:
        lines.append("notes:")
        lines += [f"  {n.offset} {n.note}" for n in result.notes]
    ended = {
        "quiet": "no timer pending",
        "horizon": "at the horizon",
        "steps": "step budget exhausted",
    }[result.stopped]
    lines.append(f"ended at {result.end_offset} ({result.end_at}): {ended}")
    lines += [
        f"  still pending: {t.kind} due {t.due_offset} ({t.rule})" for t in result.pending_timers
    ]
    return "\n".join(lines)


def simulate_command(
    timeline: Annotated[
        Path, typer.Argument(metavar="TIMELINE.yaml", help="A ticket timeline (docs/simulate.md).")
    ],
    policy: PolicyOption = None,
    json_output: JsonOption = False,
    horizon: HorizonOption = None,
) -> None:
    """Run a ticket timeline through the rules: the effects it causes, when and why.

    Nothing is sent and nothing is stored: the service's own code runs on a throwaway
    in-memory store with a virtual clock.
    """
    from ticketbridge.app.simulation.simulate import simulate

    loaded = _load_timeline(timeline)
    result = simulate(loaded, _load_policy(policy), horizon=_horizon(horizon))
    typer.echo(result.model_dump_json(indent=2) if json_output else render_simulation(result))


def render_explanation(found: Explanation) -> str:
    lines = [
        f"# {found.source}/{found.ticket_id}: {found.priority}, {found.status}; opened "
        f"{found.opened_at}; policy {found.policy} (version {found.policy_version})"
    ]
    if found.policy_note:
        lines.append(f"# note: {found.policy_note}")
    rows = [
        (
            c.name,
            c.state,
            c.due_at or "-",
            c.at or "-",
            f"{c.rule}" + (f" — {c.detail}" if c.detail and c.detail != c.rule else ""),
        )
        for c in found.commitments
    ]
    lines += _columns(("COMMITMENT", "STATE", "DUE", "SETTLED", "RULE"), rows)
    return "\n".join(lines)


def explain_command(
    source: Annotated[str, typer.Argument(help="The ticket's source, e.g. freshdesk.")],
    ticket_id: Annotated[str, typer.Argument(metavar="TICKET_ID", help="The ticket's id.")],
    json_output: JsonOption = False,
) -> None:
    """Every commitment of a live ticket: due time, state, and the rule and policy behind it.

    Reads the database named by TICKETBRIDGE_DATABASE_URL; the ticket's pinned policy comes
    from it too (or TICKETBRIDGE_POLICY_FILE when the pinned one is the one in force).
    """
    from ticketbridge.app.cli.effects import _store
    from ticketbridge.app.cli.main import _settings_or_exit
    from ticketbridge.app.services.explain import explain_ticket
    from ticketbridge.app.services.ingest import PolicyBook
    from ticketbridge.app.settings import Settings

    settings = _settings_or_exit()
    assert isinstance(settings, Settings)
    policies = PolicyBook(_load_policy(settings.policy_file))
    with _store() as store:
        found = explain_ticket(store, policies, source, ticket_id)
    if found is None:
        typer.echo(f"no ticket {source}/{ticket_id}", err=True)
        raise typer.Exit(1)
    typer.echo(found.model_dump_json(indent=2) if json_output else render_explanation(found))


def _timeline_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise _fail(f"--timelines {folder}: no such file or directory")
    found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not found:
        raise _fail(f"--timelines {folder}: no *.yaml timelines in it")
    return found


@policy_cli.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(metavar="OLD.yaml", help="The policy in force.")],
    new: Annotated[Path, typer.Argument(metavar="NEW.yaml", help="The changed policy.")],
    timelines: Annotated[
        Path,
        typer.Option(
            "--timelines", metavar="DIR", help="A folder of timeline YAML files (or one file)."
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Simulate every timeline under both policies and print the effects that change.

    Exit code 0: identical effects for every timeline; 1: some differ (added, removed, moved
    in time, or changed reason); 2: a file is invalid.
    """
    import json

    from ticketbridge.app.simulation.policy_diff import diff_results, render_diff
    from ticketbridge.app.simulation.simulate import simulate

    before, after = _load_policy(old), _load_policy(new)
    files = _timeline_files(timelines)
    loaded = [(path, _load_timeline(path)) for path in files]
    diffs = [
        diff_results(path.name, simulate(timeline, before), simulate(timeline, after))
        for path, timeline in loaded
    ]
    differing = sum(not d.identical for d in diffs)
    if json_output:
        typer.echo(json.dumps([d.model_dump(mode="json") for d in diffs], indent=2))
    else:
        typer.echo(f"# {old} ({before.fingerprint}) -> {new} ({after.fingerprint})")
        for d in diffs:
            typer.echo(render_diff(d))
        typer.echo(f"{differing} of {len(diffs)} timeline(s) differ")
    if differing:
        raise typer.Exit(1)
