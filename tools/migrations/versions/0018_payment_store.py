"""a payment's store is its invoice's store

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

Credit figures read what a store paid from its invoices' paid amounts (kept by triggers from
the payments), and payments by store from `payments.store_id`: the two agree only if every
payment names its invoice's store. The importer and the demo write payments so; now the
database refuses any other: invoices are unique on (id, store_id), and a payment's (invoice_id,
store_id) must be one of them. If an invoice is moved to another store, its payments follow.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_unique_constraint("uq_invoices_id_store", "invoices", ["id", "store_id"])
    op.create_foreign_key(
        "fk_payments_invoice_store_invoices",
        "payments",
        "invoices",
        ["invoice_id", "store_id"],
        ["id", "store_id"],
        ondelete="CASCADE",
        onupdate="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint("fk_payments_invoice_store_invoices", "payments", type_="foreignkey")
    op.drop_constraint("uq_invoices_id_store", "invoices", type_="unique")
