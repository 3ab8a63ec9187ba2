"""a covering index for each store's latest sales order

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25

"Which stores have not ordered for N days" and a store's profile ask for each store's latest
placed or delivered order. Through `ix_orders_store_date` each store's lookup visits the heap
to check the status and sort ties by id; this partial index holds only sales orders, in the
order asked for, with the amount, so each lookup is an index-only read of one entry (a
manager's 5,000 stores at 10,000: 58 -> 27 ms on a loaded machine). The predicate is written
as PostgreSQL prints it back, so that a bulk load that drops and recreates indexes from their
printed definitions gets the same index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_store_last_sale",
        "orders",
        ["store_id", sa.text("order_date DESC"), sa.text("id DESC")],
        postgresql_include=["total_amount"],
        postgresql_where=sa.text("(status)::text = ANY ('{placed,delivered}'::text[])"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_store_last_sale", table_name="orders")
