"""``ticketbridge simulate``, ``ticketbridge policy diff`` and ``ticketbridge explain``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.e2e.test_simulate_api import SHORTER_TIER_ONE
from ticketbridge.adapters.store.engine import Store
from ticketbridge.app.cli.main import cli
from ticketbridge.app.services.ingest import PolicyBook, ingest
from ticketbridge.app.simulation.simulate import simulate
from ticketbridge.app.simulation.timeline import parse_timeline
from ticketbridge.rules import EventKind, Policy, Priority, Status, TicketEvent

ROOT = Path(__file__).resolve().parents[2]
TIMELINES = ROOT / "examples" / "timelines"
PENDING = TIMELINES / "pending-auto-close.yaml"
BASE_ENV = {"TICKETBRIDGE_SECRETS_DIR": "/nonexistent", "TICKETBRIDGE_POLICY_FILE": None}


def run(*args: str, **env: str | None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**BASE_ENV, **env})


@pytest.fixture
def shorter(tmp_path: Path) -> Path:
    path = tmp_path / "shorter.yaml"
    path.write_text(SHORTER_TIER_ONE, encoding="utf-8")
    return path


def test_simulate_prints_a_table_of_effects_with_their_reasons() -> None:
    result = run("simulate", str(PENDING))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# simulated/SIM-1 under policy 1@")
    assert lines[1].split() == ["OFFSET", "TARGET", "KIND", "WHY"]
    assert lines[2].split()[:3] == ["0m", "victorops", "page"]
    assert lines[3].split()[:3] == ["30m", "victorops_bridge", "bridge"]
    assert lines[3].endswith(
        "Tier-One window for Urgent is 30m, then bridge; unresolved at 2026-01-05T09:30:00+00:00"
    )
    assert "  #1 0m created: urgent, Open -> accepted, 1 effect(s)" in lines
    assert lines[-1] == "ended at 3d2h (2026-01-08T11:00:00+00:00): no timer pending"


def test_simulate_json_is_the_simulation_result(policy: Policy) -> None:
    result = run("simulate", str(PENDING), "--json")
    assert result.exit_code == 0, result.output
    timeline = parse_timeline(PENDING.read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == simulate(timeline, policy).model_dump(mode="json")


def test_simulate_uses_the_policy_option_or_the_policy_file_setting(shorter: Path) -> None:
    by_option = run("simulate", str(PENDING), "--json", "--policy", str(shorter))
    by_env = run("simulate", str(PENDING), "--json", TICKETBRIDGE_POLICY_FILE=str(shorter))
    for result in (by_option, by_env):
        assert result.exit_code == 0, result.output
        effects = json.loads(result.stdout)["effects"]
        assert [e["offset"] for e in effects if e["kind"] == "bridge"] == ["15m"]


def test_simulate_horizon_option_stops_the_clock() -> None:
    result = run("simulate", str(TIMELINES / "urgent-unresolved.yaml"), "--json", "--horizon", "1h")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["end_offset"], body["stopped"]) == ("1h45m", "horizon")
    assert max(e["at"] for e in body["effects"]) <= body["end_at"]
    assert [t["due_offset"] for t in body["pending_timers"]] == ["2h"]


def test_a_bad_timeline_is_exit_2_naming_the_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "events:\n  - {at: 0m, priority: urgent}\n  - at: 20m\n    event: replied\n",
        encoding="utf-8",
    )
    result = run("simulate", str(path))
    assert result.exit_code == 2
    assert f"{path}:4: events[2].event: Input should be 'created'" in result.stderr
    missing = run("simulate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2
    assert "No such file or directory" in missing.stderr
    horizon = run("simulate", str(PENDING), "--horizon", "later")
    assert (horizon.exit_code, "--horizon: invalid offset" in horizon.stderr) == (2, True)


def test_a_bad_policy_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\npriorities: {}\n", encoding="utf-8")
    result = run("simulate", str(PENDING), "--policy", str(path))
    assert result.exit_code == 2
    assert "invalid policy" in result.stderr


def test_policy_diff_of_a_policy_with_itself_is_identical_exit_0(tmp_path: Path) -> None:
    same = tmp_path / "same.yaml"
    same.write_text((ROOT / "src/ticketbridge/app/default_policy.yaml").read_text("utf-8"))
    result = run("policy", "diff", str(same), str(same), "--timelines", str(TIMELINES))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    count = len(list(TIMELINES.glob("*.yaml")))
    assert lines[-1] == f"0 of {count} timeline(s) differ"
    assert "pending-auto-close.yaml: identical" in lines


def test_policy_diff_lists_the_effects_that_change_exit_1(tmp_path: Path, shorter: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text((ROOT / "src/ticketbridge/app/default_policy.yaml").read_text("utf-8"))
    result = run("policy", "diff", str(old), str(shorter), "--timelines", str(PENDING))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "pending-auto-close.yaml: 1 effect(s) differ"
    assert lines[2].split()[:6] == ["moved", "30m", "->", "15m", "victorops_bridge", "bridge:"]
    assert lines[-1] == "1 of 1 timeline(s) differ"

    as_json = run("policy", "diff", str(old), str(shorter), "--timelines", str(PENDING), "--json")
    assert as_json.exit_code == 1
    [diff] = json.loads(as_json.stdout)
    assert diff["identical"] is False
    assert diff["changes"] == [
        {
            "change": "moved",
            "key": "victorops_bridge:simulated/SIM-1:bridge:1",
            "target": "victorops_bridge",
            "kind": "bridge",
            "old_offset": "30m",
            "new_offset": "15m",
            "old_reason": "Tier-One window for Urgent is 30m, then bridge; "
            "unresolved at 2026-01-05T09:30:00+00:00",
            "new_reason": "Tier-One window for Urgent is 15m, then bridge; "
            "unresolved at 2026-01-05T09:15:00+00:00",
        }
    ]


def test_policy_diff_shows_added_and_removed_effects(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    text = (ROOT / "src/ticketbridge/app/default_policy.yaml").read_text("utf-8")
    old.write_text(text)
    new = tmp_path / "new.yaml"
    new.write_text(
        text.replace(
            "tier_one: {within: 2h, then: reassign}", "tier_one: {within: 3h, then: reassign}"
        )
    )
    assert new.read_text() != text
    timeline = TIMELINES / "medium-unresolved.yaml"
    result = run("policy", "diff", str(old), str(new), "--timelines", str(timeline), "--json")
    assert result.exit_code == 1, result.output
    [diff] = json.loads(result.stdout)
    changes = {(c["change"], c["kind"], c["old_offset"], c["new_offset"]) for c in diff["changes"]}
    assert changes == {("moved", "reassign", "2h", "3h"), ("moved", "note", "2h", "3h")}


def test_policy_diff_refuses_bad_input_with_exit_2(tmp_path: Path, shorter: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_timelines = run("policy", "diff", str(shorter), str(shorter), "--timelines", str(empty))
    assert (no_timelines.exit_code, "no *.yaml timelines" in no_timelines.stderr) == (2, True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n")
    bad_policy = run("policy", "diff", str(bad), str(shorter), "--timelines", str(PENDING))
    assert (bad_policy.exit_code, "invalid policy" in bad_policy.stderr) == (2, True)


def opened(store: Store, policy: Policy, ticket_id: str, at: datetime) -> None:
    """An Urgent ticket opened at ``at``, through the service's own ingest."""
    policies = PolicyBook(policy)
    policies.remember_current(store, at=at.timestamp())
    event = TicketEvent(
        source="freshdesk",
        ticket_id=ticket_id,
        kind=EventKind.CREATED,
        priority=Priority.URGENT,
        status=Status.OPEN,
        status_label="Open",
    )
    ingest(store, event=event, dedup_key=f"t-{ticket_id}", now=at, policies=policies)


def test_explain_prints_every_commitment_of_a_ticket(store: Store, policy: Policy) -> None:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    opened(store, policy, "31", start)
    result = run("explain", "freshdesk", "31", TICKETBRIDGE_DATABASE_URL=store.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"# freshdesk/31: urgent, Open; opened {start.isoformat()}")
    assert lines[1].split() == ["COMMITMENT", "STATE", "DUE", "SETTLED", "RULE"]
    rows = {line.split("  ")[0]: line for line in lines[2:]}
    assert set(rows) == {
        "Initial engagement",
        "Next customer update",
        "Tier-One deadline",
        "Auto-close",
        "Post-event write-up",
    }
    due = (start + timedelta(minutes=30)).isoformat()
    assert rows["Tier-One deadline"].split()[2:4] == ["pending", due]

    as_json = run("explain", "freshdesk", "31", "--json", TICKETBRIDGE_DATABASE_URL=store.url)
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["policy"] == policy.fingerprint
    assert [c["state"] for c in body["commitments"]] == [
        "pending",
        "pending",
        "pending",
        "not_applicable",
        "not_applicable",
    ]


def test_explain_of_an_unknown_ticket_is_exit_1(store: Store) -> None:
    result = run("explain", "freshdesk", "999", TICKETBRIDGE_DATABASE_URL=store.url)
    assert result.exit_code == 1
    assert result.stderr.strip() == "no ticket freshdesk/999"
