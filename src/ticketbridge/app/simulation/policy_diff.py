"""Compare the effects of one timeline under two policies: added, removed, moved, changed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ticketbridge.app.simulation.simulate import SimulatedEffect, SimulationResult

Change = Literal["added", "removed", "moved", "changed"]


class EffectChange(BaseModel):
    """One effect that differs; an effect is the same one under both policies when its
    idempotency key is (the key names target, ticket, kind and generation)."""

    change: Change
    key: str
    target: str
    kind: str
    old_offset: str | None
    new_offset: str | None
    old_reason: str | None
    new_reason: str | None


class TimelineDiff(BaseModel):
    timeline: str
    old_policy: str
    new_policy: str
    identical: bool
    changes: list[EffectChange]


def diff_results(name: str, old: SimulationResult, new: SimulationResult) -> TimelineDiff:
    """The effects that differ between two simulations of the same timeline, by time."""
    before = {e.key: e for e in old.effects}
    after = {e.key: e for e in new.effects}
    changes: list[tuple[str, EffectChange]] = []

    def add(change: Change, was: SimulatedEffect | None, now: SimulatedEffect | None) -> None:
        either = now or was
        assert either is not None
        changes.append(
            (
                min(e.at for e in (was, now) if e is not None),
                EffectChange(
                    change=change,
                    key=either.key,
                    target=either.target,
                    kind=either.kind,
                    old_offset=was.offset if was else None,
                    new_offset=now.offset if now else None,
                    old_reason=was.reason if was else None,
                    new_reason=now.reason if now else None,
                ),
            )
        )

    for key, was in before.items():
        now = after.get(key)
        if now is None:
            add("removed", was, None)
        elif now.at != was.at:
            add("moved", was, now)
        elif (now.reason, now.summary) != (was.reason, was.summary):
            add("changed", was, now)
    for key, now in after.items():
        if key not in before:
            add("added", None, now)
    changes.sort(key=lambda pair: pair[0])  # stable: removals before additions at one time
    return TimelineDiff(
        timeline=name,
        old_policy=old.policy,
        new_policy=new.policy,
        identical=not changes,
        changes=[c for _, c in changes],
    )


def render_diff(diff: TimelineDiff) -> str:
    """A diff as text: one line per changed effect, with its time under each policy."""
    if diff.identical:
        return f"{diff.timeline}: identical"
    lines = [f"{diff.timeline}: {len(diff.changes)} effect(s) differ"]
    for c in diff.changes:
        if c.change == "moved":
            when = f"{c.old_offset} -> {c.new_offset}"
        else:
            when = c.new_offset or c.old_offset or ""
        why = c.new_reason if c.new_reason is not None else c.old_reason
        lines.append(f"  {c.change:<8} {when:<14} {c.target} {c.kind}: {why}")
        if c.change == "changed" and c.old_reason != c.new_reason:
            lines.append(f"  {'':<8} {'':<14} (was: {c.old_reason})")
    return "\n".join(lines)
