"""Fake vendor servers on loopback for fault and end-to-end tests."""
