"""The inbox's dedup keys behind their ticket's id (``stored_dedup_key``): a ticket's
deliveries together in the unique index, instead of each on a random page of it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# ``stored_dedup_key`` in SQL: "<length of the ticket id>:<ticket id>:<key>" (length() counts
# characters on both backends, as Python's len does).
_PREFIX = "CAST(length(ticket_id) AS TEXT) || ':' || ticket_id || ':'"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce the length
        op.alter_column("inbox", "dedup_key", type_=sa.String(256), existing_nullable=False)
    op.execute(f"UPDATE inbox SET dedup_key = {_PREFIX} || dedup_key")  # noqa: S608


def downgrade() -> None:
    op.execute(
        "UPDATE inbox SET dedup_key = substr(dedup_key, "
        "length(CAST(length(ticket_id) AS TEXT)) + length(ticket_id) + 3)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("inbox", "dedup_key", type_=sa.String(128), existing_nullable=False)
