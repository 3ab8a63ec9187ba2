"""a per-store daily sales rollup, and the per-product rollup indexed by store

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

`sales_daily` has a row per day, store and product: about as many rows as order lines. Sales by
region, city, rep or store, and every period's totals, only need a row per day and store:
`sales_store_daily` holds that (about one row per order), with the exact order count. Both
rollups get an index led by `store_id`, so a rep's or a single store's figures are read through
their own stores instead of filtering every store's rows of the period.

`ix_stores_name_lower` finds a store by its full name (any case) without a fuzzy search.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SALES_STORE_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_store_daily AS
SELECT s.day, s.store_id, s.quantity, s.amount, COALESCE(o.orders, 0)::int AS orders
FROM (SELECT day, store_id, SUM(quantity)::bigint AS quantity,
             SUM(amount)::numeric(16,2) AS amount
      FROM sales_daily GROUP BY day, store_id) s
LEFT JOIN (SELECT order_date, store_id, COUNT(*) AS orders FROM orders
           WHERE status IN ('placed', 'delivered') GROUP BY order_date, store_id) o
       ON o.order_date = s.day AND o.store_id = s.store_id
"""


def upgrade() -> None:
    op.execute("CREATE INDEX ix_stores_name_lower ON stores (lower(name))")
    op.execute(
        "CREATE INDEX ix_sales_daily_store_day ON sales_daily (store_id, day) "
        "INCLUDE (product_id, quantity, amount, orders)"
    )
    op.execute(SALES_STORE_DAILY_SQL)
    op.execute("CREATE UNIQUE INDEX ix_sales_store_daily_key ON sales_store_daily (day, store_id)")
    op.execute(
        "CREATE INDEX ix_sales_store_daily_store_day ON sales_store_daily (store_id, day) "
        "INCLUDE (quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_daily")
    op.execute("DROP INDEX IF EXISTS ix_sales_daily_store_day")
    op.execute("DROP INDEX IF EXISTS ix_stores_name_lower")
