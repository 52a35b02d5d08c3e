"""Use cases: ingesting webhooks, firing timers, explaining a ticket."""
