"""Country holidays for policy calendars, from the ``holidays`` package (kept out of rules/)."""

from __future__ import annotations

import holidays

from ticketbridge.rules.policy import CalendarSpec, Policy


def resolve_country_holidays(policy: Policy, *, years: range) -> Policy:
    """A copy of ``policy`` whose ``holiday_country`` calendars list that country's holidays."""
    calendars: dict[str, CalendarSpec] = {}
    for key, spec in policy.calendars.items():
        if spec.holiday_country is None:
            calendars[key] = spec
            continue
        code = spec.holiday_country.strip().upper()
        try:
            found = holidays.country_holidays(code, years=years)
        except NotImplementedError as exc:
            raise ValueError(
                f"calendars.{key}.holiday_country: unknown country code {spec.holiday_country!r}"
            ) from exc
        # Explicit holidays stay; observed days (e.g. a Friday for a Saturday holiday) count.
        merged = tuple(sorted(set(spec.holidays) | set(found)))
        calendars[key] = spec.model_copy(update={"holidays": merged})
    return policy.model_copy(update={"calendars": calendars})
