"""ticketbridge: helpdesk ticket webhooks to VictorOps incidents, durably and exactly once."""

__version__ = "0.1.0"
