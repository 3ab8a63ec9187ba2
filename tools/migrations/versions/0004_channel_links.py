"""account link codes, link attempts and channel windows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

`link_codes` holds one-time codes (HMAC only) that attach a phone number or Telegram id to a
user; `link_attempts` records redemption attempts so code guessing is throttled;
`channel_windows` keeps the last inbound message time per channel and address (WhatsApp's
24-hour customer-service window).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_codes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_channel", sa.String(length=16), nullable=True),
        sa.Column("used_address", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_link_codes_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_link_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_codes")),
    )
    op.create_index(op.f("ix_link_codes_user_id"), "link_codes", ["user_id"])
    op.create_index("ix_link_codes_code_hash", "link_codes", ["code_hash"])
    op.create_index(
        "ix_link_codes_live_hash",
        "link_codes",
        ["code_hash"],
        unique=True,
        postgresql_where=sa.text("used_at IS NULL"),
    )
    op.create_table(
        "link_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_attempts")),
    )
    op.create_index(
        "ix_link_attempts_sender_time", "link_attempts", ["channel", "address", "created_at"]
    )
    op.create_index("ix_link_attempts_created_at", "link_attempts", ["created_at"])
    op.create_table(
        "channel_windows",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_channel_windows")),
    )


def downgrade() -> None:
    op.drop_table("channel_windows")
    op.drop_index("ix_link_attempts_created_at", table_name="link_attempts")
    op.drop_index("ix_link_attempts_sender_time", table_name="link_attempts")
    op.drop_table("link_attempts")
    op.drop_index("ix_link_codes_live_hash", table_name="link_codes")
    op.drop_index("ix_link_codes_code_hash", table_name="link_codes")
    op.drop_index(op.f("ix_link_codes_user_id"), table_name="link_codes")
    op.drop_table("link_codes")
