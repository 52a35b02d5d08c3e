"""View models: what the console's pages show, in words a team lead reads at a glance."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ticketbridge.adapters.store.console import Board, Commitment
from ticketbridge.rules import Policy, Priority

PRIORITIES = tuple(p.value for p in Priority)  # urgent first


def span(seconds: float) -> str:
    """A duration as a person says it: "45 s", "12 min", "3 h 5 min", "2 d"."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 48 * 3600:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{s // 86400} d"


def when(epoch: float | None) -> str:
    """An epoch time as UTC text to the second ("" for none)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stamp(value: str | None, now: float) -> str:
    """An ISO time as UTC text with how far it is from ``now`` ("—" for none)."""
    if not value:
        return "—"
    at = datetime.fromisoformat(value).timestamp()
    rel = f"in {span(at - now)}" if at >= now else f"{span(now - at)} ago"
    return f"{when(at)} ({rel})"


def ago(epoch: float | None, now: float) -> str:
    return "" if epoch is None else f"{span(now - epoch)} ago"


@dataclass(frozen=True)
class Line:
    """One ticket on the Now page: its next commitment as words, and whether it breached."""

    source: str
    ticket_id: str
    subject: str
    status: str
    text: str
    due_at: float
    breached: bool


@dataclass
class Group:
    priority: str
    label: str
    count: int
    lines: list[Line] = field(default_factory=list)

    @property
    def breached(self) -> int:
        return sum(1 for line in self.lines if line.breached)


def describe(c: Commitment, policy: Policy, now: float) -> tuple[str, bool]:
    """The commitment as a countdown ("engagement due in 45 min") and whether it is overdue."""
    left = c.due_at - now
    late = left < 0
    kind = c.kind
    if kind == "tier_one":
        then = "→ bridge"
        with contextlib.suppress(KeyError, ValueError):
            then = f"→ {policy.for_priority(Priority(c.state['priority'])).tier_one.then}"
        if late:
            return f"Tier-One expired {span(left)} ago {then}", True
        return f"Tier-One expires in {span(left)} {then}", False
    name = {
        "engagement": "engagement",
        "customer_update": "customer update",
        "auto_close": "auto-close",
        "write_up": "write-up",
    }.get(kind, kind)
    if kind == "auto_close":
        return (
            (f"auto-close overdue {span(left)}", True)
            if late
            else (
                f"auto-close in {span(left)}",
                False,
            )
        )
    if late:
        return f"{name} overdue {span(left)}", True
    return f"{name} due in {span(left)}", False


def now_groups(board: Board, policy: Policy, now: float) -> list[Group]:
    """Active tickets by priority, each with its next commitment; breached ones first."""
    groups = {p: Group(p, Priority(p).label, board.open_by_priority.get(p, 0)) for p in PRIORITIES}
    seen: set[tuple[str, str]] = set()
    for c in board.breached:
        key = (c.source, c.ticket_id)
        if key in seen or c.state.get("priority") not in groups:
            continue
        seen.add(key)
        line = Line(
            c.source,
            c.ticket_id,
            str(c.state.get("subject", "")),
            str(c.state.get("status_label", "")),
            f"engagement breached {span(now - c.due_at)} ago",
            c.due_at,
            True,
        )
        groups[c.state["priority"]].lines.append(line)
    for c in board.upcoming:
        key = (c.source, c.ticket_id)
        if key in seen or c.state.get("priority") not in groups:
            continue
        seen.add(key)
        text, late = describe(c, policy, now)
        reminders = int(c.state.get("update_reminders") or 0)
        if c.kind == "customer_update" and reminders and not late:
            text += f" ({reminders} missed)"
            late = True
        line = Line(
            c.source,
            c.ticket_id,
            str(c.state.get("subject", "")),
            str(c.state.get("status_label", "")),
            text,
            c.due_at,
            late,
        )
        groups[c.state["priority"]].lines.append(line)
    for group in groups.values():
        group.lines.sort(key=lambda line: (not line.breached, line.due_at))
    return list(groups.values())


@dataclass(frozen=True)
class LinkOut:
    """One place outside ticketbridge the ticket lives: a link when the vendor gave a URL."""

    label: str
    text: str
    href: str | None = None


def _web(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


_ISSUE_LABELS = {"write_up": "Write-up issue", "followup": "Follow-up issue"}


def links_out(effects: list[dict[str, Any]]) -> list[LinkOut]:
    """The VictorOps incident, GitHub issues and status-page incident of a ticket, built only
    from the sent effects (the page's entity id, the others' stored result), never from
    settings: no vendor URL or key can reach the page."""
    out: list[LinkOut] = []
    pages = [e for e in effects if e["target"] == "victorops" and e["status"] == "sent"]
    entity = (pages[-1].get("payload") or {}).get("entity_id") if pages else None
    for e in effects:
        result = e.get("result")
        if e["status"] != "sent" or not isinstance(result, dict):
            continue
        if e["target"] == "victorops_bridge" and result.get("incident_number"):
            out.append(LinkOut("VictorOps incident", f"#{result['incident_number']}"))
            if _web(result.get("bridge_url")):
                out.append(LinkOut("Bridge", str(result["bridge_url"]), _web(result["bridge_url"])))
        elif e["target"] == "github" and _web(result.get("issue_url")):
            label = _ISSUE_LABELS.get(e["kind"], "GitHub issue")
            number = result.get("issue_number")
            out.append(LinkOut(label, f"#{number}" if number else "issue", result["issue_url"]))
        elif e["target"] == "statuspage" and e["kind"] == "open" and result.get("incident_id"):
            href = _web(result.get("shortlink"))
            out.append(LinkOut("Status-page incident", href or str(result["incident_id"]), href))
    if entity:
        out.insert(0, LinkOut("VictorOps entity", str(entity)))
    return out
