"""Country holidays are merged into policy calendars by the app layer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import holidays
import pytest

from ticketbridge.app.holidays import resolve_country_holidays
from ticketbridge.rules import Policy
from ticketbridge.rules.calendar import BusinessCalendar
from ticketbridge.rules.policy import CalendarSpec, Weekday

WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)


def with_calendar(policy: Policy, key: str, spec: CalendarSpec) -> Policy:
    return policy.model_copy(update={"calendars": {**policy.calendars, key: spec}})


US_24X5 = CalendarSpec(
    timezone="America/New_York",
    days=WEEKDAYS,
    holidays=(date(2026, 12, 24), date(2026, 12, 25)),
    holiday_country="US",
)


def test_country_holidays_are_merged_with_explicit_ones(policy: Policy) -> None:
    original = with_calendar(policy, "us", US_24X5)
    resolved = resolve_country_holidays(original, years=range(2026, 2027))
    days = resolved.calendars["us"].holidays
    # The package's own answer: July 4th 2026 is a Saturday, observed on Friday the 3rd.
    assert date(2026, 7, 3) in holidays.country_holidays("US", years=2026)
    assert {date(2026, 7, 3), date(2026, 11, 26), date(2026, 1, 1)} <= set(days)
    assert date(2026, 12, 24) in days  # explicit, not a US federal holiday: kept
    assert list(days) == sorted(set(days))  # sorted, 2026-12-25 only once
    assert {d.year for d in days} == {2026}
    # Everything else is untouched, and the input policy is not modified.
    assert resolved.calendars["weekdays"] == original.calendars["weekdays"]
    assert resolved.calendars["us"].holiday_country == "US"
    assert original.calendars["us"].holidays == US_24X5.holidays
    assert resolved.priorities == original.priorities


def test_every_year_of_the_range_is_resolved(policy: Policy) -> None:
    resolved = resolve_country_holidays(
        with_calendar(policy, "us", US_24X5), years=range(2026, 2028)
    )
    days = set(resolved.calendars["us"].holidays)
    assert {date(2026, 11, 26), date(2027, 11, 25)} <= days  # both Thanksgivings


def test_the_code_is_case_insensitive(policy: Policy) -> None:
    spec = CalendarSpec(timezone="Europe/Berlin", days=WEEKDAYS, holiday_country="de")
    resolved = resolve_country_holidays(with_calendar(policy, "de", spec), years=range(2026, 2027))
    assert date(2026, 10, 3) in resolved.calendars["de"].holidays  # German Unity Day


def test_a_policy_without_countries_is_unchanged(policy: Policy) -> None:
    assert resolve_country_holidays(policy, years=range(2026, 2027)) == policy


def test_an_unknown_country_names_the_calendar_and_the_code(policy: Policy) -> None:
    spec = CalendarSpec(days=WEEKDAYS, holiday_country="XX")
    with pytest.raises(ValueError, match=r"calendars\.support\.holiday_country.*'XX'"):
        resolve_country_holidays(with_calendar(policy, "support", spec), years=range(2026, 2027))


def test_a_resolved_calendar_closes_on_the_holiday(policy: Policy) -> None:
    resolved = resolve_country_holidays(
        with_calendar(policy, "us", US_24X5), years=range(2026, 2027)
    )
    calendar = BusinessCalendar(resolved.calendars["us"])
    # Wed 2026-11-25 20:00 EST (Thu 01:00Z) + 8h: 4h to Thu 00:00 EST (05:00Z); Thanksgiving
    # is closed; Fri 00:00 EST = 05:00Z, + 4h = 09:00Z.
    start = datetime(2026, 11, 26, 1, tzinfo=UTC)
    assert calendar.add(start, timedelta(hours=8)) == datetime(2026, 11, 27, 9, tzinfo=UTC)
