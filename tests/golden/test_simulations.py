"""Golden files: the simulation of every timeline in examples/timelines under the built-in
policy, compared with tests/data/golden/<name>.json.

After a deliberate change to the rules, the policy or the simulation, regenerate them with
``TB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden`` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.app.policy_file import parse_policy
from ticketbridge.app.simulation.simulate import simulate
from ticketbridge.app.simulation.timeline import parse_timeline
from ticketbridge.rules import Policy

ROOT = Path(__file__).resolve().parents[2]
TIMELINES = ROOT / "examples" / "timelines"
GOLDEN = Path(__file__).parents[1] / "data" / "golden"
UPDATE = os.environ.get("TB_UPDATE_GOLDEN") == "1"
HOW = "regenerate with TB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden and review the diff"


def timelines() -> list[Path]:
    return sorted(TIMELINES.glob("*.yaml"))


def simulated(path: Path, policy: Policy) -> dict[str, Any]:
    timeline = parse_timeline(path.read_text(encoding="utf-8"), source=str(path.relative_to(ROOT)))
    result: dict[str, Any] = simulate(timeline, policy).model_dump(mode="json")
    return result


def test_there_are_timelines_for_every_path_of_the_procedure() -> None:
    names = {p.stem for p in timelines()}
    assert {
        "urgent-unresolved",
        "high-unresolved",
        "medium-unresolved",
        "low-unresolved",
        "pending-auto-close",
        "retriage-urgent-to-medium",
        "system-wide-tag",
        "followup-tag",
        "duplicates-and-late",
        "resolved-with-write-up",
    } <= names


@pytest.mark.parametrize("path", timelines(), ids=lambda p: p.stem)
def test_simulation_matches_its_golden_file(path: Path, policy: Policy) -> None:
    actual = simulated(path, policy)
    golden = GOLDEN / f"{path.stem}.json"
    if UPDATE:
        text = json.dumps(actual, indent=2, ensure_ascii=False) + "\n"
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden.name} is missing: {HOW}"
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert actual == expected, f"the simulation of {path.name} changed: {HOW}"


def test_every_golden_file_has_its_timeline() -> None:
    stems = {p.stem for p in timelines()}
    orphans = sorted(p.name for p in GOLDEN.glob("*.json") if p.stem not in stems)
    assert orphans == []


def test_a_policy_change_shows_in_the_output(policy: Policy) -> None:
    """The comparison is sensitive: a 45m Tier-One window for Urgent moves the bridge."""
    document = policy.model_dump(mode="json")
    document["priorities"]["urgent"]["tier_one"]["within"] = "45m"
    changed = parse_policy(json.dumps(document))
    path = TIMELINES / "urgent-unresolved.yaml"
    expected = json.loads((GOLDEN / "urgent-unresolved.json").read_text(encoding="utf-8"))
    actual = simulated(path, changed)
    assert actual != expected
    [bridge] = [e for e in actual["effects"] if e["kind"] == "bridge"]
    assert (bridge["offset"], bridge["cause"]) == ("45m", "timer tier_one")
