"""What-if tools: simulate a ticket timeline, compare policies."""
