"""daily running totals of products per team, and the teams they were built with

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A manager sees the stores of their team: their reps' and their own. Sales by product over a
stretch of the daily running totals read each rep's rows (a thousand products per rep and
region) at two days per period: 13,000 rows per period for a team of five. Running totals add
up, so `sales_team_cume_daily` holds them per team (the rep's manager for a rep who has one,
the user otherwise) and product: a thousand rows per day.

`sales_rollup_teams` records each user's team as the view was built; when a user's team
changes (a rep moved to another manager, or a rep made a manager), the team rows are stale and
the rep rows are read until the next refresh.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A user's team: a rep's manager, or the user themself (a manager, an administrator, or a rep
# without a manager).
TEAM = "COALESCE(CASE WHEN u.role = 'rep' THEN u.manager_id END, u.id)"

SALES_ROLLUP_TEAMS_SQL = f"""
CREATE MATERIALIZED VIEW sales_rollup_teams AS
SELECT u.id AS user_id, {TEAM} AS team_id FROM users u
"""

SALES_TEAM_CUME_DAILY_SQL = f"""
CREATE MATERIALIZED VIEW sales_team_cume_daily AS
SELECT c.day, {TEAM} AS team_id, c.product_id, SUM(c.quantity)::bigint AS quantity,
       SUM(c.amount)::numeric(16,2) AS amount, SUM(c.orders)::int AS orders
FROM sales_rep_cume_daily c JOIN users u ON u.id = c.rep_id
GROUP BY c.day, {TEAM}, c.product_id
ORDER BY 1, 2
"""


def upgrade() -> None:
    op.execute(SALES_ROLLUP_TEAMS_SQL)
    op.execute("CREATE UNIQUE INDEX ix_sales_rollup_teams ON sales_rollup_teams (user_id)")
    op.execute(SALES_TEAM_CUME_DAILY_SQL)
    op.execute(
        "CREATE INDEX ix_sales_team_cume_daily_day ON sales_team_cume_daily (day, team_id) "
        "INCLUDE (product_id, quantity, amount, orders)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_team_cume_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_rollup_teams")
