"""indexes on predictions and communications by kind (the call list over many stores), and
on stores.region_changed_at

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25

The call list gathers, for every store it considers, the stored next-order and at-risk
predictions and the complaints of the last 14 days. For a manager's or an administrator's
thousands of stores, reading each kind's rows once (10,000 next-order predictions, a few hundred
at-risk ones, the fortnight's complaints) and matching them to the store ids beats probing the
per-store indexes once per store; these indexes make that read a range scan.

The sales tools ask whether any store changed rep or region since the rollups were refreshed
(the latest `rep_assigned_at` and `region_changed_at`); without an index on the second, that
read every store (2.5-4.5 ms at 10,000, each sales or top-products call) instead of 0.2 ms.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_predictions_kind_store", "predictions", ["kind", "store_id"])
    op.create_index("ix_communications_kind_time", "communications", ["kind", "occurred_at"])
    op.create_index("ix_stores_region_changed_at", "stores", ["region_changed_at"])


def downgrade() -> None:
    op.drop_index("ix_stores_region_changed_at", table_name="stores")
    op.drop_index("ix_communications_kind_time", table_name="communications")
    op.drop_index("ix_predictions_kind_store", table_name="predictions")
