"""The Postgres schema as SQLAlchemy 2 typed models.

Money is `NUMERIC(14, 2)`, quantities are whole units (cases or pieces, as the product's
`unit` says). Business keys are unique (store code, SKU, external order id, invoice number),
so imports are idempotent. Indexes follow the questions the assistant is asked: a store's
recent orders, sales over a period, a rep's stores, overdue invoices, a store's history.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("admin", "manager", "rep", "viewer")
ORDER_STATUSES = ("draft", "placed", "delivered", "cancelled", "returned")
COMM_KINDS = ("note", "message", "call", "complaint")
COMM_DIRECTIONS = ("inbound", "outbound", "internal")

Money = Numeric(14, 2)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, Decimal: Money}


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# How people and providers write a phone number varies (+91 98765 43210, 098765-43210,
# whatsapp:+919876543210): users and stores are matched on its last ten digits, kept in a
# generated column so that a lookup compares a plain indexed value.
PHONE_KEY = r"right(regexp_replace(phone, '\D', '', 'g'), 10)"


class User(TimestampMixin, Base):
    """A person using the product. Reps report to a manager; viewers see what it sees."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("manager_id IS NULL OR manager_id <> id", name="not_own_manager"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Its last ten digits (see `PHONE_KEY`), indexed (migration 0019).
    phone_key: Mapped[str | None] = mapped_column(
        String(10), Computed(PHONE_KEY, persisted=True), index=True
    )
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))

    manager: Mapped[User | None] = relationship(remote_side="User.id")


class ApiKey(TimestampMixin, Base):
    """A developer's API key, stored as a hash; `prefix` identifies it in listings."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(255))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Store(TimestampMixin, Base):
    """A retail customer of the distributor."""

    __tablename__ = "stores"
    __table_args__ = (
        CheckConstraint("credit_limit >= 0", name="credit_limit_non_negative"),
        CheckConstraint("payment_terms_days >= 0", name="terms_non_negative"),
        CheckConstraint("lat IS NULL OR lat BETWEEN -90 AND 90", name="lat_range"),
        CheckConstraint("lon IS NULL OR lon BETWEEN -180 AND 180", name="lon_range"),
        Index("ix_stores_region_city", "region", "city"),
        Index("ix_stores_name_lower", func.lower(text("name"))),
        Index(
            "ix_stores_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    owner_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    # Its last ten digits (see `PHONE_KEY`), indexed (migration 0019).
    phone_key: Mapped[str | None] = mapped_column(
        String(10), Computed(PHONE_KEY, persisted=True), index=True
    )
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    segment: Mapped[str | None] = mapped_column(String(50))
    credit_limit: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    payment_terms_days: Mapped[int] = mapped_column(Integer, server_default=text("30"))
    rep_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # When `rep_id` last changed (a trigger sets it; see migration 0006 and `tools.orders`).
    rep_assigned_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    # When `region` last changed (a trigger sets it; see migration 0009 and `tools.orders`).
    region_changed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("'1970-01-01 00:00:00+00'"), index=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))

    rep: Mapped[User | None] = relationship()


class Product(TimestampMixin, Base):
    """A sellable item (SKU)."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        Index(
            "ix_products_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index("ix_products_name_lower", func.lower(text("name"))),
        Index(
            "ix_products_name_gist",
            "name",
            postgresql_using="gist",
            postgresql_ops={"name": "gist_trgm_ops(siglen=256)"},
        ),
        Index("ix_products_brand", "brand"),
        Index("ix_products_category", "category"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    brand: Mapped[str | None] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100))
    pack_size: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(20), server_default=text("'case'"))
    price: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class Order(TimestampMixin, Base):
    """An order by a store; lines hold the products."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        CheckConstraint("total_amount >= 0", name="total_non_negative"),
        CheckConstraint(
            "delivered_date IS NULL OR delivered_date >= order_date", name="delivered_after_order"
        ),
        Index("ix_orders_store_date", "store_id", text("order_date DESC")),
        Index("ix_orders_date", "order_date"),
        Index("ix_orders_rep_date", "rep_id", "order_date"),
        # Each store's latest sales order, index-only (migration 0010).
        Index(
            "ix_orders_store_last_sale",
            "store_id",
            text("order_date DESC"),
            text("id DESC"),
            postgresql_include=["total_amount"],
            postgresql_where=text("(status)::text = ANY ('{placed,delivered}'::text[])"),
        ),
        # Each store's orders placed and not yet delivered, with their value: what `outstanding`
        # adds for orders not invoiced yet (migration 0019).
        Index(
            "ix_orders_store_placed",
            "store_id",
            postgresql_include=["total_amount"],
            postgresql_where=text("(status)::text = 'placed'::text"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="RESTRICT"))
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    order_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'placed'"))
    source_channel: Mapped[str | None] = mapped_column(String(32))
    total_amount: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    promised_date: Mapped[dt.date | None] = mapped_column(Date)
    delivered_date: Mapped[dt.date | None] = mapped_column(Date)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    store: Mapped[Store] = relationship()
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.line_no"
    )


class OrderLine(Base):
    """One product on an order."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
        CheckConstraint("discount >= 0 AND discount <= 1", name="discount_fraction"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line_no"),
        Index("ix_order_lines_product", "product_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Numeric(5, 4), server_default=text("0"))
    amount: Mapped[Decimal] = mapped_column(Money)

    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class Invoice(TimestampMixin, Base):
    """What a store was billed; outstanding = amount - payments."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("due_date >= invoice_date", name="due_after_invoice"),
        # What a payment's (invoice, store) refers to: its store is its invoice's (0018).
        UniqueConstraint("id", "store_id", name="uq_invoices_id_store"),
        # With the amounts, so a store's invoiced and paid totals are read from the index
        # (migration 0019).
        Index(
            "ix_invoices_store_due",
            "store_id",
            "due_date",
            postgresql_include=["amount", "paid_amount"],
        ),
        # Only invoices with money due (see migration 0005), with what the credit tools read.
        Index(
            "ix_invoices_open",
            "store_id",
            "due_date",
            postgresql_include=["due_amount"],
            postgresql_where=text("due_amount > 0"),
        ),
        # The fleet's late ones by due date: overdue stores for a team or everyone (0014).
        Index(
            "ix_invoices_open_due",
            "due_date",
            postgresql_include=["store_id", "due_amount"],
            postgresql_where=text("due_amount > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="RESTRICT"))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), unique=True
    )
    invoice_date: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    # The sum of the invoice's payments, kept by triggers on `payments` (migration 0005).
    paid_amount: Mapped[Decimal] = mapped_column(Money, server_default=text("0"))
    # Still due; a stored column so the planner has statistics on it (few invoices are open).
    due_amount: Mapped[Decimal] = mapped_column(
        Money, Computed("amount - paid_amount", persisted=True)
    )


class Payment(TimestampMixin, Base):
    """Money received against an invoice."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        # A payment's store is its invoice's store (migration 0018).
        ForeignKeyConstraint(
            ["invoice_id", "store_id"],
            ["invoices.id", "invoices.store_id"],
            name="fk_payments_invoice_store_invoices",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        Index("ix_payments_invoice", "invoice_id"),
        Index("ix_payments_store_date", "store_id", "paid_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="RESTRICT"))
    paid_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    method: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(100), unique=True)


class InventoryItem(Base):
    """Stock of a product in a warehouse."""

    __tablename__ = "inventory"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("reorder_point >= 0", name="reorder_point_non_negative"),
        UniqueConstraint("warehouse", "product_id", name="uq_inventory_warehouse_product"),
        Index("ix_inventory_product", "product_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    on_hand: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserved: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reorder_point: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Promotion(TimestampMixin, Base):
    """A trade scheme on a product, brand or category; optionally for a segment or region."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        CheckConstraint(
            "discount_pct IS NULL OR (discount_pct > 0 AND discount_pct <= 100)", name="pct_range"
        ),
        CheckConstraint("min_quantity IS NULL OR min_quantity > 0", name="min_qty_positive"),
        CheckConstraint("free_quantity IS NULL OR free_quantity > 0", name="free_qty_positive"),
        Index("ix_promotions_dates", "starts_on", "ends_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    brand: Mapped[str | None] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100))
    segment: Mapped[str | None] = mapped_column(String(50))
    region: Mapped[str | None] = mapped_column(String(100))
    discount_pct: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    min_quantity: Mapped[int | None] = mapped_column(Integer)
    free_quantity: Mapped[int | None] = mapped_column(Integer)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)


class Communication(TimestampMixin, Base):
    """What a store said or was told: a visit note, message, call transcript or complaint."""

    __tablename__ = "communications"
    __table_args__ = (
        CheckConstraint(_in("kind", COMM_KINDS), name="kind"),
        CheckConstraint(_in("direction", COMM_DIRECTIONS), name="direction"),
        CheckConstraint("length(text) > 0", name="text_not_empty"),
        Index("ix_communications_store_time", "store_id", text("occurred_at DESC")),
        Index("ix_communications_updated", "updated_at"),
        Index("ix_communications_kind_time", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    promotion_id: Mapped[int | None] = mapped_column(
        ForeignKey("promotions.id", ondelete="SET NULL")
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Prediction(Base):
    """A model's output for a store (and optionally a product), versioned."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("quantity IS NULL OR quantity >= 0", name="quantity_non_negative"),
        CheckConstraint(
            "probability IS NULL OR (probability >= 0 AND probability <= 1)", name="probability"
        ),
        CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence"
        ),
        Index("ix_predictions_store_kind", "store_id", "kind", "model_version"),
        Index("ix_predictions_kind_store", "kind", "store_id"),
        Index("ix_predictions_product_kind", "product_id", "kind"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    predicted_date: Mapped[dt.date | None] = mapped_column(Date)
    quantity: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))
    probability: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CallListStore(Base):
    """One store's inputs to the call list that do not change by the day: its rep, whether it
    is active, its newest next-order and at-risk predictions' figures and its oldest unpaid
    invoice's due date.

    Written only by triggers on `stores`, `predictions` and `invoices` (migration 0017), in
    the same transaction as the change, so it always agrees with them.
    """

    __tablename__ = "call_list_stores"
    __table_args__ = (
        Index(
            "ix_call_list_stores_expected",
            text("expected DESC"),
            postgresql_where=text("expected IS NOT NULL"),
        ),
    )

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    rep_id: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean)
    predicted: Mapped[bool] = mapped_column(Boolean)
    next_probability: Mapped[float | None] = mapped_column(Float)
    usual: Mapped[float | None] = mapped_column(Float)
    expected: Mapped[float | None] = mapped_column(Float)
    trained_last: Mapped[dt.date | None] = mapped_column(Date)
    flagged: Mapped[bool] = mapped_column(Boolean)
    risk: Mapped[float | None] = mapped_column(Float)
    # The due date of its oldest invoice with money due: late on any day after it.
    oldest_open_due: Mapped[dt.date | None] = mapped_column(Date)


class ConversationTurn(Base):
    """Audit of one assistant turn; (channel, message_id) deduplicates provider redeliveries."""

    __tablename__ = "conversation_turns"
    __table_args__ = (
        UniqueConstraint("channel", "message_id", name="uq_conversation_turns_channel_message"),
        Index("ix_conversation_turns_user_time", "user_id", text("created_at DESC")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    turn_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), unique=True, server_default=text("gen_random_uuid()")
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str | None] = mapped_column(String(100))
    message_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(64))
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    answer: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The structured reply (table, chart, buttons, citations) for redrawing it later.
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The payload of the button that sent this message (its text is then empty).
    button_payload: Mapped[str | None] = mapped_column(String(200))


class GroundTruth(Base):
    """What the demo generator injected, so evaluations can check against it.

    kind: store_slowdown, store_stopped, product_dropped, late_delivery, complaint_about_order,
    scheme_request, late_payer, ...
    """

    __tablename__ = "ground_truth"
    __table_args__ = (Index("ix_ground_truth_kind", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    communication_id: Mapped[int | None] = mapped_column(
        ForeignKey("communications.id", ondelete="CASCADE")
    )
    promotion_id: Mapped[int | None] = mapped_column(
        ForeignKey("promotions.id", ondelete="CASCADE")
    )
    event_date: Mapped[dt.date | None] = mapped_column(Date)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class ImportRun(Base):
    """One `mangalm import` of a file: what it was, what it did, what it rejected."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    rows_read: Mapped[int] = mapped_column(Integer)
    rows_inserted: Mapped[int] = mapped_column(Integer)
    rows_skipped: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# The daily sales rollup for analytics is a materialized view created by the migrations
# (`sales_daily`: day, store_id, product_id, quantity, amount, orders over placed and
# delivered orders); `tools.migrate.refresh_rollup` refreshes it after loads.
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


class SalesChange(Base):
    """An order day whose sales changed after the rollups were refreshed (written by triggers
    on `orders` and `order_lines`, migration 0007; cleared by `refresh_rollup`)."""

    __tablename__ = "sales_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    changed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


class PendingAction(Base):
    """A write waiting for the person's confirmation (see `tools.order_flow`).

    Only a hash of the confirmation token is stored. A row is bound to one user, one action
    and the exact (resolved) arguments; it expires, and once used it remembers its result so
    that confirming again returns the same outcome instead of acting twice.
    """

    __tablename__ = "pending_actions"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        Index("ix_pending_actions_user_created", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSONB)
    args_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class StockReservation(Base):
    """Stock held for a placed order, per warehouse, so that cancelling releases exactly it."""

    __tablename__ = "stock_reservations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        UniqueConstraint(
            "order_id", "product_id", "warehouse", name="uq_stock_reservations_order_product"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    warehouse: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# Fuzzy lookups of stores by owner name (the resolver and `find_store`), next to the name index.
Index(
    "ix_stores_owner_trgm",
    Store.owner_name,
    postgresql_using="gin",
    postgresql_ops={"owner_name": "gin_trgm_ops"},
)
# Nearest names first (the resolver's fuzzy step; migration 0008).
Index(
    "ix_stores_name_gist",
    Store.name,
    postgresql_using="gist",
    postgresql_ops={"name": "gist_trgm_ops(siglen=256)"},
)
Index(
    "ix_stores_owner_gist",
    Store.owner_name,
    postgresql_using="gist",
    postgresql_ops={"owner_name": "gist_trgm_ops(siglen=256)"},
)
# `find_store`: the start of a code (LIKE 'prefix%') and an exact city (migration 0014).
Index(
    "ix_stores_code_lower_prefix",
    func.lower(Store.code).label("code"),
    postgresql_ops={"code": "text_pattern_ops"},
)
Index("ix_stores_city_lower", func.lower(Store.city))


class LinkCode(Base):
    """A one-time code that links a chat identity (phone number, Telegram id) to a user.

    Only an HMAC of the code is stored. A code is live until it is used or expires; at most
    one live code has a given hash, so a code always names exactly one user.
    """

    __tablename__ = "link_codes"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        Index(
            "ix_link_codes_live_hash",
            "code_hash",
            unique=True,
            postgresql_where=text("used_at IS NULL"),
        ),
        Index("ix_link_codes_code_hash", "code_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    used_channel: Mapped[str | None] = mapped_column(String(16))
    used_address: Mapped[str | None] = mapped_column(String(100))


class LinkAttempt(Base):
    """One attempt to redeem a link code from a chat identity (to slow down code guessing)."""

    __tablename__ = "link_attempts"
    __table_args__ = (
        Index("ix_link_attempts_sender_time", "channel", "address", "created_at"),
        Index("ix_link_attempts_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(100))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ChannelWindow(Base):
    """When a person last wrote to us on a channel: WhatsApp's 24-hour customer-service window
    is open for free text only within 24 hours of it."""

    __tablename__ = "channel_windows"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_inbound_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
