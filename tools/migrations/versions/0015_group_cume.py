"""running totals per rep, region and city, and each store's last order day in its daily ones

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Sales by region, city or rep over a stretch of the daily running totals read two rows per store
(its row at the last day less its row at the day before the first) and then added them up per
group: 20,000 rows per period for a 10,000-store fleet, 40,000 for a comparison. The stores of a
group add up, so `sales_group_cume_daily` holds the running totals per day, rep, region and
city (a few dozen keys): two rows per key per period instead.

One figure does not add up: how many stores ordered in a period. A store ordered in [a, b] when
its last order day up to b is a or later, so `sales_store_cume_daily` now carries `last_day`
(each store's latest day with an order, up to that day's row): the count is one read of the
day b rows, without the rows of the day before a.

The group keys are the stores' rep, region and city at the refresh; a store reassigned or moved
since makes these rollups stale until the next refresh (`stores.rep_assigned_at`, and
`stores.region_changed_at`, which the trigger now also sets when the city changes).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first day of the daily running totals, as in migration 0013: the first of January of the
# year before the newest day (or fifteen months back, if that is earlier).
BOUNDS = """bounds AS (
  SELECT least(date_trunc('year', max(day)) - interval '1 year',
               date_trunc('month', max(day)) - interval '15 months')::date AS first,
         max(day) AS last
  FROM sales_store_daily)"""

FIGURES = """
       (SUM(COALESCE(d.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(d.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(d.orders, 0)) OVER w)::int AS orders"""


def _store_cume_daily_sql(*, last_day: bool) -> str:
    """The per-store daily running totals of migration 0013, with or without `last_day`."""
    last = (
        ",\n       (max(CASE WHEN d.orders > 0 THEN d.day END) OVER w)::date AS last_day"
        if last_day
        else ""
    )
    return f"""
CREATE MATERIALIZED VIEW sales_store_cume_daily AS
WITH {BOUNDS}
SELECT g.day::date AS day, k.store_id, k.rep_id,{FIGURES}{last}
FROM (SELECT store_id, max(rep_id) AS rep_id, min(day) AS first FROM sales_store_daily
      WHERE day >= (SELECT first FROM bounds) GROUP BY store_id) k
CROSS JOIN LATERAL generate_series(k.first, (SELECT last FROM bounds), interval '1 day') g(day)
LEFT JOIN sales_store_daily d ON d.store_id = k.store_id AND d.day = g.day
WINDOW w AS (PARTITION BY k.store_id ORDER BY g.day)
ORDER BY 1, 2
"""


# Per day, rep, region and city: the stores' daily figures added up by the stores' keys at the
# refresh (NULL keys kept as their own group).
SALES_GROUP_CUME_DAILY_SQL = f"""
CREATE MATERIALIZED VIEW sales_group_cume_daily AS
WITH {BOUNDS},
src AS (
  SELECT d.day, st.rep_id, st.region, st.city, SUM(d.quantity) AS quantity,
         SUM(d.amount) AS amount, SUM(d.orders) AS orders
  FROM sales_store_daily d JOIN stores st ON st.id = d.store_id
  WHERE d.day >= (SELECT first FROM bounds)
  GROUP BY d.day, st.rep_id, st.region, st.city)
SELECT g.day::date AS day, k.rep_id, k.region, k.city,{FIGURES}
FROM (SELECT rep_id, region, city, min(day) AS first FROM src GROUP BY rep_id, region, city) k
CROSS JOIN LATERAL generate_series(k.first, (SELECT last FROM bounds), interval '1 day') g(day)
LEFT JOIN src d ON d.day = g.day AND COALESCE(d.rep_id, 0) = COALESCE(k.rep_id, 0)
     AND COALESCE(d.region, '') = COALESCE(k.region, '')
     AND COALESCE(d.city, '') = COALESCE(k.city, '')
WINDOW w AS (PARTITION BY k.rep_id, k.region, k.city ORDER BY g.day)
ORDER BY 1, 2, 3, 4
"""


def _store_cume_daily(*, last_day: bool) -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_store_cume_daily")
    op.execute(_store_cume_daily_sql(last_day=last_day))
    # Led by the day: a day's store rows come in store order (merged without sorting), a rep's
    # are picked out of them.
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_store_cume_daily_day ON sales_store_cume_daily "
        "(day, store_id) INCLUDE (rep_id, quantity, amount, orders"
        + (", last_day)" if last_day else ")")
    )


def _region_trigger(columns: str) -> None:
    condition = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns.split(", "))
    op.execute("DROP TRIGGER IF EXISTS stores_region_changed ON stores")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION stores_region_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF {condition} THEN
                NEW.region_changed_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER stores_region_changed BEFORE UPDATE OF {columns} ON stores "
        "FOR EACH ROW EXECUTE FUNCTION stores_region_changed()"
    )


def upgrade() -> None:
    _region_trigger("region, city")
    _store_cume_daily(last_day=True)
    op.execute(SALES_GROUP_CUME_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_group_cume_daily_day ON sales_group_cume_daily (day, rep_id) "
        "INCLUDE (region, city, quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_group_cume_daily")
    _store_cume_daily(last_day=False)
    _region_trigger("region")
