"""Business-hours calendars: add open time to an instant, DST-correct, with no I/O."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from ticketbridge.rules.policy import ALL_DAYS, CalendarSpec

# Days scanned by one call before giving up: ten years, enough for any sane window.
MAX_SCAN_DAYS = 3660
_DAY = timedelta(days=1)
_ZERO = timedelta(0)


def _utc(at: datetime) -> datetime:
    """``at`` in UTC; naive datetimes are refused because they name no instant."""
    if at.tzinfo is UTC:
        return at  # what astimezone(UTC) returns, without looking up the offset
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {at!r}")
    return at.astimezone(UTC)


class Hours(NamedTuple):
    """A day's opening hours, local time; ``closes`` None means 24:00 (next midnight)."""

    opens: time
    closes: time | None


class Span(NamedTuple):
    """An open span of time, half-open: ``opens`` is in it, ``closes`` is not."""

    opens: datetime
    closes: datetime


def _parse_hours(hours: str) -> Hours:
    """``"09:00-17:00"`` as its ``Hours``."""
    start, end = (part.strip() for part in hours.split("-"))
    sh, sm = (int(x) for x in start.split(":"))
    eh, em = (int(x) for x in end.split(":"))
    return Hours(time(sh, sm), None if eh == 24 else time(eh, em))


class WallClock:
    """No calendar: windows count plain elapsed time."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """``start + duration`` in UTC."""
        return _utc(start) + duration

    def is_open(self, at: datetime) -> bool:
        """Always open."""
        _utc(at)
        return True


class BusinessCalendar:
    """Open time of a ``CalendarSpec``: listed weekdays, not holidays, within hours, local zone."""

    def __init__(self, spec: CalendarSpec) -> None:
        """Prepare ``spec`` for repeated use."""
        self.spec = spec
        self._zone = ZoneInfo(spec.timezone)
        self._days = frozenset(spec.days)
        self._holidays = frozenset(spec.holidays)
        self._hours = None if spec.hours is None else _parse_hours(spec.hours)
        # Every instant is open: business time is wall time, so add() may skip the scan.
        self._always = self._days == set(ALL_DAYS) and self._hours is None and not self._holidays

    def _local(self, day: date, at: time) -> datetime:
        """Local wall time ``at`` on ``day`` as a UTC instant."""
        # DST choice: wall times go through zoneinfo with fold=0 (PEP 495), normalised to UTC.
        # An ambiguous time (fall back) is its first, earlier occurrence; a nonexistent one
        # (spring-forward gap) is read with the offset in force before the gap, so it lands the
        # gap's length later on the new wall clock (New York 02:30 on 2026-03-08 is 03:30 EDT).
        return datetime.combine(day, at, tzinfo=self._zone).astimezone(UTC)

    def _open_span(self, day: date) -> Span | None:
        """The UTC span in which local ``day`` is open, or None when it is closed all day."""
        if ALL_DAYS[day.weekday()] not in self._days or day in self._holidays:
            return None
        if self._hours is None:
            lo, hi = self._local(day, time()), self._local(day + _DAY, time())
        else:
            opens, closes = self._hours
            lo = self._local(day, opens)
            hi = self._local(day + _DAY, time()) if closes is None else self._local(day, closes)
        # fold=0 can map a span that touches a DST gap to an empty or inverted one: closed.
        return Span(lo, hi) if lo < hi else None

    def _spans_from(self, at: datetime) -> Iterator[Span]:
        """Open spans in order, from the local day before ``at`` on, for MAX_SCAN_DAYS days."""
        day = at.astimezone(self._zone).date() - _DAY
        for _ in range(MAX_SCAN_DAYS):
            span = self._open_span(day)
            if span is not None:
                yield span
            day += _DAY

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The UTC instant at which ``duration`` of open time has passed since ``start``."""
        cursor = _utc(start)
        if duration < _ZERO:
            raise ValueError(f"a duration must not be negative, got {duration}")
        if self._always or not duration:
            return cursor + duration
        remaining = duration
        for opens, closes in self._spans_from(cursor):
            # Counting starts at the next opening; max() also keeps any overlap counted once.
            lo = max(opens, cursor)
            if closes <= lo:
                continue
            if closes - lo >= remaining:
                # Ending exactly at a closing returns that closing, not the next opening.
                return lo + remaining
            remaining -= closes - lo
            cursor = closes
        raise ValueError(
            f"calendar in {self.spec.timezone} has less than {duration} of open time "
            f"in the {MAX_SCAN_DAYS} days after {start.isoformat()}"
        )

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` is open time (spans are half-open: an opening is open, a closing not)."""
        moment = _utc(at)
        if self._always:
            return True
        for opens, closes in self._spans_from(moment):
            if opens > moment:
                return False
            if moment < closes:
                return True
        return False


@functools.lru_cache(maxsize=64)
def calendar_for(spec: CalendarSpec | None) -> BusinessCalendar | WallClock:
    """The calendar for ``spec`` (built once per spec); no spec means plain wall-clock time."""
    return WallClock() if spec is None else BusinessCalendar(spec)
