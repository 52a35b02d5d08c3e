"""What the store writes and reads: migrations, fast path, batches, group commit, timers."""
