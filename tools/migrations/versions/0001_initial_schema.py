"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25

All tables of DESIGN.md, the pg_trgm extension for fuzzy store and product names,
and the `sales_daily` rollup (a materialized view).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

SALES_DAILY_SQL = """
CREATE MATERIALIZED VIEW sales_daily AS
SELECT o.order_date AS day, o.store_id, l.product_id,
       SUM(l.quantity)::bigint AS quantity,
       SUM(l.amount)::numeric(16,2) AS amount,
       COUNT(DISTINCT o.id)::int AS orders
FROM orders o JOIN order_lines l ON l.order_id = o.id
WHERE o.status IN ('placed', 'delivered')
GROUP BY o.order_date, o.store_id, l.product_id
"""

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('import_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('rows_inserted', sa.Integer(), nullable=False),
    sa.Column('rows_skipped', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_runs'))
    )
    op.create_index(op.f('ix_import_runs_file_sha256'), 'import_runs', ['file_sha256'], unique=False)
    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('brand', sa.String(length=100), nullable=True),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('pack_size', sa.String(length=100), nullable=True),
    sa.Column('unit', sa.String(length=20), server_default=sa.text("'case'"), nullable=False),
    sa.Column('price', sa.Numeric(precision=14, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('price >= 0', name=op.f('ck_products_price_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('sku', name=op.f('uq_products_sku'))
    )
    op.create_index('ix_products_brand', 'products', ['brand'], unique=False)
    op.create_index('ix_products_category', 'products', ['category'], unique=False)
    op.create_index('ix_products_name_trgm', 'products', ['name'], unique=False, postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('telegram_id', sa.BigInteger(), nullable=True),
    sa.Column('preferred_channel', sa.String(length=16), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'manager', 'rep', 'viewer')", name=op.f('ck_users_role')),
    sa.CheckConstraint('manager_id IS NULL OR manager_id <> id', name=op.f('ck_users_not_own_manager')),
    sa.ForeignKeyConstraint(['manager_id'], ['users.id'], name=op.f('fk_users_manager_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('code', name=op.f('uq_users_code')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('phone', name=op.f('uq_users_phone')),
    sa.UniqueConstraint('telegram_id', name=op.f('uq_users_telegram_id'))
    )
    op.create_index(op.f('ix_users_manager_id'), 'users', ['manager_id'], unique=False)
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=255), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_index(op.f('ix_api_keys_user_id'), 'api_keys', ['user_id'], unique=False)
    op.create_table('conversation_turns',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('turn_id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=100), nullable=True),
    sa.Column('message_id', sa.String(length=200), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('intent', sa.String(length=64), nullable=True),
    sa.Column('tool_calls', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_conversation_turns_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_turns')),
    sa.UniqueConstraint('channel', 'message_id', name='uq_conversation_turns_channel_message'),
    sa.UniqueConstraint('turn_id', name=op.f('uq_conversation_turns_turn_id'))
    )
    op.create_index('ix_conversation_turns_user_time', 'conversation_turns', ['user_id', sa.literal_column('created_at DESC')], unique=False)
    op.create_table('inventory',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('warehouse', sa.String(length=64), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('on_hand', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('reserved', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('reorder_point', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('on_hand >= 0', name=op.f('ck_inventory_on_hand_non_negative')),
    sa.CheckConstraint('reorder_point >= 0', name=op.f('ck_inventory_reorder_point_non_negative')),
    sa.CheckConstraint('reserved >= 0', name=op.f('ck_inventory_reserved_non_negative')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_inventory_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory')),
    sa.UniqueConstraint('warehouse', 'product_id', name='uq_inventory_warehouse_product')
    )
    op.create_index('ix_inventory_product', 'inventory', ['product_id'], unique=False)
    op.create_table('promotions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('brand', sa.String(length=100), nullable=True),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('segment', sa.String(length=50), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('discount_pct', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('min_quantity', sa.Integer(), nullable=True),
    sa.Column('free_quantity', sa.Integer(), nullable=True),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('discount_pct IS NULL OR (discount_pct > 0 AND discount_pct <= 100)', name=op.f('ck_promotions_pct_range')),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_promotions_ends_after_start')),
    sa.CheckConstraint('free_quantity IS NULL OR free_quantity > 0', name=op.f('ck_promotions_free_qty_positive')),
    sa.CheckConstraint('min_quantity IS NULL OR min_quantity > 0', name=op.f('ck_promotions_min_qty_positive')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_promotions_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotions')),
    sa.UniqueConstraint('code', name=op.f('uq_promotions_code'))
    )
    op.create_index('ix_promotions_dates', 'promotions', ['starts_on', 'ends_on'], unique=False)
    op.create_table('stores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('owner_name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('address', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('city', sa.String(length=100), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('segment', sa.String(length=50), nullable=True),
    sa.Column('credit_limit', sa.Numeric(precision=14, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('payment_terms_days', sa.Integer(), server_default=sa.text('30'), nullable=False),
    sa.Column('rep_id', sa.Integer(), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('credit_limit >= 0', name=op.f('ck_stores_credit_limit_non_negative')),
    sa.CheckConstraint('lat IS NULL OR lat BETWEEN -90 AND 90', name=op.f('ck_stores_lat_range')),
    sa.CheckConstraint('lon IS NULL OR lon BETWEEN -180 AND 180', name=op.f('ck_stores_lon_range')),
    sa.CheckConstraint('payment_terms_days >= 0', name=op.f('ck_stores_terms_non_negative')),
    sa.ForeignKeyConstraint(['rep_id'], ['users.id'], name=op.f('fk_stores_rep_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stores')),
    sa.UniqueConstraint('code', name=op.f('uq_stores_code'))
    )
    op.create_index('ix_stores_name_trgm', 'stores', ['name'], unique=False, postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.create_index('ix_stores_region_city', 'stores', ['region', 'city'], unique=False)
    op.create_index(op.f('ix_stores_rep_id'), 'stores', ['rep_id'], unique=False)
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('rep_id', sa.Integer(), nullable=True),
    sa.Column('order_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'placed'"), nullable=False),
    sa.Column('source_channel', sa.String(length=32), nullable=True),
    sa.Column('total_amount', sa.Numeric(precision=14, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('promised_date', sa.Date(), nullable=True),
    sa.Column('delivered_date', sa.Date(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'placed', 'delivered', 'cancelled', 'returned')", name=op.f('ck_orders_status')),
    sa.CheckConstraint('delivered_date IS NULL OR delivered_date >= order_date', name=op.f('ck_orders_delivered_after_order')),
    sa.CheckConstraint('total_amount >= 0', name=op.f('ck_orders_total_non_negative')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_orders_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rep_id'], ['users.id'], name=op.f('fk_orders_rep_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_orders_store_id_stores'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('external_id', name=op.f('uq_orders_external_id')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_orders_idempotency_key'))
    )
    op.create_index('ix_orders_date', 'orders', ['order_date'], unique=False)
    op.create_index('ix_orders_rep_date', 'orders', ['rep_id', 'order_date'], unique=False)
    op.create_index('ix_orders_store_date', 'orders', ['store_id', sa.literal_column('order_date DESC')], unique=False)
    op.create_table('predictions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('predicted_date', sa.Date(), nullable=True),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('confidence IS NULL OR (confidence >= 0 AND confidence <= 1)', name=op.f('ck_predictions_confidence')),
    sa.CheckConstraint('probability IS NULL OR (probability >= 0 AND probability <= 1)', name=op.f('ck_predictions_probability')),
    sa.CheckConstraint('quantity IS NULL OR quantity >= 0', name=op.f('ck_predictions_quantity_non_negative')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_predictions_product_id_products'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_predictions_store_id_stores'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions'))
    )
    op.create_index('ix_predictions_product_kind', 'predictions', ['product_id', 'kind'], unique=False)
    op.create_index('ix_predictions_store_kind', 'predictions', ['store_id', 'kind', 'model_version'], unique=False)
    op.create_table('communications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('author_name', sa.String(length=200), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('promotion_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("direction IN ('inbound', 'outbound', 'internal')", name=op.f('ck_communications_direction')),
    sa.CheckConstraint("kind IN ('note', 'message', 'call', 'complaint')", name=op.f('ck_communications_kind')),
    sa.CheckConstraint('length(text) > 0', name=op.f('ck_communications_text_not_empty')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_communications_author_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_communications_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['promotion_id'], ['promotions.id'], name=op.f('fk_communications_promotion_id_promotions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_communications_store_id_stores'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_communications')),
    sa.UniqueConstraint('external_id', name=op.f('uq_communications_external_id'))
    )
    op.create_index('ix_communications_store_time', 'communications', ['store_id', sa.literal_column('occurred_at DESC')], unique=False)
    op.create_index('ix_communications_updated', 'communications', ['updated_at'], unique=False)
    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('invoice_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_invoices_amount_non_negative')),
    sa.CheckConstraint('due_date >= invoice_date', name=op.f('ck_invoices_due_after_invoice')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_invoices_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_invoices_store_id_stores'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('order_id', name=op.f('uq_invoices_order_id'))
    )
    op.create_index('ix_invoices_store_due', 'invoices', ['store_id', 'due_date'], unique=False)
    op.create_table('order_lines',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount', sa.Numeric(precision=5, scale=4), server_default=sa.text('0'), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_order_lines_amount_non_negative')),
    sa.CheckConstraint('discount >= 0 AND discount <= 1', name=op.f('ck_order_lines_discount_fraction')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_order_lines_quantity_positive')),
    sa.CheckConstraint('unit_price >= 0', name=op.f('ck_order_lines_unit_price_non_negative')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_lines_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_order_lines_product_id_products'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_lines')),
    sa.UniqueConstraint('order_id', 'line_no', name='uq_order_lines_order_line_no')
    )
    op.create_index('ix_order_lines_product', 'order_lines', ['product_id'], unique=False)
    op.create_table('ground_truth',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('communication_id', sa.Integer(), nullable=True),
    sa.Column('promotion_id', sa.Integer(), nullable=True),
    sa.Column('event_date', sa.Date(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.ForeignKeyConstraint(['communication_id'], ['communications.id'], name=op.f('fk_ground_truth_communication_id_communications'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_ground_truth_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_ground_truth_product_id_products'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['promotion_id'], ['promotions.id'], name=op.f('fk_ground_truth_promotion_id_promotions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_ground_truth_store_id_stores'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ground_truth'))
    )
    op.create_index('ix_ground_truth_kind', 'ground_truth', ['kind'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=True),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payments_amount_positive')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_payments_invoice_id_invoices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_payments_store_id_stores'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('reference', name=op.f('uq_payments_reference'))
    )
    op.create_index('ix_payments_invoice', 'payments', ['invoice_id'], unique=False)
    op.create_index('ix_payments_store_date', 'payments', ['store_id', 'paid_on'], unique=False)
    op.execute(SALES_DAILY_SQL)
    op.execute(
        "CREATE UNIQUE INDEX ix_sales_daily_key ON sales_daily (day, store_id, product_id)"
    )
    op.execute("CREATE INDEX ix_sales_daily_product_day ON sales_daily (product_id, day)")


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS sales_daily")
    op.drop_index('ix_payments_store_date', table_name='payments')
    op.drop_index('ix_payments_invoice', table_name='payments')
    op.drop_table('payments')
    op.drop_index('ix_ground_truth_kind', table_name='ground_truth')
    op.drop_table('ground_truth')
    op.drop_index('ix_order_lines_product', table_name='order_lines')
    op.drop_table('order_lines')
    op.drop_index('ix_invoices_store_due', table_name='invoices')
    op.drop_table('invoices')
    op.drop_index('ix_communications_updated', table_name='communications')
    op.drop_index('ix_communications_store_time', table_name='communications')
    op.drop_table('communications')
    op.drop_index('ix_predictions_store_kind', table_name='predictions')
    op.drop_index('ix_predictions_product_kind', table_name='predictions')
    op.drop_table('predictions')
    op.drop_index('ix_orders_store_date', table_name='orders')
    op.drop_index('ix_orders_rep_date', table_name='orders')
    op.drop_index('ix_orders_date', table_name='orders')
    op.drop_table('orders')
    op.drop_index(op.f('ix_stores_rep_id'), table_name='stores')
    op.drop_index('ix_stores_region_city', table_name='stores')
    op.drop_index('ix_stores_name_trgm', table_name='stores', postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.drop_table('stores')
    op.drop_index('ix_promotions_dates', table_name='promotions')
    op.drop_table('promotions')
    op.drop_index('ix_inventory_product', table_name='inventory')
    op.drop_table('inventory')
    op.drop_index('ix_conversation_turns_user_time', table_name='conversation_turns')
    op.drop_table('conversation_turns')
    op.drop_index(op.f('ix_api_keys_user_id'), table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_index(op.f('ix_users_manager_id'), table_name='users')
    op.drop_table('users')
    op.drop_index('ix_products_name_trgm', table_name='products', postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.drop_index('ix_products_category', table_name='products')
    op.drop_index('ix_products_brand', table_name='products')
    op.drop_table('products')
    op.drop_index(op.f('ix_import_runs_file_sha256'), table_name='import_runs')
    op.drop_table('import_runs')
