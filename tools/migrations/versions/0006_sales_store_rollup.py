"""a per-store daily sales rollup, and the per-product rollup indexed by store

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

`sales_daily` has a row per day, store and product: about as many rows as order lines. Sales by
region, city, rep or store, and every period's totals, only need a row per day and store:
`sales_store_daily` holds that (about one row per order), with the exact order count. Both
rollups get an index led by `store_id`, so a rep's or a single store's figures are read through
their own stores instead of filtering every store's rows of the period.

Periods of whole months (and month-to-date) read monthly rollups, which hold every day before the
newest rollup day (that day is read live, as it may have been refreshed part-way): `sales_store_monthly` (per month and store) for
store-level figures, and `sales_rep_monthly` (per month, rep and product) for product-level
figures, which are scoped by rep: a rep's year of product sales is a few thousand rows instead
of hundreds of thousands. A store's rep can change after the rollup was built, so
`stores.rep_assigned_at` records when (a trigger sets it) and `sales_rollup_info` when the
rollups were last refreshed; the rep rollup is used only when no store changed rep since.

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

SALES_STORE_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_store_monthly AS
SELECT date_trunc('month', day)::date AS month, store_id, SUM(quantity)::bigint AS quantity,
       SUM(amount)::numeric(16,2) AS amount, SUM(orders)::int AS orders
FROM sales_store_daily WHERE day < (SELECT max(day) FROM sales_store_daily) GROUP BY 1, 2
"""

# Refreshed before `sales_rep_monthly`: a reassignment after this time may be missing from it.
SALES_ROLLUP_INFO_SQL = """
CREATE MATERIALIZED VIEW sales_rollup_info AS SELECT clock_timestamp() AS refreshed_at
"""

SALES_REP_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_rep_monthly AS
SELECT date_trunc('month', d.day)::date AS month, s.rep_id, d.product_id,
       SUM(d.quantity)::bigint AS quantity, SUM(d.amount)::numeric(16,2) AS amount,
       SUM(d.orders)::int AS orders
FROM sales_daily d JOIN stores s ON s.id = d.store_id
WHERE d.day < (SELECT max(day) FROM sales_daily) GROUP BY 1, 2, 3
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
    op.execute(SALES_STORE_MONTHLY_SQL)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_store_monthly_key ON sales_store_monthly (store_id, month) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_store_monthly_month ON sales_store_monthly (month, store_id) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute("ALTER TABLE stores ADD COLUMN rep_assigned_at timestamptz NOT NULL DEFAULT now()")
    op.execute("CREATE INDEX ix_stores_rep_assigned_at ON stores (rep_assigned_at)")
    op.execute(
        """
        CREATE FUNCTION stores_rep_assigned() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.rep_id IS DISTINCT FROM OLD.rep_id THEN
                NEW.rep_assigned_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER stores_rep_assigned BEFORE UPDATE OF rep_id ON stores "
        "FOR EACH ROW EXECUTE FUNCTION stores_rep_assigned()"
    )
    op.execute(SALES_ROLLUP_INFO_SQL)
    op.execute(SALES_REP_MONTHLY_SQL)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_rep_monthly_key "
        "ON sales_rep_monthly (rep_id, month, product_id) INCLUDE (quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_monthly_month ON sales_rep_monthly (month, product_id) "
        "INCLUDE (quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_monthly")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rollup_info")
    op.execute("DROP TRIGGER IF EXISTS stores_rep_assigned ON stores")
    op.execute("DROP FUNCTION IF EXISTS stores_rep_assigned()")
    op.execute("DROP INDEX IF EXISTS ix_stores_rep_assigned_at")
    op.execute("ALTER TABLE stores DROP COLUMN IF EXISTS rep_assigned_at")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_monthly")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_daily")
    op.execute("DROP INDEX IF EXISTS ix_sales_daily_store_day")
    op.execute("DROP INDEX IF EXISTS ix_stores_name_lower")
