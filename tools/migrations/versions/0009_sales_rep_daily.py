"""a per-day sales rollup by rep and product

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Product sales for a rep's (or a manager's team's) stores over days that are not whole months
were read from `sales_daily` store by store: a thousand index probes for each stretch of days,
however short. `sales_rep_daily` holds a row per day, rep and product (about half as many rows
as `sales_daily`), so such a stretch is one index range. Like `sales_rep_monthly`, it is used
only when no store changed rep since the rollups were refreshed (`sales_rollup_info`), and it is
refreshed after that time is taken.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SALES_REP_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_rep_daily AS
SELECT d.day, s.rep_id, d.product_id,
       SUM(d.quantity)::bigint AS quantity, SUM(d.amount)::numeric(16,2) AS amount,
       SUM(d.orders)::int AS orders
FROM sales_daily d JOIN stores s ON s.id = d.store_id
GROUP BY 1, 2, 3
"""


def upgrade() -> None:
    op.execute(SALES_REP_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_rep_daily_rep_day ON sales_rep_daily (rep_id, day) "
        "INCLUDE (product_id, quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_daily_day ON sales_rep_daily (day) "
        "INCLUDE (rep_id, product_id, quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_daily")
