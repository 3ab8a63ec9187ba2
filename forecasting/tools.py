"""Forecasting tools: next order, demand, at-risk stores, the call list and upsell ideas.

They read the predictions `mangalm train` stored (fast: a few indexed queries per call) and
follow the same permission rules as every tool: a store the actor may not see behaves exactly
like one that does not exist, and a rep's call list is only ever their own. Stock, promotions,
last orders, overdue invoices and complaints are read live.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, or_, select, text

from forecasting import call_list as calls
from tools.context import ToolContext
from tools.models import InventoryItem, Order, Prediction, Product, Store, User
from tools.registry import NotFound, Refused, ToolError, tool
from tools.resolve import resolve_product, resolve_store
from tools.schemas import ProductRef, Ref, Schema, StoreRef
from tools.settings import get_settings

TRAIN_HINT = "No forecasts yet: run `mangalm train` after loading order history."


class NotEnoughHistory(ToolError):
    """The store has too few orders for a forecast."""

    code = "not_enough_history"


class NoForecasts(ToolError):
    """No model has been trained on this database yet."""

    code = "no_forecasts"


def _require_trained(ctx: ToolContext, kind: str) -> None:
    found = ctx.session.execute(
        text("SELECT 1 FROM predictions WHERE kind = :kind LIMIT 1"), {"kind": kind}
    ).first()
    if found is None:
        raise NoForecasts(TRAIN_HINT)


def _store_ref(store: Store) -> StoreRef:
    return StoreRef.model_validate(store)


def _product_ref(product: Product) -> ProductRef:
    return ProductRef.model_validate(product)


class BasketItem(Schema):
    """A product expected in the next order."""

    product: ProductRef
    quantity: int
    probability: float = Field(description="Chance the product is in the next order (0-1).")


class NextOrderForecast(Schema):
    """When a store is expected to order next, and what."""

    store: StoreRef
    predicted_date: dt.date
    days_from_today: int
    probability_within_7_days: float
    confidence: float = Field(description="How regular the store's rhythm is (0-1).")
    usual_interval_days: float | None
    last_order_date: dt.date | None
    days_since_last_order: int | None
    expected_value: float | None = Field(description="Mean of the last three orders.")
    basket: list[BasketItem]
    model_version: str
    as_of: dt.date | None


def _history_error(ctx: ToolContext, store: Store) -> ToolError:
    orders = ctx.session.execute(
        select(func.count(), func.max(Order.order_date)).where(
            Order.store_id == store.id, Order.status.in_(("placed", "delivered"))
        )
    ).one()
    count, last = int(orders[0]), orders[1]
    if count < 2:
        said = "no orders" if count == 0 else f"one order (on {last.isoformat()})"
        return NotEnoughHistory(
            f"Not enough history to forecast {store.name}: it has {said}; "
            "a forecast needs at least two orders.",
            orders=count,
        )
    return NoForecasts(
        f"{store.name} has no forecast in the current model; run `mangalm train` to refresh.",
        orders=count,
    )


@tool(category="forecasting")
def predict_next_order(ctx: ToolContext, *, store: Ref) -> NextOrderForecast:
    """When will a store order next, how likely within 7 days, and what it will probably buy.

    Args:
        store: The store's id, code or name, e.g. "Sharma General" or "S0042".
    """
    found = resolve_store(ctx, store)
    _require_trained(ctx, "next_order")
    row = ctx.session.scalars(
        select(Prediction).where(Prediction.store_id == found.id, Prediction.kind == "next_order")
    ).first()
    if row is None or row.predicted_date is None:
        raise _history_error(ctx, found)
    details: dict[str, Any] = row.details or {}
    last = ctx.session.scalar(
        select(func.max(Order.order_date)).where(
            Order.store_id == found.id,
            Order.status.in_(("placed", "delivered")),
            Order.order_date <= ctx.today,
        )
    )
    basket_rows = ctx.session.execute(
        select(Prediction, Product)
        .join(Product, Product.id == Prediction.product_id)
        .where(Prediction.store_id == found.id, Prediction.kind == "basket")
        .order_by(Prediction.probability.desc(), Product.id)
        .limit(10)
    ).all()
    return NextOrderForecast(
        store=_store_ref(found),
        predicted_date=row.predicted_date,
        days_from_today=(row.predicted_date - ctx.today).days,
        probability_within_7_days=round(float(row.probability or 0.0), 3),
        confidence=round(float(row.confidence or 0.0), 3),
        usual_interval_days=details.get("median_interval_days"),
        last_order_date=last,
        days_since_last_order=(ctx.today - last).days if last else None,
        expected_value=details.get("expected_value"),
        basket=[
            BasketItem(
                product=_product_ref(product),
                quantity=int(pred.quantity or 1),
                probability=round(float(pred.probability or 0.0), 3),
            )
            for pred, product in basket_rows
        ],
        model_version=row.model_version,
        as_of=dt.date.fromisoformat(details["as_of"]) if details.get("as_of") else None,
    )


class DemandWeek(Schema):
    """Forecast demand for one week."""

    week_start: dt.date
    week_end: dt.date
    quantity: float
    lower: float | None = Field(description="10th percentile.")
    upper: float | None = Field(description="90th percentile.")


class DemandForecast(Schema):
    """Weekly demand forecast for a product (all regions, or one)."""

    product: ProductRef
    region: str | None
    unit: str
    weeks: list[DemandWeek]
    total: float = Field(
        description="Units expected over the weeks: the sum of the weekly expectations (for a "
        "product that sells in few weeks, more than the sum of the typical weekly quantities)."
    )
    model_version: str


def _tenths(value: Any) -> float:
    """`value` to one decimal, halves rounded up as people do (33.25 -> 33.3), not to even."""
    return float(Decimal(str(value or 0)).quantize(Decimal("0.1"), ROUND_HALF_UP))


@tool(category="forecasting")
def demand_forecast(
    ctx: ToolContext,
    *,
    product: Ref,
    weeks: Annotated[int, Field(ge=1, le=12)] = 8,
    region: str | None = None,
) -> DemandForecast:
    """Weekly demand forecast for a product over the next weeks, with a range.

    Args:
        product: The product's id, SKU or name, e.g. "Tata Tea Gold 500g".
        weeks: How many weeks ahead (1-12).
        region: A region name for that region's demand only; all regions when omitted.
    """
    found = resolve_product(ctx, product)
    _require_trained(ctx, "demand")
    region_clause = (
        Prediction.details["region"].astext.is_(None)
        if region is None
        else func.lower(Prediction.details["region"].astext) == region.strip().lower()
    )
    rows = ctx.session.scalars(
        select(Prediction)
        .where(Prediction.product_id == found.id, Prediction.kind == "demand", region_clause)
        .order_by(Prediction.predicted_date)
        .limit(weeks)
    ).all()
    if not rows:
        if region is not None:
            known = ctx.session.scalars(
                select(func.distinct(Store.region)).where(Store.region.is_not(None))
            ).all()
            if region.strip().lower() not in {k.lower() for k in known}:
                raise NotFound(f"No region '{region}'. Regions: {', '.join(sorted(known))}.")
        raise NotEnoughHistory(
            f"No demand forecast for {found.name}: it has not sold in the last 26 weeks"
            + (f" in {region}" if region else "")
            + "."
        )
    out = [
        DemandWeek(
            week_start=dt.date.fromisoformat((r.details or {})["week_start"]),
            week_end=r.predicted_date,
            quantity=_tenths(r.quantity),
            lower=(r.details or {}).get("lower"),
            upper=(r.details or {}).get("upper"),
        )
        for r in rows
    ]
    return DemandForecast(
        product=_product_ref(found),
        region=rows[0].details.get("region") if rows[0].details else None,
        unit=found.unit,
        weeks=out,
        total=_tenths(
            sum(Decimal(str((r.details or {}).get("mean", r.quantity) or 0)) for r in rows)
        ),
        model_version=rows[0].model_version,
    )


class Reason(Schema):
    """Why a store is on a list, with the numbers behind it."""

    code: str
    text: str
    numbers: dict[str, Any] = Field(default_factory=dict)


def _reasons(items: list[dict[str, Any]]) -> list[Reason]:
    return [
        Reason(
            code=i["code"],
            text=i["text"],
            numbers={k: v for k, v in i.items() if k not in ("code", "text")},
        )
        for i in items
    ]


class AtRiskStore(Schema):
    """A store whose ordering has dropped against its own rhythm."""

    store: StoreRef
    risk: float = Field(description="Probability the store's buying has dropped (0-1).")
    last_order_date: dt.date | None
    reasons: list[Reason]


@tool(category="forecasting")
def at_risk_stores(
    ctx: ToolContext, *, limit: Annotated[int, Field(ge=1, le=100)] = 10
) -> list[AtRiskStore]:
    """Stores whose ordering has dropped (later, smaller, fewer lines), riskiest first.

    Args:
        limit: How many stores to list.
    """
    _require_trained(ctx, "next_order")
    rows = ctx.session.execute(
        select(Prediction, Store)
        .join(Store, Store.id == Prediction.store_id)
        .where(Prediction.kind == "at_risk", ctx.store_scope())
        .order_by(Prediction.probability.desc(), Store.id)
        .limit(limit)
    ).all()
    return [
        AtRiskStore(
            store=_store_ref(store),
            risk=round(float(pred.probability or 0), 3),
            last_order_date=(
                dt.date.fromisoformat(pred.details["last_order_date"])
                if pred.details and pred.details.get("last_order_date")
                else None
            ),
            reasons=_reasons((pred.details or {}).get("reasons", [])),
        )
        for pred, store in rows
    ]


class CallEntry(Schema):
    """One store to call, with why."""

    rank: int
    store: StoreRef
    phone: str | None
    score: float
    components: dict[str, float]
    reasons: list[Reason]


class CallList(Schema):
    """Whom to call on a day."""

    rep: str | None = Field(description="The rep whose stores these are; None for a whole team.")
    date: dt.date
    stores_considered: int
    entries: list[CallEntry]


def _resolve_rep(ctx: ToolContext, rep: str | None) -> User | None:
    actor = ctx.actor
    if actor.role == "rep":
        if rep is not None:
            me = ctx.session.get(User, actor.id)
            names = {str(actor.id), actor.email.lower(), actor.name.lower()}
            if me is not None and me.code:
                names.add(me.code.lower())
            if rep.strip().lower() not in names:
                raise Refused("A rep can see only their own call list.")
        return ctx.session.get(User, actor.id)
    if rep is None:
        return None
    visible = ctx.rep_ids()
    term = rep.strip()
    query = select(User).where(User.role.in_(("rep", "manager")), User.is_active.is_(True))
    if visible is not None:
        query = query.where(User.id.in_(visible))
    match = [User.email == term.lower(), User.code == term, User.name.ilike(f"%{term}%")]
    if term.isdigit():
        match.append(User.id == int(term))
    found = ctx.session.scalars(query.where(or_(*match)).order_by(User.id).limit(5)).all()
    if not found:
        raise NotFound(f"No rep '{rep}' in your team.")
    if len(found) > 1:
        exact = [u for u in found if u.name.lower() == term.lower()]
        if len(exact) != 1:
            raise NotFound(
                f"Several reps match '{rep}': {', '.join(u.name for u in found)}. Which one?"
            )
        return exact[0]
    return found[0]


@tool(category="forecasting")
def call_list(
    ctx: ToolContext,
    *,
    rep: str | None = None,
    date: dt.date | None = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
) -> CallList:
    """Which stores to call on a day, ranked, each with the reasons and numbers behind it.

    Ranks on due-to-order, expected order value, overdue credit, at-risk and recent complaints.

    Args:
        rep: A rep's name, email or code (managers only; a rep always gets their own list).
        date: The day to plan for; today when omitted.
        limit: How many stores to list.
    """
    day = date or ctx.today
    who = _resolve_rep(ctx, rep)
    # The stores are named by their reps (None: every active store), not listed: a team's or
    # the fleet's thousands of ids are neither read here nor sent back (see `calls.RepStores`).
    reps = ctx.rep_ids() if ctx.actor.role != "rep" else [ctx.actor.id]
    if who is not None:
        reps = [who.id] if reps is None or who.id in reps else []
    ranked, considered = calls.ranked(
        ctx.session, calls.RepStores(reps), day, limit, get_settings().currency
    )
    if not any(
        entry["components"]["due"] > 0 or entry["components"]["value"] > 0 for _, entry in ranked
    ):
        # Nothing listed comes from a next-order prediction: maybe there are none at all.
        _require_trained(ctx, "next_order")
    listed = select(Store.id, Store.code, Store.name, Store.city, Store.region, Store.phone)
    stores = {
        row.id: row
        for row in ctx.session.connection().execute(
            listed.where(Store.id.in_([i for i, _ in ranked]))
        )
    }
    return CallList(
        rep=who.name if who is not None else None,
        date=day,
        stores_considered=considered,
        entries=[
            CallEntry(
                rank=i + 1,
                store=StoreRef.model_validate(stores[store_id]),
                phone=stores[store_id].phone,
                score=entry["score"],
                components=entry["components"],
                reasons=_reasons(entry["reasons"]),
            )
            for i, (store_id, entry) in enumerate(ranked)
        ],
    )


class UpsellItem(Schema):
    """A product to pitch to a store, and why."""

    product: ProductRef
    source: str = Field(description="similar_stores, stopped_buying or promotion")
    score: float
    reason: str
    available: int = Field(description="Units in stock across warehouses (on hand - reserved).")
    promotion: str | None = None


class UpsellSuggestions(Schema):
    """What to pitch to a store."""

    store: StoreRef
    suggestions: list[UpsellItem]
    model_version: str


def _promotion_items(ctx: ToolContext, store: Store) -> list[tuple[int, float, str, str]]:
    """Active promotions that fit the store's recent basket: (product, score, reason, code)."""
    rows = ctx.session.execute(
        text(
            "WITH basket AS ("
            "  SELECT l.product_id, p.brand, p.category, COUNT(DISTINCT o.id) AS times"
            "  FROM orders o JOIN order_lines l ON l.order_id = o.id"
            "  JOIN products p ON p.id = l.product_id"
            "  WHERE o.store_id = :store AND o.status IN ('placed', 'delivered')"
            "  AND o.order_date > CAST(:day AS date) - 180 AND o.order_date <= :day"
            "  GROUP BY l.product_id, p.brand, p.category)"
            " SELECT DISTINCT ON (pr.id) pr.id, pr.code, pr.name, pr.discount_pct,"
            "  pr.min_quantity, pr.free_quantity, pr.ends_on, b.product_id, b.times"
            " FROM promotions pr JOIN basket b ON"
            "  (pr.product_id = b.product_id OR (pr.product_id IS NULL AND"
            "   (pr.brand = b.brand OR pr.category = b.category)))"
            " WHERE pr.starts_on <= :day AND pr.ends_on >= :day"
            "  AND (pr.segment IS NULL OR pr.segment = :segment)"
            "  AND (pr.region IS NULL OR pr.region = :region)"
            " ORDER BY pr.id, b.times DESC, b.product_id"
        ),
        {"store": store.id, "day": ctx.today, "segment": store.segment, "region": store.region},
    ).mappings()
    out = []
    for r in rows:
        if r["discount_pct"] is not None:
            offer = f"{float(r['discount_pct']):g}% off"
        elif r["free_quantity"] and r["min_quantity"]:
            offer = f"{r['free_quantity']} free with {r['min_quantity']}"
        else:
            offer = "scheme"
        reason = (
            f"{r['name']}: {offer} until {r['ends_on'].isoformat()}; "
            f"the store bought it {r['times']} times in the last 180 days"
        )
        out.append((int(r["product_id"]), 0.5, reason, str(r["code"])))
    return out


@tool(category="forecasting")
def upsell_suggestions(
    ctx: ToolContext, *, store: Ref, limit: Annotated[int, Field(ge=1, le=20)] = 5
) -> UpsellSuggestions:
    """Products to pitch to a store: what similar stores buy, what it stopped buying, schemes.

    Never suggests a product that is out of stock.

    Args:
        store: The store's id, code or name.
        limit: How many suggestions.
    """
    found = resolve_store(ctx, store)
    preds = ctx.session.scalars(
        select(Prediction)
        .where(Prediction.store_id == found.id, Prediction.kind == "upsell")
        .order_by(Prediction.probability.desc(), Prediction.product_id)
    ).all()
    if not preds:  # (a store's predictions mean the models have been trained)
        _require_trained(ctx, "next_order")
        count = ctx.session.scalar(
            select(func.count()).where(
                Order.store_id == found.id, Order.status.in_(("placed", "delivered"))
            )
        )
        if not count:
            raise NotEnoughHistory(
                f"Not enough history for {found.name}: it has no orders yet.", orders=0
            )
    version = preds[0].model_version if preds else ""
    candidates: list[tuple[int, str, float, str, str | None]] = []
    promo_code: str | None
    for p in preds:
        d = p.details or {}
        if d.get("source") == "stopped_buying":
            reason = (
                f"bought {d.get('times_bought')} times, about every "
                f"{d.get('usual_gap_days'):.0f} days; not since {d.get('last_bought')} "
                f"({d.get('days_since')} days)"
            )
        else:
            reason = (
                f"{(d.get('similar_store_share') or 0) * 100:.0f}% of the 50 most similar stores "
                f"buy it; {(d.get('segment_share') or 0) * 100:.0f}% of {found.segment or 'all'} "
                "stores"
            )
        candidates.append(
            (
                int(p.product_id or 0),
                d.get("source", "similar_stores"),
                float(p.probability or 0),
                reason,
                None,
            )
        )
    for product_id, score, reason, code in _promotion_items(ctx, found):
        candidates.append((product_id, "promotion", score, reason, code))
    ids = list({c[0] for c in candidates})
    # Active products with their stock, in one statement (no stock record: not listed).
    available = (
        select(
            InventoryItem.product_id,
            func.sum(InventoryItem.on_hand - InventoryItem.reserved).label("available"),
        )
        .where(InventoryItem.product_id.in_(ids))
        .group_by(InventoryItem.product_id)
        .subquery("available")
    )
    products: dict[int, Product] = {}
    stock: dict[int, int] = {}
    for product, units in ctx.session.execute(
        select(Product, available.c.available)
        .join(available, available.c.product_id == Product.id)
        .where(Product.is_active.is_(True))
    ):
        products[product.id] = product
        stock[product.id] = int(units or 0)
    chosen: list[UpsellItem] = []
    seen: set[int] = set()
    for product_id, source, score, reason, promo_code in sorted(
        candidates, key=lambda c: (-c[2], c[0])
    ):
        # Out of stock (or no stock record at all) is never suggested.
        if product_id in seen or stock.get(product_id, 0) <= 0 or product_id not in products:
            continue
        seen.add(product_id)
        chosen.append(
            UpsellItem(
                product=_product_ref(products[product_id]),
                source=source,
                score=round(score, 3),
                reason=reason,
                available=stock[product_id],
                promotion=promo_code,
            )
        )
        if len(chosen) >= limit:
            break
    return UpsellSuggestions(store=_store_ref(found), suggestions=chosen, model_version=version)
