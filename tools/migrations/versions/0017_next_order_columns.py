"""the next-order prediction's scored fields as typed columns, and indexes for the call list

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

The call list scores every store it considers on its stored next-order prediction: the median
interval between orders, the expected order value and the last order date the prediction was
made from, all inside the `details` JSON. For an administrator's 10,000 stores, extracting them
(each field parsed out of the JSON, and again wherever the ranking used it) took several
milliseconds per call. They are now stored generated columns, computed by PostgreSQL from
`details` whenever a row is written, so they can never disagree with it; a partial index on
the next-order rows holds them with the probability, so the ranking reads them index-only.

The value part of a store's score is scaled by the largest expected value among the stores
considered; a second partial index orders the next-order rows by it, so that largest value is
the first row of the index that belongs to one of those stores, not a pass over all of them.

The stores considered are the active ones (of some reps): `ix_stores_active` lists them with
their reps in id order, read index-only instead of visiting every store's row (wide: the
address, names, and `is_active` far down the row).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE predictions
          ADD COLUMN median_interval_days float8
            GENERATED ALWAYS AS (CAST(details ->> 'median_interval_days' AS float8)) STORED,
          ADD COLUMN expected_value float8
            GENERATED ALWAYS AS (CAST(details ->> 'expected_value' AS float8)) STORED,
          ADD COLUMN last_order_date text
            GENERATED ALWAYS AS (details ->> 'last_order_date') STORED
        """
    )
    op.execute(
        "CREATE INDEX ix_predictions_next_order ON predictions (store_id) "
        "INCLUDE (probability, median_interval_days, expected_value, last_order_date) "
        "WHERE kind = 'next_order'"
    )
    op.execute(
        "CREATE INDEX ix_predictions_next_order_value ON predictions "
        "(expected_value DESC) INCLUDE (store_id) "
        "WHERE kind = 'next_order' AND expected_value IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_stores_active ON stores (id) INCLUDE (rep_id) WHERE is_active")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_stores_active")
    op.execute("DROP INDEX IF EXISTS ix_predictions_next_order_value")
    op.execute("DROP INDEX IF EXISTS ix_predictions_next_order")
    op.execute(
        "ALTER TABLE predictions DROP COLUMN last_order_date, DROP COLUMN expected_value, "
        "DROP COLUMN median_interval_days"
    )
