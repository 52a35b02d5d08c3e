"""What an incident leaves behind: the recorded timeline, the post-event write-up and follow-up
GitHub issues, and the status-page incident of a system-wide ticket (docs/procedure.md).

Pure like the rest of ``rules``: the effects carry everything the adapters need, keyed so that
each happens once (``github:<ticket>:write_up:1`` is the write-up whatever the retries).
"""

from __future__ import annotations

from datetime import datetime
from typing import Unpack

from ticketbridge.rules.durations import format_duration
from ticketbridge.rules.effects import key_of, note, title_of
from ticketbridge.rules.fields import (
    TicketUpdate,
    new_effect,
    new_milestone,
    updated,
    updated_page,
)
from ticketbridge.rules.model import (
    Effect,
    Milestone,
    Status,
    StatusPageState,
    TicketState,
)
from ticketbridge.rules.policy import PRIORITY_PLACEHOLDER, Policy

GITHUB = "github"
STATUS_PAGE = "statuspage"
MAX_HISTORY = 200
COMPONENT_TAG = "component:"
MAX_COMPONENTS = 20


# --- the recorded timeline ------------------------------------------------------------------


def record(
    state: TicketState, at: datetime, *entries: str, **changes: Unpack[TicketUpdate]
) -> TicketState:
    """``state`` with ``entries`` appended to its timeline, in order, and with ``changes``
    made to its fields, in one copy of the state."""
    history = state.history
    for what in entries:
        history = _appended(history, at, what)
    if history is not state.history:
        changes["history"] = history
    return state.model_copy(update=changes) if changes else state


def _appended(history: tuple[Milestone, ...], at: datetime, what: str) -> tuple[Milestone, ...]:
    """``history`` with ``what`` at ``at`` appended (bounded; the last entry is always kept,
    so a long-lived ticket's resolution still shows)."""
    for earlier in reversed(history):
        if earlier.at != at:
            break
        if earlier.what == what:
            return history  # the same event applied twice records it once
    entry = new_milestone(at=at, what=what)
    if len(history) >= MAX_HISTORY:
        history = history[: MAX_HISTORY - 1]
    return (*history, entry)


def _stamp(at: datetime) -> str:
    """``at.strftime("%Y-%m-%d %H:%M:%S UTC")``, formatted directly (strftime is the slow
    part of a long write-up); strftime itself below the year 1000, where its %Y is the
    platform's."""
    if at.year < 1000:
        return at.strftime("%Y-%m-%d %H:%M:%S UTC")
    fields = (at.year, at.month, at.day, at.hour, at.minute, at.second)
    return "%d-%02d-%02d %02d:%02d:%02d UTC" % fields  # noqa: UP031


# --- GitHub: the post-event write-up and follow-up issues ------------------------------------


def _labels(labels: tuple[str, ...], state: TicketState) -> list[str]:
    priority = state.priority.value
    rendered = (label.replace(PRIORITY_PLACEHOLDER, priority) for label in labels)
    return list(dict.fromkeys(rendered))  # in order, once each


def _issue(
    state: TicketState, kind: str, generation: object, payload: dict[str, object], reason: str
) -> Effect:
    key = key_of(GITHUB, state, kind, generation)
    return new_effect(
        target=GITHUB,
        kind=kind,
        key=key,
        reason=reason,
        payload={"action": "create_issue", "marker": key, **payload},
    )


def write_up_body(state: TicketState, due: datetime) -> str:
    """The write-up issue's Markdown: the recorded timeline, the link, sections to fill in."""
    rows = "\n".join(f"| {_stamp(m.at)} | {m.what.replace('|', '/')} |" for m in state.history)
    return (
        f"Post-event write-up for **{title_of(state)}**.\n\n"
        f"- Ticket: {state.url or f'{state.source} #{state.ticket_id}'}\n"
        f"- Priority: {state.priority.label}\n"
        f"- Policy: `{state.policy}`\n"
        f"- Write-up due: {_stamp(due)}\n\n"
        "## Timeline\n\n| time | what happened |\n|---|---|\n"
        f"{rows}\n\n"
        "## Summary\n\n_What happened, who was affected, and for how long._\n\n"
        "## Solution\n\n_What resolved it._\n\n"
        "## Lessons learned\n\n_What we change so it does not happen again._\n"
    )


def write_up(state: TicketState, policy: Policy, at: datetime) -> tuple[datetime, Effect]:
    """Open the write-up issue at resolution ``at``; returns when its reminder is due
    (``within`` after, the ticket's ``write_up_due``) and the effect."""
    spec = policy.for_priority(state.priority).write_up
    assert spec is not None  # the caller checked the policy asks for one
    due = at + spec.within
    reason = (
        f"post-event write-up for {state.priority.label} due within "
        f"{format_duration(spec.within)} of resolution"
    )
    effect = _issue(
        state,
        "write_up",
        1,
        {
            "title": f"Post-event write-up: {title_of(state)}",
            "body": write_up_body(state, due),
            "labels": _labels(spec.labels, state),
        },
        reason,
    )
    return due, effect


def write_up_reminder(state: TicketState, rule: str) -> Effect:
    """Comment once on the write-up issue if it is still open at its deadline; when the comment
    is made, a private note on the ticket records the missed commitment."""
    issue_key = key_of(GITHUB, state, "write_up", 1)
    due = state.write_up_due
    when = _stamp(due) if due is not None else "its deadline"
    breach = note(
        state,
        "write-up-overdue",
        f"Post-event write-up overdue: {rule}; its GitHub issue was still open at {when}.",
        rule,
        kind="write_up_note",
    )
    key = key_of(GITHUB, state, "write_up_reminder", 1)
    return new_effect(
        target=GITHUB,
        kind="write_up_reminder",
        key=key,
        reason=rule,
        payload={
            "action": "comment",
            "marker": key,
            "only_if_open": True,
            "uses": {"issue": issue_key},
            "priority": state.priority.value,
            "body": f"Reminder: this post-event write-up was due by {when} ({rule}). "
            "Please fill in the summary, the solution and the lessons learned, then close it.",
            "then": [breach.model_dump(mode="json")],
        },
    )


def followup(
    state: TicketState,
    policy: Policy,
    *,
    why: str,
    title: str | None = None,
    text: str | None = None,
) -> tuple[TicketState, Effect]:
    """One more follow-up issue linked to the ticket (each tag occurrence or admin call)."""
    state = updated(state, followups=state.followups + 1)
    ticket = state.url or f"{state.source} #{state.ticket_id}"
    body = f"Follow-up work from {title_of(state)}.\n\n- Ticket: {ticket}\n- Requested: {why}\n"
    if text:
        body += f"\n{text}\n"
    effect = _issue(
        state,
        "followup",
        state.followups,
        {
            "title": title or f"Follow-up: {title_of(state)}",
            "body": body,
            "labels": _labels(policy.followups.labels, state),
        },
        why,
    )
    return state, effect


def new_followups(before: TicketState | None, tags: tuple[str, ...], policy: Policy) -> int:
    """1 when the follow-up tag appears (it was not on the ticket before), else 0."""
    tag = policy.tags.followup.lower()
    had = before is not None and tag in (t.lower() for t in before.tags)
    return int(not had and tag in (t.lower() for t in tags))


# --- the status page --------------------------------------------------------------------------


def components_of(tags: tuple[str, ...]) -> tuple[str, ...]:
    """Components named by ``component:<name>`` tags."""
    found = (t[len(COMPONENT_TAG) :].strip() for t in tags if t.lower().startswith(COMPONENT_TAG))
    return tuple(dict.fromkeys(c for c in found if c))[:MAX_COMPONENTS]


def declares_system_wide(tags: tuple[str, ...], policy: Policy) -> bool:
    tag = policy.tags.system_wide.lower()
    return any(t.lower() == tag for t in tags)


def _stage(state: TicketState) -> str:
    if not state.status.is_active:
        return "resolved"
    if state.status is Status.PENDING:
        return "monitoring"
    if state.tier_two_engaged:
        return "identified"
    return "investigating"


_MESSAGES = {
    "investigating": "We are investigating an issue affecting {what}.",
    "identified": "The issue affecting {what} has been identified and is being worked on.",
    "monitoring": "A fix is in place for the issue affecting {what}; we are monitoring.",
    "resolved": "The issue affecting {what} is resolved.",
}


def _message(stage: str, components: tuple[str, ...]) -> str:
    return _MESSAGES[stage].format(what=", ".join(components) or "our service")


def _status_effect(
    state: TicketState, kind: str, generation: int, payload: dict[str, object], reason: str
) -> Effect:
    key = key_of(STATUS_PAGE, state, kind, generation)
    if kind != "open":
        payload = {**payload, "uses": {"incident": key_of(STATUS_PAGE, state, "open", 1)}}
    return new_effect(target=STATUS_PAGE, kind=kind, key=key, reason=reason, payload=payload)


def sync_status_page(
    state: TicketState, policy: Policy, *, components: tuple[str, ...] = ()
) -> tuple[TicketState, list[Effect]]:
    """Keep the status-page incident in step with the ticket: open it once the ticket is
    declared system-wide, update it as the ticket moves, resolve it (components back to
    operational) when the ticket resolves. One incident per ticket."""
    page = state.status_page
    if page is None and not state.system_wide:
        return state, []  # the common case, decided before any other lookup
    stage = _stage(state)
    spec = policy.status_page
    component_status = spec.component_status[state.priority]
    if page is None:
        if stage == "resolved":
            return state, []
        named = tuple(dict.fromkeys(components))[:MAX_COMPONENTS] or spec.components
        page = StatusPageState(stage=stage, components=named)
        reason = f"{state.priority.label} ticket declared system-wide: open a status-page incident"
        effect = _status_effect(
            state,
            "open",
            1,
            {
                "action": "open",
                "marker": key_of(STATUS_PAGE, state, "open", 1),
                # Unique per ticket: the adapter's fallback when a page drops metadata.
                "name": f"{spec.name} [{state.source} #{state.ticket_id}]",
                "status": stage,
                "impact": spec.impact[state.priority],
                "body": _message(stage, named),
                "components": list(named),
                "component_status": component_status,
            },
            reason,
        )
        return updated(state, status_page=page), [effect]
    if page.stage == "resolved":
        return state, []
    merged = tuple(dict.fromkeys((*page.components, *components)))[:MAX_COMPONENTS]
    if stage == "resolved":
        effect = _status_effect(
            state,
            "resolve",
            1,
            {"action": "resolve", "body": _message(stage, merged), "components": list(merged)},
            f"ticket {state.status_label.lower()}: resolve the status-page incident and restore "
            "its components to operational",
        )
        page = updated_page(page, stage=stage, components=merged)
        return updated(state, status_page=page), [effect]
    if stage == page.stage and merged == page.components:
        return state, []
    updates = page.updates + 1
    effect = _status_effect(
        state,
        "update",
        updates,
        {
            "action": "update",
            "status": stage,
            "body": _message(stage, merged),
            "components": list(merged),
            "component_status": component_status,
        },
        f"ticket now {state.status_label}"
        f"{', Tier Two engaged' if state.tier_two_engaged else ''}: status page {stage}",
    )
    page = updated_page(page, stage=stage, components=merged, updates=updates)
    return updated(state, status_page=page), [effect]
