"""Credit tools: what a store owes and how late it is, and which stores are overdue.

An invoice's due amount is its amount less the payments against it. It is overdue once its
due date has passed (as of `ctx.today`); ageing buckets count days past the due date:
0-30 (1 to 30 days late), 31-60, 61-90 and 90+. Invoices not yet due are "not due".
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import (
    BindParameter,
    Integer,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
)

from tools.context import ToolContext
from tools.db import DirectStatement, IntArray
from tools.models import Invoice, Order, Store
from tools.registry import tool
from tools.resolve import resolve_store_row
from tools.schemas import Money, Ref, Schema, StoreRef, to_money

BUCKETS = ("not_due", "days_0_30", "days_31_60", "days_61_90", "days_90_plus")


def bucket_of(days_overdue: int) -> str:
    """The ageing bucket of an invoice `days_overdue` days past its due date."""
    if days_overdue <= 0:
        return "not_due"
    if days_overdue <= 30:
        return "days_0_30"
    if days_overdue <= 60:
        return "days_31_60"
    if days_overdue <= 90:
        return "days_61_90"
    return "days_90_plus"


def is_open() -> Any:
    """Invoices with money still due (the predicate of the partial index `ix_invoices_open`),
    its zero written as a constant: a plan made without the parameters' values (a generic
    one) can then still use the index."""
    return Invoice.due_amount > literal_column("0")


class InvoiceDue(Schema):
    """One invoice with money still due."""

    number: str
    order_id: int | None
    invoice_date: dt.date
    due_date: dt.date
    amount: Money
    paid: Money
    due: Money
    days_overdue: int = Field(description="Days past the due date; 0 when not yet due.")
    bucket: str


class Ageing(Schema):
    """Money due, by how late it is."""

    not_due: Money
    days_0_30: Money
    days_31_60: Money
    days_61_90: Money
    days_90_plus: Money


class Outstanding(Schema):
    """What a store owes as of a day."""

    store: StoreRef
    as_of: dt.date
    credit_limit: Money
    payment_terms_days: int
    invoiced_total: Money = Field(description="All invoices ever raised to the store.")
    paid_total: Money = Field(description="All payments received from the store.")
    outstanding: Money = Field(description="Still due on open invoices.")
    overdue: Money = Field(description="Due on invoices past their due date.")
    ageing: Ageing
    open_orders_not_invoiced: Money = Field(
        description="Placed orders not yet invoiced; they count against the credit limit too."
    )
    available_credit: Money = Field(
        description="Credit limit less outstanding and open orders (negative when over)."
    )
    open_invoices: int
    oldest_days_overdue: int
    invoices: list[InvoiceDue] = Field(description="Open invoices, oldest due date first.")


class CreditPosition(Schema):
    """The figures a credit check needs."""

    credit_limit: Money
    outstanding: Money
    overdue: Money
    open_orders_not_invoiced: Money

    @property
    def exposure(self) -> Decimal:
        return self.outstanding + self.open_orders_not_invoiced

    @property
    def available(self) -> Decimal:
        return self.credit_limit - self.exposure


# Built once with a bound store id: each call then reuses the compiled statement as is.
_OPEN_INVOICES = (
    select(
        Invoice.number,
        Invoice.order_id,
        Invoice.invoice_date,
        Invoice.due_date,
        Invoice.amount,
        Invoice.paid_amount,
    )
    .where(Invoice.store_id == bindparam("store_id", type_=Integer()), is_open())
    .order_by(Invoice.due_date, Invoice.id)
)


def _invoice_due(invoice: Any, today: dt.date) -> InvoiceDue:
    """An open invoice read as columns (see `_OPEN_INVOICES`), as of `today`."""
    days = max((today - invoice.due_date).days, 0)
    return InvoiceDue(
        number=invoice.number,
        order_id=invoice.order_id,
        invoice_date=invoice.invoice_date,
        due_date=invoice.due_date,
        amount=invoice.amount,
        paid=invoice.paid_amount,
        due=to_money(invoice.amount) - to_money(invoice.paid_amount),
        days_overdue=days,
        bucket=bucket_of(days),
    )


def open_invoices(ctx: ToolContext, store_id: int) -> list[InvoiceDue]:
    """A store's invoices with money still due, oldest due date first."""
    return [
        _invoice_due(invoice, ctx.today)
        for invoice in ctx.session.execute(_OPEN_INVOICES, {"store_id": store_id})
    ]


def uninvoiced_query(store_id: int | BindParameter[int]) -> Select[Any]:
    """The value of the store's placed orders that have no invoice yet, as a query (the
    status a constant, which the partial index on placed and delivered orders needs in a
    generic plan)."""
    return select(func.coalesce(func.sum(Order.total_amount), 0)).where(
        Order.store_id == store_id,
        Order.status == literal_column("'placed'"),
        ~select(Invoice.id).where(Invoice.order_id == Order.id).exists(),
    )


def uninvoiced_open_orders(ctx: ToolContext, store_id: int) -> Decimal:
    """Value of the store's placed orders that have no invoice yet."""
    return to_money(ctx.session.scalar(uninvoiced_query(store_id)))


def credit_position(
    ctx: ToolContext, store: Store, *, uninvoiced: Decimal | None = None
) -> CreditPosition:
    """Credit limit, outstanding, overdue and uninvoiced open orders of a store.

    `uninvoiced`: the value of its uninvoiced open orders, when the caller has read it already
    (see `uninvoiced_query`).
    """
    invoices = open_invoices(ctx, store.id)
    return CreditPosition(
        credit_limit=store.credit_limit,
        outstanding=sum((i.due for i in invoices), Decimal("0")),
        overdue=sum((i.due for i in invoices if i.days_overdue > 0), Decimal("0")),
        open_orders_not_invoiced=uninvoiced_open_orders(ctx, store.id)
        if uninvoiced is None
        else to_money(uninvoiced),
    )


def _totals_and_open_invoices() -> Select[Any]:
    """`outstanding`'s figures in one statement (built once, the store id bound): the store's
    totals in one row, joined to each of its open invoices (oldest due date first), or alone
    when none is open.

    What the store paid is read from its invoices' paid amounts, in the same pass over them as
    what it was invoiced: every payment is recorded against one of the store's invoices (the
    database refuses a payment whose store is not its invoice's, migration 0018) and each
    invoice's paid amount is the sum of its payments, kept by triggers (migration 0005). A
    second pass over the store's payments cost as much again, and planning four subqueries
    cost more than running them.
    """
    store_id = bindparam("store_id", type_=Integer())
    invoiced = (
        select(
            func.coalesce(func.sum(Invoice.amount), 0).label("invoiced_total"),
            func.coalesce(func.sum(Invoice.paid_amount), 0).label("paid_total"),
        )
        .where(Invoice.store_id == store_id)
        .subquery("invoiced")
    )
    uninvoiced = uninvoiced_query(store_id).subquery("uninvoiced")
    invoices = _OPEN_INVOICES.add_columns(Invoice.id.label("invoice_id")).subquery("open_invoices")
    return (
        select(
            invoiced.c.invoiced_total,
            invoiced.c.paid_total,
            uninvoiced.c[0].label("uninvoiced"),
            *(invoices.c[name] for name in _INVOICE_COLUMNS),
        )
        .select_from(invoiced)
        .join(uninvoiced, true())
        .outerjoin(invoices, true())
        .order_by(invoices.c.due_date, invoices.c.invoice_id)
    )


_INVOICE_COLUMNS = ("number", "order_id", "invoice_date", "due_date", "amount", "paid_amount")
# (Run on the driver's cursor: every "who owes what" message runs it; see DirectStatement.)
_TOTALS_AND_OPEN_INVOICES = DirectStatement(_totals_and_open_invoices())


@tool(category="credit", generic_plans=True)
def outstanding(ctx: ToolContext, *, store: Ref) -> Outstanding:
    """What a store owes: open invoices, amounts paid and due, overdue amount and ageing
    buckets (0-30, 31-60, 61-90, 90+ days past due), credit limit and credit left.

    Args:
        store: The store's id, code or name (partial or misspelt names work).
    """
    found = resolve_store_row(ctx, store)
    rows, _ = _TOTALS_AND_OPEN_INVOICES.run(ctx.session.connection(), {"store_id": found.id})
    invoiced_total, paid_total, uninvoiced = rows[0][:3]
    invoices = [_invoice_due(row, ctx.today) for row in rows if row.number is not None]
    ageing = dict.fromkeys(BUCKETS, Decimal("0"))
    for invoice in invoices:
        ageing[invoice.bucket] += invoice.due
    owed = sum((i.due for i in invoices), Decimal("0"))
    overdue = sum((i.due for i in invoices if i.days_overdue > 0), Decimal("0"))
    open_orders = to_money(uninvoiced)
    return Outstanding(
        store=StoreRef.model_validate(found),
        as_of=ctx.today,
        credit_limit=found.credit_limit,
        payment_terms_days=found.payment_terms_days,
        invoiced_total=invoiced_total,
        paid_total=paid_total,
        outstanding=owed,
        overdue=overdue,
        ageing=Ageing(**ageing),
        open_orders_not_invoiced=open_orders,
        available_credit=to_money(found.credit_limit) - owed - open_orders,
        open_invoices=len(invoices),
        oldest_days_overdue=max((i.days_overdue for i in invoices), default=0),
        invoices=invoices,
    )


class OverdueStore(Schema):
    store: StoreRef
    rep_name: str | None
    phone: str | None
    overdue: Money = Field(description="Due on invoices at least min_days past due.")
    outstanding: Money = Field(description="Everything still due, late or not.")
    oldest_days_overdue: int
    overdue_invoices: int


class OverdueStores(Schema):
    """Stores with overdue money, the largest amount first."""

    as_of: dt.date
    min_amount: Money
    min_days: int
    total_stores: int = Field(description="How many stores match (rows may be fewer: limit).")
    total_overdue: Money = Field(description="Overdue amount over all matching stores.")
    stores: list[OverdueStore]


# overdue_stores' statement. Ranking needs only each store's late amount: one sum over the late
# open invoices of the stores the actor sees (a NULL array of reps: every store). The biggest
# come first, with the totals over every matching store riding along as window aggregates
# (computed before the LIMIT); only those listed are joined to their store, rep and other
# figures (everything due, the oldest, how many are late), read for those stores alone.
_OVERDUE_STORES_SQL = text(
    """
    WITH late AS (
      SELECT i.store_id, sum(i.due_amount) AS overdue
      FROM invoices i
      WHERE i.due_amount > 0 AND i.due_date <= CAST(:late_by AS date)
        AND (CAST(:reps AS integer[]) IS NULL OR i.store_id IN (
              SELECT s.id FROM stores s WHERE s.rep_id = ANY(CAST(:reps AS integer[]))))
      GROUP BY i.store_id
      HAVING sum(i.due_amount) > 0 AND sum(i.due_amount) >= CAST(:min_amount AS numeric)),
    top AS (
      SELECT late.store_id, late.overdue, count(*) OVER () AS total_stores,
             sum(late.overdue) OVER () AS total_overdue
      FROM late ORDER BY late.overdue DESC, late.store_id LIMIT :limit)
    SELECT s.id, s.code, s.name, s.city, s.region, s.phone, u.name AS rep_name, top.overdue,
           top.total_stores, top.total_overdue, figures.outstanding, figures.oldest,
           figures.late_invoices
    FROM top
    JOIN stores s ON s.id = top.store_id
    CROSS JOIN LATERAL (
      SELECT sum(i.due_amount) AS outstanding, max(CAST(:today AS date) - i.due_date) AS oldest,
             count(*) FILTER (WHERE i.due_date <= CAST(:late_by AS date)) AS late_invoices
      FROM invoices i WHERE i.store_id = top.store_id AND i.due_amount > 0) figures
    LEFT JOIN users u ON u.id = s.rep_id
    ORDER BY top.overdue DESC, s.id
    """
)


@tool(category="credit")
def overdue_stores(
    ctx: ToolContext,
    *,
    min_amount: Annotated[Decimal, Field(ge=0)] = Decimal("0"),
    min_days: Annotated[int, Field(ge=1, le=3650)] = 1,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
) -> OverdueStores:
    """Stores whose invoices are overdue, largest overdue amount first.

    Args:
        min_amount: Only stores owing at least this much overdue.
        min_days: Only count invoices at least this many days past their due date.
        limit: How many stores to list.
    """
    reps = ctx.rep_ids()
    rows = ctx.session.execute(
        _OVERDUE_STORES_SQL,
        {
            "today": ctx.today,
            # "At least min_days late" as a bound on the due date, which the open-invoice
            # indexes can check without computing anything per invoice.
            "late_by": ctx.today - dt.timedelta(days=min_days),
            "min_amount": min_amount,
            "reps": None if reps is None else IntArray.of(reps),
            "limit": limit,
        },
    ).all()
    summary = (rows[0].total_stores, rows[0].total_overdue) if rows else (0, Decimal("0"))
    return OverdueStores(
        as_of=ctx.today,
        min_amount=min_amount,
        min_days=min_days,
        total_stores=int(summary[0]),
        total_overdue=summary[1],
        stores=[
            OverdueStore(
                store=StoreRef.model_validate(row),
                rep_name=row.rep_name,
                phone=row.phone,
                overdue=row.overdue,
                outstanding=row.outstanding,
                oldest_days_overdue=int(row.oldest),
                overdue_invoices=int(row.late_invoices),
            )
            for row in rows
        ],
    )
