"""Promotions: the trade schemes running today for a store and/or a product.

A scheme names at most a product, a brand or a category (none = everything), and may be
limited to a store segment and a region; an empty field means "any". A scheme applies to a
store when its segment and region fit the store, and to a product when its product, brand and
category fit the product. Schemes are active from `starts_on` to `ends_on`, both included.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import Field
from sqlalchemy import ColumnElement, and_, or_, select

from tools.context import ToolContext
from tools.models import Product, Promotion, Store
from tools.registry import tool
from tools.resolve import resolve_product, resolve_store
from tools.schemas import ProductRef, Ref, Schema, StoreRef


def _fits_store(store: Store) -> ColumnElement[bool]:
    return and_(
        or_(Promotion.segment.is_(None), Promotion.segment == store.segment),
        or_(Promotion.region.is_(None), Promotion.region == store.region),
    )


def _fits_product(product: Product) -> ColumnElement[bool]:
    return and_(
        or_(Promotion.product_id.is_(None), Promotion.product_id == product.id),
        or_(Promotion.brand.is_(None), Promotion.brand == product.brand),
        or_(Promotion.category.is_(None), Promotion.category == product.category),
    )


def applicable_promotions(
    ctx: ToolContext, *, store: Store | None = None, product: Product | None = None
) -> list[Promotion]:
    """Schemes active on `ctx.today` that fit the store and/or product, newest first."""
    query = select(Promotion).where(
        Promotion.starts_on <= ctx.today, Promotion.ends_on >= ctx.today
    )
    if store is not None:
        query = query.where(_fits_store(store))
    if product is not None:
        query = query.where(_fits_product(product))
    return list(ctx.session.scalars(query.order_by(Promotion.starts_on.desc(), Promotion.id)))


def best_discount(promotions: list[Promotion], quantity: int) -> tuple[Decimal, Promotion | None]:
    """The largest percentage discount a line of `quantity` units qualifies for."""
    best: tuple[Decimal, Promotion | None] = (Decimal("0"), None)
    for promotion in promotions:
        if promotion.discount_pct is None:
            continue
        if promotion.min_quantity is not None and quantity < promotion.min_quantity:
            continue
        if promotion.discount_pct > best[0]:
            best = (Decimal(promotion.discount_pct), promotion)
    return best


class PromotionOut(Schema):
    id: int
    code: str
    name: str
    description: str | None
    product: ProductRef | None
    brand: str | None
    category: str | None
    segment: str | None
    region: str | None
    discount_pct: float | None
    min_quantity: int | None
    free_quantity: int | None
    starts_on: dt.date
    ends_on: dt.date
    days_left: int = Field(description="Days after today the scheme still runs (0 = last day).")


class ActivePromotions(Schema):
    """Schemes running today that apply."""

    as_of: dt.date
    store: StoreRef | None
    product: ProductRef | None
    promotions: list[PromotionOut]


@tool(category="promotions")
def active_promotions(
    ctx: ToolContext, *, store: Ref | None = None, product: Ref | None = None
) -> ActivePromotions:
    """Trade schemes running today, for a store (its segment and region) and/or a product
    (the product, its brand or its category). Without either, every running scheme.

    Args:
        store: A store's id, code or name, to list the schemes it qualifies for.
        product: A product's id, SKU or name, to list the schemes on it.
    """
    found_store = resolve_store(ctx, store) if store else None
    found_product = resolve_product(ctx, product) if product else None
    promotions = applicable_promotions(ctx, store=found_store, product=found_product)
    product_ids = {p.product_id for p in promotions if p.product_id}
    products = {
        p.id: p for p in ctx.session.scalars(select(Product).where(Product.id.in_(product_ids)))
    }
    return ActivePromotions(
        as_of=ctx.today,
        store=StoreRef.model_validate(found_store) if found_store else None,
        product=ProductRef.model_validate(found_product) if found_product else None,
        promotions=[
            PromotionOut(
                id=p.id,
                code=p.code,
                name=p.name,
                description=p.description,
                product=ProductRef.model_validate(products[p.product_id]) if p.product_id else None,
                brand=p.brand,
                category=p.category,
                segment=p.segment,
                region=p.region,
                discount_pct=float(p.discount_pct) if p.discount_pct is not None else None,
                min_quantity=p.min_quantity,
                free_quantity=p.free_quantity,
                starts_on=p.starts_on,
                ends_on=p.ends_on,
                days_left=(p.ends_on - ctx.today).days,
            )
            for p in promotions
        ],
    )
