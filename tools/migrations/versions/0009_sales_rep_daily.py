"""per-day sales by rep, region and product; rep (and region) keys on the other rollups

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Product sales for a rep's (or a manager's team's) stores over days that are not whole months
were read from `sales_daily` store by store: a thousand index probes for each stretch of days,
however short. `sales_rep_daily` holds a row per day, rep, region and product (about half as
many rows as `sales_daily`), so such a stretch is one index range. Both rep rollups also carry
the stores' region, so a region's top products (a rep covers one or two regions) are read from
them instead of every one of the region's stores' daily rows.

The per-store rollups (`sales_store_daily`, `sales_store_monthly`) carry the store's rep, with an
index led by it: a rep's or a team's stores over a stretch of days are one index range instead
of a probe per store.

The rep keys are used only when no store changed rep or region since the rollups were
refreshed: `stores.region_changed_at` (set by a trigger, as `rep_assigned_at` is for the rep)
against `sales_rollup_info`, which is now refreshed first.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SALES_STORE_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_store_daily AS
SELECT s.day, s.store_id, st.rep_id, s.quantity, s.amount, COALESCE(o.orders, 0)::int AS orders
FROM (SELECT day, store_id, SUM(quantity)::bigint AS quantity,
             SUM(amount)::numeric(16,2) AS amount
      FROM sales_daily GROUP BY day, store_id) s
JOIN stores st ON st.id = s.store_id
LEFT JOIN (SELECT order_date, store_id, COUNT(*) AS orders FROM orders
           WHERE status IN ('placed', 'delivered') GROUP BY order_date, store_id) o
       ON o.order_date = s.day AND o.store_id = s.store_id
"""

SALES_STORE_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_store_monthly AS
SELECT date_trunc('month', day)::date AS month, store_id, rep_id, SUM(quantity)::bigint AS quantity,
       SUM(amount)::numeric(16,2) AS amount, SUM(orders)::int AS orders
FROM sales_store_daily WHERE day < (SELECT max(day) FROM sales_store_daily) GROUP BY 1, 2, 3
"""

SALES_REP_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_rep_monthly AS
SELECT date_trunc('month', d.day)::date AS month, s.rep_id, s.region, d.product_id,
       SUM(d.quantity)::bigint AS quantity, SUM(d.amount)::numeric(16,2) AS amount,
       SUM(d.orders)::int AS orders
FROM sales_daily d JOIN stores s ON s.id = d.store_id
WHERE d.day < (SELECT max(day) FROM sales_daily) GROUP BY 1, 2, 3, 4
"""

SALES_REP_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_rep_daily AS
SELECT d.day, s.rep_id, s.region, d.product_id,
       SUM(d.quantity)::bigint AS quantity, SUM(d.amount)::numeric(16,2) AS amount,
       SUM(d.orders)::int AS orders
FROM sales_daily d JOIN stores s ON s.id = d.store_id
GROUP BY 1, 2, 3, 4
"""

# As created by migration 0006, for the downgrade.
OLD_SALES_STORE_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_store_daily AS
SELECT s.day, s.store_id, s.quantity, s.amount, COALESCE(o.orders, 0)::int AS orders
FROM (SELECT day, store_id, SUM(quantity)::bigint AS quantity,
             SUM(amount)::numeric(16,2) AS amount
      FROM sales_daily GROUP BY day, store_id) s
LEFT JOIN (SELECT order_date, store_id, COUNT(*) AS orders FROM orders
           WHERE status IN ('placed', 'delivered') GROUP BY order_date, store_id) o
       ON o.order_date = s.day AND o.store_id = s.store_id
"""

OLD_SALES_STORE_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_store_monthly AS
SELECT date_trunc('month', day)::date AS month, store_id, SUM(quantity)::bigint AS quantity,
       SUM(amount)::numeric(16,2) AS amount, SUM(orders)::int AS orders
FROM sales_store_daily WHERE day < (SELECT max(day) FROM sales_store_daily) GROUP BY 1, 2
"""

OLD_SALES_REP_MONTHLY_SQL = """
CREATE MATERIALIZED VIEW sales_rep_monthly AS
SELECT date_trunc('month', d.day)::date AS month, s.rep_id, d.product_id,
       SUM(d.quantity)::bigint AS quantity, SUM(d.amount)::numeric(16,2) AS amount,
       SUM(d.orders)::int AS orders
FROM sales_daily d JOIN stores s ON s.id = d.store_id
WHERE d.day < (SELECT max(day) FROM sales_daily) GROUP BY 1, 2, 3
"""


def _store_rollups(daily_sql: str, monthly_sql: str, *, by_rep: bool) -> None:
    op.execute(daily_sql)
    op.execute("CREATE UNIQUE INDEX ix_sales_store_daily_key ON sales_store_daily (day, store_id)")
    op.execute(
        "CREATE INDEX ix_sales_store_daily_store_day ON sales_store_daily (store_id, day) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute(monthly_sql)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_store_monthly_key ON sales_store_monthly (store_id, month) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_store_monthly_month ON sales_store_monthly (month, store_id) "
        "INCLUDE (quantity, amount, orders)"
    )
    if by_rep:
        op.execute(
            "CREATE INDEX ix_sales_store_daily_rep_day ON sales_store_daily (rep_id, day) "
            "INCLUDE (store_id, quantity, amount, orders)"
        )
        op.execute(
            "CREATE INDEX ix_sales_store_monthly_rep_month ON sales_store_monthly "
            "(rep_id, month) INCLUDE (store_id, quantity, amount, orders)"
        )


def upgrade() -> None:
    op.execute(
        "ALTER TABLE stores ADD COLUMN region_changed_at timestamptz NOT NULL "
        "DEFAULT '1970-01-01 00:00:00+00'"
    )
    op.execute(
        """
        CREATE FUNCTION stores_region_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.region IS DISTINCT FROM OLD.region THEN
                NEW.region_changed_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER stores_region_changed BEFORE UPDATE OF region ON stores "
        "FOR EACH ROW EXECUTE FUNCTION stores_region_changed()"
    )
    op.execute("DROP MATERIALIZED VIEW sales_store_monthly")
    op.execute("DROP MATERIALIZED VIEW sales_store_daily")
    _store_rollups(SALES_STORE_DAILY_SQL, SALES_STORE_MONTHLY_SQL, by_rep=True)
    op.execute("DROP MATERIALIZED VIEW sales_rep_monthly")
    op.execute(SALES_REP_MONTHLY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_rep_monthly_key ON sales_rep_monthly (rep_id, month) "
        "INCLUDE (region, product_id, quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_monthly_month ON sales_rep_monthly (month) "
        "INCLUDE (rep_id, region, product_id, quantity, amount, orders)"
    )
    op.execute(SALES_REP_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_rep_daily_rep_day ON sales_rep_daily (rep_id, day) "
        "INCLUDE (region, product_id, quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_daily_day ON sales_rep_daily (day) "
        "INCLUDE (rep_id, region, product_id, quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_monthly")
    op.execute(OLD_SALES_REP_MONTHLY_SQL)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_rep_monthly_key "
        "ON sales_rep_monthly (rep_id, month, product_id) INCLUDE (quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_monthly_month ON sales_rep_monthly (month, product_id) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_monthly")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_daily")
    _store_rollups(OLD_SALES_STORE_DAILY_SQL, OLD_SALES_STORE_MONTHLY_SQL, by_rep=False)
    op.execute("DROP TRIGGER IF EXISTS stores_region_changed ON stores")
    op.execute("DROP FUNCTION IF EXISTS stores_region_changed()")
    op.execute("ALTER TABLE stores DROP COLUMN IF EXISTS region_changed_at")
