"""Pure rules: decisions, timers, aftercare, calendars, the policy model."""
