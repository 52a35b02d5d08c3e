"""The one schema both backends share (SQLite default, PostgreSQL for replicas).

Machine times (due, lease, received) are float epoch seconds: portable and comparable.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    # ``stored_dedup_key``: the ticket's id (up to 64), then the source's key (up to ~90).
    sa.Column("dedup_key", sa.String(256), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("event", sa.JSON, nullable=False),
    sa.UniqueConstraint("source", "dedup_key", name="uq_inbox_source_dedup"),
    sa.Index("ix_inbox_ticket", "source", "ticket_id", "id"),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_timeline_ticket", "source", "ticket_id", "id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("lease_token", sa.Integer, nullable=False, default=0),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_ticket", "source", "ticket_id"),
)

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("fired_at", sa.Float, nullable=True),
    sa.Column("lateness", sa.Float, nullable=True),
    sa.UniqueConstraint("source", "ticket_id", "kind", name="uq_timers_ticket_kind"),
    sa.Index("ix_timers_due", "status", "due_at"),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Timer states: pending timers fire when due; fired and cancelled ones never do.
TIMER_PENDING = "pending"
TIMER_FIRED = "fired"
TIMER_CANCELLED = "cancelled"

# Outbox states. pending/retrying are claimable when due; the rest are final.
PENDING = "pending"
RETRYING = "retrying"
SENT = "sent"
DEAD = "dead"
SKIPPED = "skipped"
# ``last_error`` of an effect skipped because its target is not configured.
NOT_CONFIGURED = "target not configured"
OPEN_STATES = (PENDING, RETRYING)
