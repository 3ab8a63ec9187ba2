"""sales changed after the rollups were refreshed: a log of the order days to read live

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

The sales rollups are materialized views: an order cancelled, or placed with an earlier date,
after their refresh would otherwise stay (or stay missing) in them until the next refresh.
Statement-level triggers on `orders` and `order_lines` note the order dates each change touches
in `sales_changes` (one row per date and statement, so a bulk load costs one pass over its
rows, not a trigger call per row). The sales tools read every day from the earliest noted date
on from the order tables instead of the rollups, so their figures are right at once;
`refresh_rollup` removes the entries that the refreshed views now include.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (trigger name, table, event, transition tables, the order dates the statement touched)
TRIGGERS = (
    (
        "orders_sales_insert",
        "orders",
        "INSERT",
        "NEW TABLE AS changed_new",
        "SELECT order_date FROM changed_new",
    ),
    (
        "orders_sales_update",
        "orders",
        "UPDATE",
        "OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "WITH moved AS (SELECT n.order_date AS new_date, o.order_date AS old_date "
        "FROM changed_new n JOIN changed_old o ON o.id = n.id "
        "WHERE (n.status, n.order_date, n.store_id) IS DISTINCT FROM "
        "(o.status, o.order_date, o.store_id)) "
        "SELECT new_date FROM moved UNION SELECT old_date FROM moved",
    ),
    (
        "orders_sales_delete",
        "orders",
        "DELETE",
        "OLD TABLE AS changed_old",
        "SELECT order_date FROM changed_old",
    ),
    (
        "order_lines_sales_insert",
        "order_lines",
        "INSERT",
        "NEW TABLE AS changed_new",
        "SELECT o.order_date FROM orders o WHERE o.id IN (SELECT order_id FROM changed_new)",
    ),
    (
        "order_lines_sales_update",
        "order_lines",
        "UPDATE",
        "OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "SELECT o.order_date FROM orders o WHERE o.id IN "
        "(SELECT order_id FROM changed_new UNION SELECT order_id FROM changed_old)",
    ),
    (
        "order_lines_sales_delete",
        "order_lines",
        "DELETE",
        "OLD TABLE AS changed_old",
        "SELECT o.order_date FROM orders o WHERE o.id IN (SELECT order_id FROM changed_old)",
    ),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sales_changes (
            id bigserial PRIMARY KEY,
            day date NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute("CREATE INDEX ix_sales_changes_day ON sales_changes (day)")
    for name, table, event, transition, dates in TRIGGERS:
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO sales_changes (day)
                SELECT DISTINCT d.order_date FROM ({dates}) AS d (order_date)
                WHERE d.order_date IS NOT NULL;
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    for name, table, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP TABLE IF EXISTS sales_changes")
