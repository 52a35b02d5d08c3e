"""Index the inbox by ticket: the ticket's timeline is read back from it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbox_ticket", "inbox", ["source", "ticket_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_inbox_ticket", table_name="inbox")
