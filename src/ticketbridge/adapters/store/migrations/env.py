"""Alembic environment: runs on the connection ticketbridge hands it (no URL of its own)."""

from __future__ import annotations

from alembic import context

from ticketbridge.adapters.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
