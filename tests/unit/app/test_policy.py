"""The policy file: the built-in default is docs/procedure.md's table; errors name key and line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketbridge.app.cli.main import cli
from ticketbridge.app.policy_file import PolicyError, default_policy_text, load_policy, parse_policy
from ticketbridge.rules import Policy, Priority

M = timedelta(minutes=1)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("priority", "page", "engagement", "calendar", "tier_one", "then", "updates"),
    [
        (Priority.URGENT, True, 60 * M, "always", 30 * M, "bridge", 1 * H),
        (Priority.HIGH, True, 2 * H, "weekdays", 1 * H, "bridge", 2 * H),
        (Priority.MEDIUM, False, 8 * H, "weekdays", 2 * H, "reassign", None),
        (Priority.LOW, False, 8 * H, "weekdays", 4 * H, "reassign", None),
    ],
)
def test_the_built_in_policy_is_the_design_table(
    policy: Policy,
    priority: Priority,
    page: bool,
    engagement: timedelta,
    calendar: str,
    tier_one: timedelta,
    then: str,
    updates: timedelta | None,
) -> None:
    rules = policy.for_priority(priority)
    assert rules.page is page
    assert (rules.engagement.within, rules.engagement.calendar) == (engagement, calendar)
    assert (rules.tier_one.within, rules.tier_one.then) == (tier_one, then)
    assert (rules.customer_updates.every if rules.customer_updates else None) == updates
    assert rules.write_up is not None
    assert rules.write_up.within == 24 * H


def test_the_built_in_policy_rest(policy: Policy) -> None:
    assert policy.pending.auto_close_after == 72 * H
    assert policy.escalation.reassign_group == "DDEV Live Support"
    assert policy.calendars["always"].days == tuple(policy.calendars["always"].days)
    assert [d.value for d in policy.calendars["weekdays"].days] == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]
    assert (policy.tags.system_wide, policy.tags.followup) == ("system-wide", "github-followup")


def test_durations_go_down_to_seconds() -> None:
    text = default_policy_text().replace("within: 30m, then: bridge", "within: 45s, then: bridge")
    assert parse_policy(text).for_priority(Priority.URGENT).tier_one.within == timedelta(seconds=45)


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "message"),
    [
        (
            "within: 60m",
            "within: 60x",
            "priorities.urgent.engagement.within",
            7,
            "invalid duration",
        ),
        ("pending: {", "pending: {bogus: 1, ", "pending.bogus", 15, "unknown key"),
        ("version: 1", "version: " + "v" * 41, "version", 1, "must be 1 to 40 characters"),
        (
            "then: reassign},  write_up: {within: 24h}}\n  low",
            "then: escalate},  write_up: {within: 24h}}\n  low",
            "priorities.medium.tier_one.then",
            12,
            "Input should be 'bridge' or 'reassign'",
        ),
        (
            "medium: {page: false",
            "medium: {page: true",
            "priorities.medium.page",
            11,
            "only urgent and high may page",
        ),
        (
            "calendar: always}",
            "calendar: nowhere}",
            "priorities.urgent.engagement.calendar",
            7,
            "unknown calendar 'nowhere'",
        ),
        (
            "{timezone: UTC}",
            "{timezone: Mars/Olympus}",
            "calendars.always.timezone",
            3,
            "unknown IANA time zone",
        ),
        ("within: 0m", "within: 0m", "", 0, ""),
    ],
)
def test_bad_values_name_the_key_and_the_line(
    old: str, new: str, key: str, line: int, message: str
) -> None:
    text = default_policy_text()
    if old == new:  # zero is not a duration
        text = text.replace("within: 60m", "within: 0m")
        key, line, message = "priorities.urgent.engagement.within", 7, "must be greater than zero"
    else:
        assert old in text
        text = text.replace(old, new, 1)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    problems = {(k, ln): msg for k, ln, msg in info.value.problems}
    assert (key, line) in problems, info.value.problems
    assert message in problems[(key, line)]
    assert f"p.yaml:{line}: {key}: " in str(info.value)


def test_yaml_syntax_errors_name_the_line() -> None:
    with pytest.raises(PolicyError, match=r"p.yaml:3: \(syntax\)"):
        parse_policy("version: 1\ncalendars: [\n", source="p.yaml")


def test_a_missing_priority_is_an_error() -> None:
    text = default_policy_text().split("  low:")[0] + "pending: {auto_close_after: 72h}\n"
    text += "escalation: {reassign_group: X}\n"
    with pytest.raises(PolicyError, match="missing low"):
        parse_policy(text)


def test_the_fingerprint_changes_with_any_value(policy: Policy) -> None:
    other = parse_policy(default_policy_text().replace("72h", "48h"))
    assert other.fingerprint != policy.fingerprint
    assert other.fingerprint.startswith("1@")


def test_a_copy_with_changes_has_its_own_fingerprint(policy: Policy) -> None:
    before = policy.fingerprint  # worked out (and kept) before the copy is made
    copied = policy.model_copy(update={"version": "2"})
    assert copied.fingerprint.startswith("2@")
    assert copied.fingerprint.split("@")[1] != before.split("@")[1]
    assert policy.fingerprint == before
    assert policy.model_copy().fingerprint == before


def test_check_policy_prints_the_policy_or_the_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check-policy"])
    assert ok.exit_code == 0
    assert "valid" in ok.output
    assert "reassign_group: DDEV Live Support" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(default_policy_text().replace("within: 4h", "within: soon"))
    result = runner.invoke(cli, ["check-policy", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:14: priorities.low.tier_one.within: invalid duration 'soon'" in result.output


def test_load_policy_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="No such file"):
        load_policy(tmp_path / "absent.yaml")


def test_country_holidays_are_merged_into_the_calendar() -> None:
    text = default_policy_text().replace(
        "weekdays: {timezone: UTC, days: [mon, tue, wed, thu, fri]}",
        "weekdays: {timezone: America/New_York, days: [mon, tue, wed, thu, fri], "
        "holiday_country: US, holidays: [2026-12-24]}",
    )
    calendar = parse_policy(text).calendars["weekdays"]
    assert date(2026, 11, 26) in calendar.holidays  # Thanksgiving
    assert date(2026, 12, 24) in calendar.holidays  # the explicit one stays


def test_an_unknown_holiday_country_names_the_key_and_line() -> None:
    text = default_policy_text().replace(
        "always:   {timezone: UTC}", "always: {holiday_country: XX}"
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert info.value.problems == [
        ("calendars.always.holiday_country", 3, "unknown country code 'XX'")
    ]
