"""phone numbers' last ten digits as indexed columns; stores' placed orders and invoice totals

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

Every webhook turn finds its sender by the last ten digits of their phone number
(`assistant.turn`), and the resolver and `find_store` find a store by its phone the same way:
each ran a regular expression over every user (or store) row. The digits are now a generated
column of each table (`tools.models.PHONE_KEY`), indexed.

`outstanding` adds the value of a store's placed orders that have no invoice yet, and its
invoiced and paid totals: the first read every placed or delivered order of the store to find
the few placed ones, the second every invoice row of the store. A partial index on placed
orders, and the amounts included in `ix_invoices_store_due`, let both be read from an index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PHONE_KEY = r"right(regexp_replace(phone, '\D', '', 'g'), 10)"


def upgrade() -> None:
    for table in ("users", "stores"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN phone_key varchar(10) "
            f"GENERATED ALWAYS AS ({_PHONE_KEY}) STORED"
        )
        op.execute(f"CREATE INDEX ix_{table}_phone_key ON {table} (phone_key)")
    op.execute(
        "CREATE INDEX ix_orders_store_placed ON orders (store_id) INCLUDE (total_amount) "
        "WHERE status = 'placed'"
    )
    op.execute("DROP INDEX ix_invoices_store_due")
    op.execute(
        "CREATE INDEX ix_invoices_store_due ON invoices (store_id, due_date) "
        "INCLUDE (amount, paid_amount)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_invoices_store_due")
    op.execute("CREATE INDEX ix_invoices_store_due ON invoices (store_id, due_date)")
    op.execute("DROP INDEX IF EXISTS ix_orders_store_placed")
    for table in ("stores", "users"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS phone_key")
