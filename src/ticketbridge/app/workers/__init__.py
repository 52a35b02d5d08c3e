"""Background work: group commit, outbox dispatcher, guard, timer scheduler, wake-ups."""
