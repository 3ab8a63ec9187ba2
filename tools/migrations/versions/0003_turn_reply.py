"""structured reply and pressed button on conversation turns

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

`conversation_turns.reply` keeps the structured reply of a turn (text, table, chart, buttons,
citations, notice) as JSON, so the web chat can redraw a conversation after a reload and answer
a repeated submission with the reply it already gave; `conversation_turns.button_payload`
records the pressed button a message came from (its text is then empty).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversation_turns",
        sa.Column("reply", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "conversation_turns",
        sa.Column("button_payload", sa.String(length=200), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("conversation_turns", "button_payload")
    op.drop_column("conversation_turns", "reply")
