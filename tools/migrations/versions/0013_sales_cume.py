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

FIGURES = """
       (SUM(COALESCE(d.quantity, 0)) OVER w)::bigint AS quantity,
       (SUM(COALESCE(d.amount, 0)) OVER w)::numeric(16,2) AS amount,
       (SUM(COALESCE(d.orders, 0)) OVER w)::int AS orders"""


def running_totals(
    name: str,
    source: str,
    period: str,
    keys: Sequence[str],
    *,
    carried: str | None = None,
    recent: bool = False,
    fleet: str | None = None,
) -> str:
    """The view `name`: per key (the `keys` columns of `source`) and `period` ('month' or
    'day'), the running total of the source's figures, for every period from the key's first
    to the source's newest (the missing ones count as zero). `carried`: a column of each key's
    rows carried along (a store's rep). `recent`: only the periods from the first of January of the
    year before the newest (or fifteen months back, if that is earlier), the totals starting
    there. `fleet`: the source is
    this grouping of `source` (figures added up over its other keys)."""
    nullable = {"rep_id": "0", "region": "''"}
    key_list = ", ".join(keys)
    on = " AND ".join(
        f"COALESCE(d.{k}, {nullable[k]}) = COALESCE(k.{k}, {nullable[k]})"
        if k in nullable
        else f"d.{k} = k.{k}"
        for k in keys
    )
    ctes = []
    if recent:
        ctes.append(
            f"bounds AS (SELECT least(date_trunc('year', max({period})) - interval '1 year', "
            f"date_trunc('month', max({period})) - interval '15 months')::date AS first, "
            f"max({period}) AS last FROM {source})"
        )
    since = f" WHERE {period} >= (SELECT first FROM bounds)" if recent else ""
    if fleet is not None:
        ctes.append(
            f"fleet AS (SELECT {period}, {fleet}, SUM(quantity) AS quantity, "
            f"SUM(amount) AS amount, SUM(orders) AS orders FROM {source}{since} "
            f"GROUP BY {period}, {fleet})"
        )
        source, since = "fleet", ""
    last = "(SELECT last FROM bounds)" if recent else f"(SELECT max({period}) FROM {source})"
    carry = f", max({carried}) AS {carried}" if carried else ""
    return f"""
CREATE MATERIALIZED VIEW {name} AS
{"WITH " + ", ".join(ctes) if ctes else ""}
SELECT g.{period}::date AS {period}, {", ".join(f"k.{k}" for k in keys)}{
        f", k.{carried}" if carried else ""
    },{FIGURES}
FROM (SELECT {key_list}{carry}, min({period}) AS first FROM {source}{since}
      GROUP BY {key_list}) k
CROSS JOIN LATERAL generate_series(k.first, {last}, interval '1 {period}') g({period})
LEFT JOIN {source} d ON {on} AND d.{period} = g.{period}
WINDOW w AS (PARTITION BY {", ".join(f"k.{k}" for k in keys)} ORDER BY g.{period})
ORDER BY {", ".join(str(i + 1) for i in range(len(keys) + 1))}
"""


# Per month: each key's months from its first to the newest month of the monthly rollup.
SALES_STORE_CUME_SQL = running_totals(
    "sales_store_cume", "sales_store_monthly", "month", ["store_id"], carried="rep_id"
)
SALES_REP_CUME_SQL = running_totals(
    "sales_rep_cume", "sales_rep_monthly", "month", ["rep_id", "region", "product_id"]
)
# Per day over the recent past (from the first of January of last year, or fifteen months
# back early in a year, so this year, last year and a quarter a year ago are covered): any
# stretch of those days is two rows per key, however its ends fall inside months.
SALES_STORE_CUME_DAILY_SQL = running_totals(
    "sales_store_cume_daily",
    "sales_store_daily",
    "day",
    ["store_id"],
    carried="rep_id",
    recent=True,
)
SALES_REP_CUME_DAILY_SQL = running_totals(
    "sales_rep_cume_daily",
    "sales_rep_daily",
    "day",
    ["rep_id", "region", "product_id"],
    recent=True,
)
# The same per region and product for the whole fleet (an administrator's view, a quarter of
# the rows of the per-rep one).
SALES_REGION_CUME_DAILY_SQL = running_totals(
    "sales_region_cume_daily",
    "sales_rep_daily",
    "day",
    ["region", "product_id"],
    recent=True,
    fleet="region, product_id",
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
