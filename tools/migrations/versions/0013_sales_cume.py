"""running totals of the monthly sales rollups, so a run of whole months is two reads

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A period of many months (this year, the last six months) read from the monthly rollups costs a
row per store (or per rep, region and product) for every month in it: eleven months of a
10,000-store distributor are 110,000 store rows to add up. `sales_store_cume` and
`sales_rep_cume` hold, per month and key, the running total of the monthly rollup up to and
including that month (every month from the key's first one on, so each key has a row in every
later month). Months m1 to m2 are then the row of m2 less the row of the month before m1: two
rows per key whatever the length. A key with no row before m1 had nothing before it.

Both are refreshed right after the monthly rollups they add up (`tools.migrate.ROLLUPS`), and
hold what those hold (the newest month's row runs up to the day before the newest rollup day).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each key's months from its first to the newest month of the monthly rollup, the missing ones
# filled with zeros, summed in order.
SALES_STORE_CUME_SQL = """
CREATE MATERIALIZED VIEW sales_store_cume AS
SELECT g.month::date AS month, k.store_id, k.rep_id,
       (SUM(COALESCE(m.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(m.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(m.orders, 0)) OVER w)::int AS orders
FROM (SELECT store_id, max(rep_id) AS rep_id, min(month) AS first
      FROM sales_store_monthly GROUP BY store_id) k
CROSS JOIN LATERAL generate_series(
    k.first, (SELECT max(month) FROM sales_store_monthly), interval '1 month') g(month)
LEFT JOIN sales_store_monthly m ON m.store_id = k.store_id AND m.month = g.month
WINDOW w AS (PARTITION BY k.store_id ORDER BY g.month)
ORDER BY 1, 2
"""

SALES_REP_CUME_SQL = """
CREATE MATERIALIZED VIEW sales_rep_cume AS
SELECT g.month::date AS month, k.rep_id, k.region, k.product_id,
       (SUM(COALESCE(m.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(m.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(m.orders, 0)) OVER w)::int AS orders
FROM (SELECT rep_id, region, product_id, min(month) AS first
      FROM sales_rep_monthly GROUP BY rep_id, region, product_id) k
CROSS JOIN LATERAL generate_series(
    k.first, (SELECT max(month) FROM sales_rep_monthly), interval '1 month') g(month)
LEFT JOIN sales_rep_monthly m
       ON COALESCE(m.rep_id, 0) = COALESCE(k.rep_id, 0)
      AND COALESCE(m.region, '') = COALESCE(k.region, '')
      AND m.product_id = k.product_id AND m.month = g.month
WINDOW w AS (PARTITION BY k.rep_id, k.region, k.product_id ORDER BY g.month)
ORDER BY 1, 2, 3, 4
"""

# Running totals per day over the recent past (from the first day of the month fifteen months
# before the newest rollup day, so this year and the same part of last year are covered): any
# stretch of those days is two rows per key, however its ends fall inside months. Each key's
# days run from its first sale in that window to the newest rollup day; the totals start at the
# window's first day.
DAILY_WINDOW_SQL = """
WITH bounds AS (SELECT (date_trunc('month', max(day)) - interval '15 months')::date AS first,
                       max(day) AS last FROM {source})
"""

SALES_STORE_CUME_DAILY_SQL = (
    "CREATE MATERIALIZED VIEW sales_store_cume_daily AS"
    + DAILY_WINDOW_SQL.format(source="sales_store_daily")
    + """
SELECT g.day::date AS day, k.store_id, k.rep_id,
       (SUM(COALESCE(d.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(d.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(d.orders, 0)) OVER w)::int AS orders
FROM (SELECT store_id, max(rep_id) AS rep_id, min(day) AS first
      FROM sales_store_daily WHERE day >= (SELECT first FROM bounds) GROUP BY store_id) k
CROSS JOIN LATERAL generate_series(
    k.first, (SELECT last FROM bounds), interval '1 day') g(day)
LEFT JOIN sales_store_daily d ON d.store_id = k.store_id AND d.day = g.day
WINDOW w AS (PARTITION BY k.store_id ORDER BY g.day)
ORDER BY 1, 2
"""
)

SALES_REP_CUME_DAILY_SQL = (
    "CREATE MATERIALIZED VIEW sales_rep_cume_daily AS"
    + DAILY_WINDOW_SQL.format(source="sales_rep_daily")
    + """
SELECT g.day::date AS day, k.rep_id, k.region, k.product_id,
       (SUM(COALESCE(d.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(d.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(d.orders, 0)) OVER w)::int AS orders
FROM (SELECT rep_id, region, product_id, min(day) AS first
      FROM sales_rep_daily WHERE day >= (SELECT first FROM bounds)
      GROUP BY rep_id, region, product_id) k
CROSS JOIN LATERAL generate_series(
    k.first, (SELECT last FROM bounds), interval '1 day') g(day)
LEFT JOIN sales_rep_daily d
       ON COALESCE(d.rep_id, 0) = COALESCE(k.rep_id, 0)
      AND COALESCE(d.region, '') = COALESCE(k.region, '')
      AND d.product_id = k.product_id AND d.day = g.day
WINDOW w AS (PARTITION BY k.rep_id, k.region, k.product_id ORDER BY g.day)
ORDER BY 1, 2, 3, 4
"""
)


# The same per region and product for the whole fleet (an administrator's view, a quarter of
# the rows of the per-rep one).
SALES_REGION_CUME_DAILY_SQL = (
    "CREATE MATERIALIZED VIEW sales_region_cume_daily AS"
    + DAILY_WINDOW_SQL.format(source="sales_rep_daily")
    + """,
fleet AS (SELECT day, region, product_id, SUM(quantity) AS quantity, SUM(amount) AS amount,
                 SUM(orders) AS orders
          FROM sales_rep_daily WHERE day >= (SELECT first FROM bounds)
          GROUP BY day, region, product_id)
SELECT g.day::date AS day, k.region, k.product_id,
       (SUM(COALESCE(d.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(d.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(d.orders, 0)) OVER w)::int AS orders
FROM (SELECT region, product_id, min(day) AS first FROM fleet GROUP BY region, product_id) k
CROSS JOIN LATERAL generate_series(
    k.first, (SELECT last FROM bounds), interval '1 day') g(day)
LEFT JOIN fleet d
       ON COALESCE(d.region, '') = COALESCE(k.region, '')
      AND d.product_id = k.product_id AND d.day = g.day
WINDOW w AS (PARTITION BY k.region, k.product_id ORDER BY g.day)
ORDER BY 1, 2, 3
"""
)


def upgrade() -> None:
    op.execute(SALES_STORE_CUME_SQL)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_store_cume_key ON sales_store_cume (month, store_id) "
        "INCLUDE (quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_store_cume_rep ON sales_store_cume (rep_id, month) "
        "INCLUDE (store_id, quantity, amount, orders)"
    )
    op.execute(SALES_REP_CUME_SQL)
    op.execute(
        "CREATE INDEX ix_sales_rep_cume_key ON sales_rep_cume (rep_id, month) "
        "INCLUDE (region, product_id, quantity, amount, orders)"
    )
    op.execute(
        "CREATE INDEX ix_sales_rep_cume_month ON sales_rep_cume (month) "
        "INCLUDE (rep_id, region, product_id, quantity, amount, orders)"
    )
    op.execute(SALES_STORE_CUME_DAILY_SQL)
    # One index each, led by the day. A day's store rows come in store order, so the last
    # day's and the day before the first's are merged without sorting; a rep's are picked out
    # of the day's rows. A day's product rows for everyone, or for some reps.
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_store_cume_daily_day ON sales_store_cume_daily "
        "(day, store_id) INCLUDE (rep_id, quantity, amount, orders)"
    )
    op.execute(SALES_REP_CUME_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_rep_cume_daily_day ON sales_rep_cume_daily (day, rep_id) "
        "INCLUDE (region, product_id, quantity, amount, orders)"
    )
    op.execute(SALES_REGION_CUME_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_region_cume_daily_day ON sales_region_cume_daily (day) "
        "INCLUDE (region, product_id, quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_region_cume_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_cume_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_cume_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rep_cume")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_cume")
