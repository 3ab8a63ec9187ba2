"""Writes that need the person's confirmation: place an order, cancel an order, log a note.

The confirmation protocol (one for every write)
-----------------------------------------------
1. The first call checks everything (permissions, stock, credit, status) and, when the write
   is possible, records a *pending action* and returns a confirmation token with a summary
   of what will happen. Nothing final is written; on any refusal nothing is written at all.
   - orders: `draft_order(store, lines)` returns a draft (`draft_id` + token);
   - `cancel_order(order)` and `log_note(store, text)` called without a token return
     `status = "confirmation_required"` with a token.
2. The second call carries the token: `confirm_order(draft_id, confirmation_token)`, or the
   same `cancel_order` / `log_note` call again with `confirmation_token`. The write happens
   only if the token
   - was issued to the same user (a token of someone else is "not valid", like a made-up one),
   - for the same action and the exact same (resolved) arguments,
   - has not expired (`settings.confirmation_minutes` after it was issued).
3. A token works once. Presenting it again returns the outcome of the first use (the same
   order, the same note) and changes nothing: retries are safe, however they arrive.

Tokens are random (192 bits) and only an HMAC of them (keyed with `settings.secret_key`) is
stored, in `pending_actions`, together with the user, action, arguments, expiry and result.
The pending row is locked while it is redeemed, and each placed order carries the pending
action as its idempotency key, so two concurrent confirmations cannot place two orders.
Stock and credit are checked again at confirmation, because they may have changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from tools.context import ToolContext
from tools.credit import credit_position
from tools.models import (
    Communication,
    InventoryItem,
    Order,
    OrderLine,
    PendingAction,
    Product,
    StockReservation,
    Store,
    User,
)
from tools.orders import OrderOut, _order_out
from tools.promotions import applicable_promotions, best_discount
from tools.registry import Ambiguous, NotFound, Refused, ToolError, tool
from tools.resolve import resolve_order, resolve_product, resolve_store
from tools.schemas import Money, ProductRef, Ref, Schema, StoreRef, to_money
from tools.settings import get_settings

PLACE_ORDER = "place_order"
CANCEL_ORDER = "cancel_order"
LOG_NOTE = "log_note"

MAX_LINES = 50


# --------------------------------------------------------------------------- tokens


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _token_hash(token: str) -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def _args_hash(action: str, args: dict[str, Any]) -> str:
    canonical = json.dumps([action, args], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require_writer(ctx: ToolContext) -> None:
    # The registry refuses read-only users already; direct calls are refused here too.
    if not ctx.actor.can_write:
        raise Refused(f"{ctx.actor.role} users have read-only access")


def issue(
    ctx: ToolContext, action: str, args: dict[str, Any], payload: dict[str, Any] | None = None
) -> tuple[PendingAction, str]:
    """Record a pending action for the actor and return it with its (only) plain token."""
    token = secrets.token_urlsafe(24)
    now = _now()
    pending = PendingAction(
        token_hash=_token_hash(token),
        user_id=ctx.actor.id,
        action=action,
        args=args,
        args_hash=_args_hash(action, args),
        payload=payload,
        created_at=now,
        expires_at=now + dt.timedelta(minutes=get_settings().confirmation_minutes),
    )
    ctx.session.add(pending)
    ctx.session.flush()
    return pending, token


INVALID_TOKEN = "This confirmation token is not valid; ask for a new one."


def redeem(ctx: ToolContext, action: str, token: str, args: dict[str, Any]) -> PendingAction:
    """The pending action `token` confirms, locked, after every check of the protocol.

    A row that was already used is returned as it is (its `result` says what happened).
    """
    pending = ctx.session.scalars(
        select(PendingAction)
        .where(PendingAction.token_hash == _token_hash(token.strip()))
        .with_for_update()
    ).first()
    if pending is None or pending.user_id != ctx.actor.id:
        raise Refused(INVALID_TOKEN)
    if pending.action != action:
        raise Refused(f"This confirmation token is for {pending.action}, not {action}.")
    if not hmac.compare_digest(pending.args_hash, _args_hash(action, args)):
        raise Refused(
            "This confirmation token was issued for different details; ask again to confirm these."
        )
    _check_fresh(pending)
    return pending


def _check_fresh(pending: PendingAction) -> None:
    if pending.used_at is None and pending.expires_at <= _now():
        raise Refused("This confirmation has expired; ask again to get a new one.")


class ConfirmationRequired(Schema):
    """Nothing was done yet: repeat the call with `confirmation_token` to go ahead."""

    status: Literal["confirmation_required"] = "confirmation_required"
    action: str
    summary: str
    confirmation_token: str
    expires_at: dt.datetime


# --------------------------------------------------------------------------- draft orders


class LineIn(BaseModel):
    """One line of an order as a person says it."""

    model_config = ConfigDict(extra="forbid")

    product: Ref = Field(description="The product's id, SKU or name.")
    quantity: Annotated[int, Field(gt=0, le=100_000)] = Field(description="Units (cases).")


class DraftLine(Schema):
    line_no: int
    product: ProductRef
    unit: str
    quantity: int
    unit_price: Money
    discount_pct: float
    promotion: str | None = Field(description="The scheme giving the discount, if any.")
    amount: Money
    available: int = Field(description="Units available before this order.")


class CreditCheck(Schema):
    credit_limit: Money
    outstanding: Money
    open_orders_not_invoiced: Money
    order_value: Money
    credit_left_after_order: Money


class OrderDraft(Schema):
    """A checked order waiting for confirmation; nothing is placed yet."""

    status: Literal["draft"] = "draft"
    draft_id: int
    confirmation_token: str
    expires_at: dt.datetime
    store: StoreRef
    lines: list[DraftLine]
    units: int
    total: Money
    credit: CreditCheck
    summary: str


def _money_text(amount: Decimal) -> str:
    return f"{get_settings().currency} {amount:,.2f}"


def _stock_rows(ctx: ToolContext, product_ids: list[int], *, lock: bool) -> dict[int, list[Any]]:
    query = (
        select(InventoryItem)
        .where(InventoryItem.product_id.in_(product_ids))
        .order_by(InventoryItem.product_id, InventoryItem.warehouse)
    )
    if lock:
        # Fixed lock order (product, warehouse) so concurrent confirmations cannot deadlock.
        query = query.with_for_update()
    rows: dict[int, list[Any]] = {pid: [] for pid in product_ids}
    for item in ctx.session.scalars(query):
        rows[item.product_id].append(item)
    return rows


def _available(items: list[InventoryItem]) -> int:
    return sum(max(i.on_hand - i.reserved, 0) for i in items)


def _check_stock(
    products: list[tuple[Product, int]], stock: dict[int, list[InventoryItem]]
) -> list[dict[str, Any]]:
    problems = []
    for product, quantity in products:
        available = _available(stock.get(product.id, []))
        if quantity > available:
            problems.append(
                {
                    "sku": product.sku,
                    "product": product.name,
                    "problem": "short",
                    "asked": quantity,
                    "available": available,
                    "short_by": quantity - available,
                }
            )
    return problems


def _stock_message(problems: list[dict[str, Any]]) -> str:
    return (
        "Not enough stock: "
        + "; ".join(
            f"{p['product']} ({p['sku']}): {p['asked']} asked, {p['available']} available, "
            f"short by {p['short_by']}"
            for p in problems
        )
        + "."
    )


def _check_credit(store: Store, position: Any, order_value: Decimal) -> dict[str, Any] | None:
    after = position.available - order_value
    if after >= 0:
        return None
    return {
        "problem": "credit_limit",
        "credit_limit": float(position.credit_limit),
        "outstanding": float(position.outstanding),
        "open_orders_not_invoiced": float(position.open_orders_not_invoiced),
        "order_value": float(order_value),
        "over_by": float(-after),
    }


def _credit_message(store: Store, problem: dict[str, Any]) -> str:
    return (
        f"Over the credit limit: {store.name} owes "
        f"{_money_text(to_money(problem['outstanding']))} and has "
        f"{_money_text(to_money(problem['open_orders_not_invoiced']))} in open orders; with "
        f"this order of {_money_text(to_money(problem['order_value']))} that is "
        f"{_money_text(to_money(problem['over_by']))} over the limit of "
        f"{_money_text(to_money(problem['credit_limit']))}."
    )


@tool(category="orders", writes=True)
def draft_order(
    ctx: ToolContext,
    *,
    store: Ref,
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)],
) -> OrderDraft:
    """Prepare an order for a store: resolves each product, prices it (with running schemes),
    checks stock and the store's credit limit, and returns a draft with a confirmation token.
    Nothing is placed until confirm_order is called with that token.

    Args:
        store: The store's id, code or name.
        lines: The products and quantities, e.g. [{"product": "Parle-G 100g", "quantity": 10}].
    """
    _require_writer(ctx)
    found = resolve_store(ctx, store)
    problems: list[dict[str, Any]] = []
    wanted: dict[int, tuple[Product, int]] = {}
    for number, line in enumerate(lines, start=1):
        try:
            product = resolve_product(ctx, line.product)
        except Ambiguous as error:
            raise Ambiguous(
                f"Line {number}: several products match '{line.product}'; which one?",
                candidates=error.candidates,
            ) from None
        except NotFound:
            problems.append({"line": number, "product": line.product, "problem": "unknown"})
            continue
        if not product.is_active:
            problems.append(
                {"line": number, "product": line.product, "sku": product.sku, "problem": "inactive"}
            )
            continue
        previous = wanted.get(product.id, (product, 0))[1]
        wanted[product.id] = (product, previous + line.quantity)
    if problems:
        described = "; ".join(
            f"line {p['line']}: "
            + (
                f"no product matches '{p['product']}'"
                if p["problem"] == "unknown"
                else f"{p['sku']} is discontinued"
            )
            for p in problems
        )
        raise Refused(f"Cannot draft the order: {described}.", problems=problems)
    stock = _stock_rows(ctx, list(wanted), lock=False)
    short = _check_stock(list(wanted.values()), stock)
    if short:
        raise Refused(_stock_message(short), problems=short)
    schemes = applicable_promotions(ctx, store=found)
    draft_lines: list[DraftLine] = []
    for line_no, (product, quantity) in enumerate(wanted.values(), start=1):
        fitting = [
            s
            for s in schemes
            if (s.product_id in (None, product.id))
            and (s.brand in (None, product.brand))
            and (s.category in (None, product.category))
        ]
        pct, scheme = best_discount(fitting, quantity)
        gross = to_money(product.price) * quantity
        amount = to_money(gross * (1 - pct / 100))
        draft_lines.append(
            DraftLine(
                line_no=line_no,
                product=ProductRef.model_validate(product),
                unit=product.unit,
                quantity=quantity,
                unit_price=product.price,
                discount_pct=float(pct),
                promotion=scheme.name if scheme else None,
                amount=amount,
                available=_available(stock[product.id]),
            )
        )
    total = sum((line.amount for line in draft_lines), Decimal("0"))
    position = credit_position(ctx, found)
    over = _check_credit(found, position, total)
    if over:
        raise Refused(_credit_message(found, over), problems=[over])
    args = {
        "store_id": found.id,
        "lines": [
            {"product_id": line.product.id, "quantity": line.quantity} for line in draft_lines
        ],
    }
    payload = {
        "lines": [
            {
                "product_id": line.product.id,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "discount": str(
                    (Decimal(str(line.discount_pct)) / 100).quantize(Decimal("0.0001"))
                ),
                "amount": str(line.amount),
            }
            for line in draft_lines
        ],
        "total": str(total),
    }
    pending, token = issue(ctx, PLACE_ORDER, args, payload)
    units = sum(line.quantity for line in draft_lines)
    return OrderDraft(
        draft_id=pending.id,
        confirmation_token=token,
        expires_at=pending.expires_at,
        store=StoreRef.model_validate(found),
        lines=draft_lines,
        units=units,
        total=total,
        credit=CreditCheck(
            credit_limit=position.credit_limit,
            outstanding=position.outstanding,
            open_orders_not_invoiced=position.open_orders_not_invoiced,
            order_value=total,
            credit_left_after_order=position.available - total,
        ),
        summary=(
            f"Order for {found.name}: {len(draft_lines)} product(s), {units} units, "
            f"{_money_text(total)}. Confirm to place it."
        ),
    )


class Reservation(Schema):
    sku: str
    warehouse: str
    quantity: int


class OrderConfirmation(Schema):
    """The placed order (or, on a repeated confirmation, the order placed the first time)."""

    status: Literal["placed"] = "placed"
    already_confirmed: bool
    order: OrderOut
    reservations: list[Reservation]


def _load_order(ctx: ToolContext, order_id: int) -> Order:
    order = ctx.session.scalars(
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.lines).joinedload(OrderLine.product))
        .execution_options(populate_existing=True)
    ).one()
    return order


def _reservations(ctx: ToolContext, order_id: int) -> list[Reservation]:
    rows = ctx.session.execute(
        select(Product.sku, StockReservation.warehouse, StockReservation.quantity)
        .join(Product, Product.id == StockReservation.product_id)
        .where(StockReservation.order_id == order_id)
        .order_by(StockReservation.id)
    ).all()
    return [Reservation(sku=s, warehouse=w, quantity=q) for s, w, q in rows]


def _reserve(ctx: ToolContext, order: Order, items: list[InventoryItem], quantity: int) -> None:
    # Take from the default warehouse first, then from the fullest.
    default = get_settings().default_warehouse
    ordered = sorted(items, key=lambda i: (i.warehouse != default, -(i.on_hand - i.reserved)))
    left = quantity
    for item in ordered:
        take = min(left, max(item.on_hand - item.reserved, 0))
        if take <= 0:
            continue
        item.reserved += take
        ctx.session.add(
            StockReservation(
                order_id=order.id,
                product_id=item.product_id,
                warehouse=item.warehouse,
                quantity=take,
            )
        )
        left -= take
        if left == 0:
            return
    raise Refused("Stock changed while confirming; draft the order again.")  # pragma: no cover


@tool(category="orders", writes=True)
def confirm_order(
    ctx: ToolContext,
    *,
    draft_id: Annotated[int, Field(ge=1)],
    confirmation_token: Annotated[str, Field(min_length=1, max_length=200)],
) -> OrderConfirmation:
    """Place a drafted order. Needs the draft's id and confirmation token (from draft_order);
    the token works once and expires. Confirming again returns the same order.

    Args:
        draft_id: The draft_id returned by draft_order.
        confirmation_token: The confirmation_token returned with that draft.
    """
    _require_writer(ctx)
    pending = ctx.session.scalars(
        select(PendingAction).where(PendingAction.id == draft_id).with_for_update()
    ).first()
    if (
        pending is None
        or pending.user_id != ctx.actor.id
        or pending.action != PLACE_ORDER
        or not hmac.compare_digest(pending.token_hash, _token_hash(confirmation_token.strip()))
    ):
        raise Refused(INVALID_TOKEN)
    _check_fresh(pending)
    if pending.used_at is not None and pending.result:
        order_id = int(pending.result["order_id"])
        order = _load_order(ctx, order_id)
        return OrderConfirmation(
            already_confirmed=True,
            order=OrderOut(**_order_out(order, order.store)),
            reservations=_reservations(ctx, order_id),
        )
    with ctx.session.begin_nested():
        order = _place(ctx, pending)
    return OrderConfirmation(
        already_confirmed=False,
        order=OrderOut(**_order_out(order, order.store)),
        reservations=_reservations(ctx, order.id),
    )


def _place(ctx: ToolContext, pending: PendingAction) -> Order:
    store = resolve_store(ctx, pending.args["store_id"])
    payload = pending.payload or {}
    lines = payload.get("lines", [])
    product_ids = [int(line["product_id"]) for line in lines]
    products = {
        p.id: p for p in ctx.session.scalars(select(Product).where(Product.id.in_(product_ids)))
    }
    stock = _stock_rows(ctx, sorted(product_ids), lock=True)
    short = _check_stock(
        [(products[int(x["product_id"])], int(x["quantity"])) for x in lines], stock
    )
    if short:
        raise Refused(_stock_message(short), problems=short)
    total = to_money(payload.get("total"))
    over = _check_credit(store, credit_position(ctx, store), total)
    if over:
        raise Refused(_credit_message(store, over), problems=[over])
    now = _now()
    order = Order(
        store_id=store.id,
        rep_id=store.rep_id,
        order_date=ctx.today,
        status="placed",
        source_channel=(ctx.channel or "api")[:32],
        total_amount=total,
        created_by=ctx.actor.id,
        idempotency_key=f"pending-action:{pending.id}",
        confirmed_at=now,
    )
    for line_no, line in enumerate(lines, start=1):
        order.lines.append(
            OrderLine(
                line_no=line_no,
                product_id=int(line["product_id"]),
                quantity=int(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
                discount=Decimal(line["discount"]),
                amount=Decimal(line["amount"]),
            )
        )
    ctx.session.add(order)
    ctx.session.flush()
    for line in lines:
        _reserve(ctx, order, stock[int(line["product_id"])], int(line["quantity"]))
    pending.used_at = now
    pending.result = {"order_id": order.id}
    ctx.session.flush()
    return _load_order(ctx, order.id)


# --------------------------------------------------------------------------- cancel


class CancelResult(Schema):
    status: Literal["cancelled"] = "cancelled"
    already_done: bool
    order: OrderOut
    released: list[Reservation]


@tool(category="orders", writes=True)
def cancel_order(
    ctx: ToolContext,
    *,
    order: Ref,
    confirmation_token: Annotated[str | None, Field(max_length=200)] = None,
) -> ConfirmationRequired | CancelResult:
    """Cancel an order that is not delivered yet, releasing its reserved stock. The first
    call returns a confirmation token; call again with it to cancel.

    Args:
        order: The order number (id) or external id.
        confirmation_token: The token from the first call; leave empty to ask for one.
    """
    _require_writer(ctx)
    found = resolve_order(ctx, order)
    args = {"order_id": found.id}
    if confirmation_token:
        pending = redeem(ctx, CANCEL_ORDER, confirmation_token, args)
        if pending.used_at is not None:
            return CancelResult(
                already_done=True,
                order=OrderOut(**_order_out(_load_order(ctx, found.id), found.store)),
                released=[Reservation(**r) for r in (pending.result or {}).get("released", [])],
            )
    _check_cancellable(found)
    if not confirmation_token:
        pending, token = issue(ctx, CANCEL_ORDER, args)
        return ConfirmationRequired(
            action=CANCEL_ORDER,
            summary=(
                f"Cancel order {found.id} of {found.store.name} dated "
                f"{found.order_date.isoformat()} ({_money_text(to_money(found.total_amount))})?"
            ),
            confirmation_token=token,
            expires_at=pending.expires_at,
        )
    with ctx.session.begin_nested():
        released = _release(ctx, found.id)
        found.status = "cancelled"
        pending.used_at = _now()
        pending.result = {
            "order_id": found.id,
            "released": [r.model_dump() for r in released],
        }
        ctx.session.flush()
    return CancelResult(
        already_done=False,
        order=OrderOut(**_order_out(_load_order(ctx, found.id), found.store)),
        released=released,
    )


def _check_cancellable(order: Order) -> None:
    if order.status == "delivered":
        when = f" on {order.delivered_date.isoformat()}" if order.delivered_date else ""
        raise Refused(
            f"Order {order.id} was delivered{when}; a delivered order cannot be cancelled."
        )
    if order.status in ("cancelled", "returned"):
        raise Refused(f"Order {order.id} is already {order.status}.")


def _release(ctx: ToolContext, order_id: int) -> list[Reservation]:
    held = ctx.session.execute(
        select(StockReservation, InventoryItem, Product.sku)
        .join(
            InventoryItem,
            (InventoryItem.product_id == StockReservation.product_id)
            & (InventoryItem.warehouse == StockReservation.warehouse),
        )
        .join(Product, Product.id == StockReservation.product_id)
        .where(StockReservation.order_id == order_id, StockReservation.released_at.is_(None))
        .order_by(InventoryItem.product_id, InventoryItem.warehouse)
        .with_for_update(of=[StockReservation, InventoryItem])
    ).all()
    now = _now()
    released = []
    for reservation, item, sku in held:
        item.reserved = max(item.reserved - reservation.quantity, 0)
        reservation.released_at = now
        released.append(
            Reservation(sku=sku, warehouse=reservation.warehouse, quantity=reservation.quantity)
        )
    return released


# --------------------------------------------------------------------------- notes


class NoteResult(Schema):
    status: Literal["logged"] = "logged"
    already_done: bool
    note_id: int
    store: StoreRef
    text: str
    author: str
    occurred_at: dt.datetime


@tool(category="stores", writes=True)
def log_note(
    ctx: ToolContext,
    *,
    store: Ref,
    text: Annotated[str, Field(min_length=1, max_length=4000)],
    confirmation_token: Annotated[str | None, Field(max_length=200)] = None,
) -> ConfirmationRequired | NoteResult:
    """Add a note to a store's history (e.g. what was discussed on a visit). The first call
    returns a confirmation token; call again with it to save the note.

    Args:
        store: The store's id, code or name.
        text: The note.
        confirmation_token: The token from the first call; leave empty to ask for one.
    """
    _require_writer(ctx)
    found = resolve_store(ctx, store)
    body = text.strip()
    if not body:
        raise Refused("The note is empty.")
    args = {"store_id": found.id, "text": body}
    if not confirmation_token:
        pending, token = issue(ctx, LOG_NOTE, args)
        preview = body if len(body) <= 80 else body[:77] + "..."
        return ConfirmationRequired(
            action=LOG_NOTE,
            summary=f'Save this note for {found.name}: "{preview}"?',
            confirmation_token=token,
            expires_at=pending.expires_at,
        )
    pending = redeem(ctx, LOG_NOTE, confirmation_token, args)
    if pending.used_at is not None and pending.result:
        note = ctx.session.get(Communication, int(pending.result["note_id"]))
        if note is None:
            raise ToolError("The note saved with this confirmation no longer exists.")
        return _note_result(note, found, already_done=True)
    author = ctx.session.get(User, ctx.actor.id)
    with ctx.session.begin_nested():
        note = Communication(
            store_id=found.id,
            author_id=ctx.actor.id,
            author_name=author.name if author else ctx.actor.name,
            channel=(ctx.channel or "api")[:16],
            direction="internal",
            kind="note",
            text=body,
            occurred_at=_now(),
        )
        ctx.session.add(note)
        ctx.session.flush()
        pending.used_at = _now()
        pending.result = {"note_id": note.id}
        ctx.session.flush()
    return _note_result(note, found, already_done=False)


def _note_result(note: Communication, store: Store, *, already_done: bool) -> NoteResult:
    return NoteResult(
        already_done=already_done,
        note_id=note.id,
        store=StoreRef.model_validate(store),
        text=note.text,
        author=note.author_name or "",
        occurred_at=note.occurred_at,
    )
