"""invoices carry what has been paid; open invoices have their own index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Credit questions ("who owes money?", "how much does Sharma owe?") only care about open
invoices: those with money still due. Summing every payment of every invoice to find them took
seconds at 10,000 stores (a million invoices and payments). `invoices.paid_amount` keeps the sum
of the invoice's payments, maintained by statement-level triggers on `payments` (one set-based
UPDATE per statement, so a COPY of a million payments costs one pass, not a million), and the
stored generated column `due_amount` (amount less paid) carries column statistics, so the planner
knows how few invoices are open, and the partial index `ix_invoices_open` holds only invoices
with money due, with the figure the credit tools read, so they never touch the paid-off history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each trigger adds the net change of one statement's payments to their invoices.
TRIGGERS = {
    "INSERT": (
        "REFERENCING NEW TABLE AS changed_payments",
        "SELECT invoice_id, amount FROM changed_payments",
    ),
    "DELETE": (
        "REFERENCING OLD TABLE AS changed_payments",
        "SELECT invoice_id, -amount FROM changed_payments",
    ),
    "UPDATE": (
        "REFERENCING OLD TABLE AS old_payments NEW TABLE AS new_payments",
        "SELECT invoice_id, amount FROM new_payments "
        "UNION ALL SELECT invoice_id, -amount FROM old_payments",
    ),
}


def upgrade() -> None:
    op.add_column(
        "invoices",
        sa.Column(
            "paid_amount",
            sa.Numeric(precision=14, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
    )
    op.add_column(
        "invoices",
        sa.Column(
            "due_amount",
            sa.Numeric(precision=14, scale=2),
            sa.Computed("amount - paid_amount", persisted=True),
            nullable=False,
        ),
    )
    op.execute(
        "UPDATE invoices i SET paid_amount = p.paid "
        "FROM (SELECT invoice_id, sum(amount) AS paid FROM payments GROUP BY invoice_id) p "
        "WHERE p.invoice_id = i.id"
    )
    for event, (referencing, deltas) in TRIGGERS.items():
        name = f"payments_paid_{event.lower()}"
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE invoices i SET paid_amount = i.paid_amount + d.amount
                FROM (SELECT invoice_id, sum(amount) AS amount
                      FROM ({deltas}) AS x (invoice_id, amount) GROUP BY invoice_id) d
                WHERE i.id = d.invoice_id AND d.amount <> 0;
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON payments {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(
        """
        CREATE FUNCTION payments_paid_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE invoices SET paid_amount = 0 WHERE paid_amount <> 0;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER payments_paid_truncate AFTER TRUNCATE ON payments "
        "FOR EACH STATEMENT EXECUTE FUNCTION payments_paid_truncate()"
    )
    op.create_index(
        "ix_invoices_open",
        "invoices",
        ["store_id", "due_date"],
        postgresql_include=["due_amount"],
        postgresql_where=sa.text("due_amount > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_open", table_name="invoices")
    for event in (*TRIGGERS, "TRUNCATE"):
        name = f"payments_paid_{event.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON payments")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_column("invoices", "due_amount")
    op.drop_column("invoices", "paid_amount")
