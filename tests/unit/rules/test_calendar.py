"""Business-hours calendars: golden due times (computed by hand) and properties of add()."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketbridge.rules.calendar import MAX_SCAN_DAYS, BusinessCalendar, WallClock, calendar_for
from ticketbridge.rules.policy import CalendarSpec, Weekday

H = timedelta(hours=1)
M = timedelta(minutes=1)
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NY)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN)


ALWAYS = CalendarSpec(timezone="UTC")
UTC_24X5 = CalendarSpec(timezone="UTC", days=WEEKDAYS)
UTC_XMAS = CalendarSpec(timezone="UTC", days=WEEKDAYS, holidays=(date(2026, 12, 25),))
UTC_9_17 = CalendarSpec(timezone="UTC", days=WEEKDAYS, hours="09:00-17:00")
BERLIN_24X5 = CalendarSpec(timezone="Europe/Berlin", days=WEEKDAYS)
BERLIN_9_17 = CalendarSpec(timezone="Europe/Berlin", days=WEEKDAYS, hours="09:00-17:00")
NY_24X5 = CalendarSpec(timezone="America/New_York", days=WEEKDAYS)
NY_9_17 = CalendarSpec(timezone="America/New_York", days=WEEKDAYS, hours="09:00-17:00")
# Open only on Sundays, the day of every 2026 transition, so the day's own length shows.
NY_SUNDAYS = CalendarSpec(timezone="America/New_York", days=(Weekday.SUN,))
BERLIN_SUNDAYS = CalendarSpec(timezone="Europe/Berlin", days=(Weekday.SUN,))
NY_SUN_1_3 = CalendarSpec(timezone="America/New_York", days=(Weekday.SUN,), hours="01:00-03:00")
NY_SUN_GAP = CalendarSpec(timezone="America/New_York", days=(Weekday.SUN,), hours="02:30-03:00")
NY_SUN_TO_MIDNIGHT = CalendarSpec(
    timezone="America/New_York", days=(Weekday.SUN,), hours="22:00-24:00"
)

GOLDEN = [
    # No calendar: plain wall-clock addition, also across a weekend.
    pytest.param(utc(2026, 11, 27, 22), 8 * H, None, utc(2026, 11, 28, 6), id="wall-clock"),
    # 24x7 is the fast path: plain addition.
    pytest.param(utc(2026, 11, 27, 22), 8 * H, ALWAYS, utc(2026, 11, 28, 6), id="24x7"),
    # Fri 22:00 + 8h on 24x5: 2h on Friday, Sat/Sun closed, 6h from Mon 00:00.
    pytest.param(utc(2026, 11, 27, 22), 8 * H, UTC_24X5, utc(2026, 11, 30, 6), id="24x5-weekend"),
    # A High ticket at Fri 23:00 (2h on 24x5): 1h on Friday, 1h on Monday.
    pytest.param(utc(2026, 11, 27, 23), 2 * H, UTC_24X5, utc(2026, 11, 30, 1), id="24x5-high"),
    # Fri 22:00 + 2h ends exactly at the Saturday 00:00 closing: that closing, not Monday.
    pytest.param(utc(2026, 11, 27, 22), 2 * H, UTC_24X5, utc(2026, 11, 28), id="ends-at-close"),
    # Same with business hours: 16:00 + 1h is 17:00 that day, not 09:00 the next.
    pytest.param(utc(2026, 11, 24, 16), H, UTC_9_17, utc(2026, 11, 24, 17), id="ends-at-17:00"),
    # Starting on a Saturday (closed): counting starts Mon 00:00.
    pytest.param(utc(2026, 11, 28, 10), 8 * H, UTC_24X5, utc(2026, 11, 30, 8), id="from-saturday"),
    # Starting before opening: Tue 07:00 + 30m counts from 09:00.
    pytest.param(utc(2026, 11, 24, 7), 30 * M, UTC_9_17, utc(2026, 11, 24, 9, 30), id="pre-open"),
    # Berlin 09-17 (CET, UTC+1): Tue 16:30 + 1h = 30m on Tue, 30m from Wed 09:00 = 09:30 CET.
    pytest.param(
        berlin(2026, 11, 24, 16, 30), H, BERLIN_9_17, utc(2026, 11, 25, 8, 30), id="berlin-9-17"
    ),
    # 2026-12-25 is a Friday holiday: Thu 20:00 + 8h = 4h Thu, Fri-Sun closed, 4h from Mon.
    pytest.param(utc(2026, 12, 24, 20), 8 * H, UTC_XMAS, utc(2026, 12, 28, 4), id="holiday"),
    # --- America/New_York, spring forward Sun 2026-03-08 02:00 EST -> 03:00 EDT ---
    # 24x5: Fri 20:00 EST (Sat 01:00Z) + 8h: 4h to Sat 00:00 EST (05:00Z); the weekend is
    # 24 + 23 = 47 h, so Mon 00:00 EDT is 04:00Z (not 05:00Z); + 4h = 08:00Z (04:00 EDT).
    pytest.param(ny(2026, 3, 6, 20), 8 * H, NY_24X5, utc(2026, 3, 9, 8), id="ny-spring-24x5"),
    # 09-17: Fri 16:00 EST (21:00Z) + 2h: 1h Friday; Mon 09:00 EDT = 13:00Z; + 1h = 14:00Z.
    pytest.param(ny(2026, 3, 6, 16), 2 * H, NY_9_17, utc(2026, 3, 9, 14), id="ny-spring-9-17"),
    # Sunday 2026-03-08 is 23 h long: 00:00 EST = 05:00Z to Mon 00:00 EDT = 04:00Z.
    pytest.param(ny(2026, 3, 7, 12), 23 * H, NY_SUNDAYS, utc(2026, 3, 9, 4), id="ny-spring-23h"),
    # + 24h: the 23 h Sunday, then 1h of Sun 2026-03-15 from 00:00 EDT (04:00Z) = 05:00Z.
    pytest.param(ny(2026, 3, 7, 12), 24 * H, NY_SUNDAYS, utc(2026, 3, 15, 5), id="ny-spring-24h"),
    # Hours 01:00-03:00 that day: 01:00 EST = 06:00Z, 03:00 EDT = 07:00Z, so only 1 h is open;
    # + 2h = that hour, then Sun 03-15 01:00 EDT (05:00Z) + 1h = 06:00Z.
    pytest.param(ny(2026, 3, 7, 12), H, NY_SUN_1_3, utc(2026, 3, 8, 7), id="ny-gap-1h"),
    pytest.param(ny(2026, 3, 7, 12), 2 * H, NY_SUN_1_3, utc(2026, 3, 15, 6), id="ny-gap-2h"),
    # 02:30-03:00 does not exist that day (fold=0: 02:30 -> 07:30Z after 03:00 EDT = 07:00Z):
    # closed; the next Sunday 02:30 EDT (06:30Z) + 10m = 06:40Z.
    pytest.param(ny(2026, 3, 7, 12), 10 * M, NY_SUN_GAP, utc(2026, 3, 15, 6, 40), id="ny-gap-0h"),
    # --- America/New_York, fall back Sun 2026-11-01 02:00 EDT -> 01:00 EST ---
    # 24x5: Fri 20:00 EDT (Sat 00:00Z) + 8h: 4h to Sat 00:00 EDT (04:00Z); the weekend is
    # 24 + 25 = 49 h, so Mon 00:00 EST is 05:00Z; + 4h = 09:00Z (04:00 EST).
    pytest.param(ny(2026, 10, 30, 20), 8 * H, NY_24X5, utc(2026, 11, 2, 9), id="ny-fall-24x5"),
    # 09-17: Fri 16:00 EDT (20:00Z) + 2h: 1h Friday; Mon 09:00 EST = 14:00Z; + 1h = 15:00Z.
    pytest.param(ny(2026, 10, 30, 16), 2 * H, NY_9_17, utc(2026, 11, 2, 15), id="ny-fall-9-17"),
    # Sunday 2026-11-01 is 25 h long: 00:00 EDT = 04:00Z to Mon 00:00 EST = 05:00Z.
    pytest.param(ny(2026, 10, 31, 12), 25 * H, NY_SUNDAYS, utc(2026, 11, 2, 5), id="ny-fall-25h"),
    # Hours 01:00-03:00 that day: 01:00 is ambiguous, fold=0 takes 01:00 EDT = 05:00Z; 03:00 EST
    # = 08:00Z, so 3 h are open: + 3h ends at that closing.
    pytest.param(ny(2026, 10, 31, 12), 3 * H, NY_SUN_1_3, utc(2026, 11, 1, 8), id="ny-fold-3h"),
    # 22:00-24:00 ends at the next local midnight: Sun 22:00 EST = Mon 03:00Z, + 2h = 05:00Z.
    pytest.param(
        ny(2026, 10, 31, 12), 2 * H, NY_SUN_TO_MIDNIGHT, utc(2026, 11, 2, 5), id="ny-24:00"
    ),
    # --- Europe/Berlin, spring forward Sun 2026-03-29 02:00 CET -> 03:00 CEST ---
    # 24x5: Fri 20:00 CET (19:00Z) + 8h: 4h to Sat 00:00 CET (Fri 23:00Z); weekend 24 + 23 h;
    # Mon 00:00 CEST = Sun 22:00Z; + 4h = Mon 02:00Z (04:00 CEST).
    pytest.param(
        berlin(2026, 3, 27, 20), 8 * H, BERLIN_24X5, utc(2026, 3, 30, 2), id="berlin-spring-24x5"
    ),
    # 09-17: Fri 16:00 CET (15:00Z) + 2h: 1h Friday; Mon 09:00 CEST = 07:00Z; + 1h = 08:00Z.
    pytest.param(
        berlin(2026, 3, 27, 16), 2 * H, BERLIN_9_17, utc(2026, 3, 30, 8), id="berlin-spring-9-17"
    ),
    # The Berlin day of 2026-03-29 is 23 h long: 00:00 CET = Sat 23:00Z to Mon 00:00 CEST = 22:00Z.
    pytest.param(
        berlin(2026, 3, 28, 12), 23 * H, BERLIN_SUNDAYS, utc(2026, 3, 29, 22), id="berlin-23h"
    ),
    # --- Europe/Berlin, fall back Sun 2026-10-25 03:00 CEST -> 02:00 CET ---
    # 24x5: Fri 20:00 CEST (18:00Z) + 8h: 4h to Sat 00:00 CEST (Fri 22:00Z); weekend 24 + 25 h;
    # Mon 00:00 CET = Sun 23:00Z; + 4h = Mon 03:00Z (04:00 CET).
    pytest.param(
        berlin(2026, 10, 23, 20), 8 * H, BERLIN_24X5, utc(2026, 10, 26, 3), id="berlin-fall-24x5"
    ),
    # 09-17: Fri 16:00 CEST (14:00Z) + 2h: 1h Friday; Mon 09:00 CET = 08:00Z; + 1h = 09:00Z.
    pytest.param(
        berlin(2026, 10, 23, 16), 2 * H, BERLIN_9_17, utc(2026, 10, 26, 9), id="berlin-fall-9-17"
    ),
    # The Berlin day of 2026-10-25 is 25 h long: 00:00 CEST = Sat 22:00Z to Mon 00:00 CET = 23:00Z.
    pytest.param(
        berlin(2026, 10, 24, 12), 25 * H, BERLIN_SUNDAYS, utc(2026, 10, 25, 23), id="berlin-25h"
    ),
]


@pytest.mark.parametrize(("start", "duration", "spec", "due"), GOLDEN)
def test_golden_due_times(
    start: datetime, duration: timedelta, spec: CalendarSpec | None, due: datetime
) -> None:
    result = calendar_for(spec).add(start, duration)
    assert result == due
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("spec", "at", "expected"),
    [
        (UTC_24X5, utc(2026, 11, 27, 23, 59, 59), True),
        (UTC_24X5, utc(2026, 11, 28), False),  # a closing is closed (half-open spans)
        (UTC_24X5, utc(2026, 11, 29, 23, 59, 59), False),
        (UTC_24X5, utc(2026, 11, 30), True),  # an opening is open
        (UTC_XMAS, utc(2026, 12, 25, 12), False),
        (UTC_XMAS, utc(2026, 12, 24, 23), True),
        (BERLIN_9_17, berlin(2026, 11, 24, 8, 59), False),
        (BERLIN_9_17, berlin(2026, 11, 24, 9), True),
        (BERLIN_9_17, utc(2026, 11, 24, 8), True),  # 09:00 CET
        (BERLIN_9_17, berlin(2026, 11, 24, 17), False),
        (BERLIN_9_17, utc(2026, 6, 16, 15, 30), False),  # 17:30 CEST
        (NY_SUN_1_3, utc(2026, 3, 8, 6, 30), True),  # 01:30 EST
        (NY_SUN_1_3, utc(2026, 3, 8, 7), False),  # 03:00 EDT
        (NY_SUN_1_3, utc(2026, 11, 1, 7, 30), True),  # 02:30 EST, after the repeated hour
        (NY_SUN_GAP, utc(2026, 3, 8, 7, 15), False),  # the window does not exist that day
        (NY_SUN_GAP, utc(2026, 3, 15, 6, 45), True),  # 02:45 EDT a week later
        (ALWAYS, utc(2026, 11, 28, 3), True),
    ],
)
def test_is_open(spec: CalendarSpec, at: datetime, expected: bool) -> None:
    assert BusinessCalendar(spec).is_open(at) is expected


def test_wall_clock_is_always_open_and_returns_utc() -> None:
    clock = calendar_for(None)
    assert isinstance(clock, WallClock)
    assert clock.is_open(utc(2026, 11, 28))
    assert clock.add(berlin(2026, 11, 24, 12), H) == utc(2026, 11, 24, 12)
    assert clock.add(berlin(2026, 11, 24, 12), H).tzinfo is UTC


def test_zero_duration_returns_start_even_when_closed() -> None:
    saturday = berlin(2026, 11, 28, 10)
    assert BusinessCalendar(BERLIN_9_17).add(saturday, timedelta(0)) == saturday


def test_bad_inputs_are_refused() -> None:
    calendar = BusinessCalendar(UTC_24X5)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add(datetime(2026, 11, 27, 22), H)
    with pytest.raises(ValueError, match="negative"):
        calendar.add(utc(2026, 11, 27, 22), -H)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.is_open(datetime(2026, 11, 27, 22))


def test_a_calendar_without_open_time_gives_up() -> None:
    first = date(2026, 11, 30)  # a Monday
    mondays = tuple(first + timedelta(weeks=n) for n in range(MAX_SCAN_DAYS // 7 + 2))
    spec = CalendarSpec(days=(Weekday.MON,), holidays=mondays)
    with pytest.raises(ValueError, match="open time"):
        BusinessCalendar(spec).add(utc(2026, 11, 27), H)
    assert not BusinessCalendar(spec).is_open(utc(2026, 12, 7, 12))


# --- properties --------------------------------------------------------------------------

SPECS = [
    ALWAYS,
    UTC_24X5,
    UTC_XMAS,
    UTC_9_17,
    BERLIN_24X5,
    BERLIN_9_17,
    NY_24X5,
    NY_9_17,
    NY_SUNDAYS,
    NY_SUN_1_3,
    NY_SUN_GAP,
    NY_SUN_TO_MIDNIGHT,
    BERLIN_SUNDAYS,
]
calendars = st.sampled_from([BusinessCalendar(spec) for spec in SPECS])
starts = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2028, 12, 31),
    timezones=st.sampled_from([UTC, NY, BERLIN]),
    allow_imaginary=False,
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2))
FAST = settings(max_examples=150, deadline=None, database=None)


@FAST
@given(calendar=calendars, start=starts, a=durations, b=durations)
def test_add_is_monotonic_in_duration(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    low, high = sorted((a, b))
    assert calendar.add(start, low) <= calendar.add(start, high)


@FAST
@given(calendar=calendars, start=starts, duration=durations)
def test_add_never_goes_back_and_ends_in_open_time(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = calendar.add(start, duration)
    assert due >= start
    if duration > timedelta(0):
        # The last counted microsecond was open, so due is open or exactly a closing.
        assert calendar.is_open(due - timedelta(microseconds=1))


@FAST
@given(calendar=calendars, start=starts, a=durations, b=durations)
def test_add_splits(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    # Holds for every a: with a > 0, add(start, a) is open or a closing (previous test), and
    # counting on from there is counting on from start; with a == 0 it is start itself.
    assert calendar.add(start, a + b) == calendar.add(calendar.add(start, a), b)


@FAST
@given(start=starts, duration=durations)
def test_24x7_is_wall_clock(start: datetime, duration: timedelta) -> None:
    # Elapsed time, not wall time: aware datetime + timedelta in one ZoneInfo is wall arithmetic.
    elapsed = start.astimezone(UTC) + duration
    assert BusinessCalendar(ALWAYS).add(start, duration) == elapsed
    assert WallClock().add(start, duration) == elapsed
    # The same in another zone and with a holiday set takes the scan, and agrees.
    scanned = CalendarSpec(timezone="America/New_York", holidays=(date(1999, 1, 1),))
    assert BusinessCalendar(scanned).add(start, duration) == elapsed
