"""Inventory tools: stock of a product per warehouse, and what is running low.

Available stock is on hand less reserved (held for placed orders). A product is "out" when
nothing is available, "low" when what is available is at or below its reorder point, and
"ok" otherwise. Stock is the distributor's, not a store's, so every user sees all of it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import and_, case, func, or_, select

from tools.context import ToolContext
from tools.models import InventoryItem, Product
from tools.registry import tool
from tools.resolve import resolve_product
from tools.schemas import ProductRef, Ref, Schema

Status = Literal["ok", "low", "out"]


def stock_status(available: int, reorder_point: int) -> Status:
    """ok / low / out, as described in the module docstring."""
    if available <= 0:
        return "out"
    if available <= reorder_point:
        return "low"
    return "ok"


class WarehouseStock(Schema):
    warehouse: str
    on_hand: int
    reserved: int
    available: int
    reorder_point: int
    status: Status


class StockLevel(Schema):
    """Stock of one product, in total and per warehouse."""

    product: ProductRef
    unit: str
    on_hand: int
    reserved: int
    available: int
    reorder_point: int
    status: Status
    warehouses: list[WarehouseStock]


def available_by_warehouse(ctx: ToolContext, product_id: int) -> list[InventoryItem]:
    """The product's inventory rows, fullest first."""
    return list(
        ctx.session.scalars(
            select(InventoryItem)
            .where(InventoryItem.product_id == product_id)
            .order_by((InventoryItem.on_hand - InventoryItem.reserved).desc(), InventoryItem.id)
        )
    )


@tool(category="inventory")
def stock_level(ctx: ToolContext, *, product: Ref) -> StockLevel:
    """Stock of a product: on hand, reserved, available and reorder point, per warehouse,
    with a status (ok, low, out).

    Args:
        product: The product's id, SKU or name (partial or misspelt names work).
    """
    found = resolve_product(ctx, product)
    rows = available_by_warehouse(ctx, found.id)
    warehouses = [
        WarehouseStock(
            warehouse=row.warehouse,
            on_hand=row.on_hand,
            reserved=row.reserved,
            available=row.on_hand - row.reserved,
            reorder_point=row.reorder_point,
            status=stock_status(row.on_hand - row.reserved, row.reorder_point),
        )
        for row in rows
    ]
    on_hand = sum(w.on_hand for w in warehouses)
    reserved = sum(w.reserved for w in warehouses)
    reorder_point = sum(w.reorder_point for w in warehouses)
    return StockLevel(
        product=ProductRef.model_validate(found),
        unit=found.unit,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        reorder_point=reorder_point,
        status=stock_status(on_hand - reserved, reorder_point),
        warehouses=warehouses,
    )


class LowStockItem(Schema):
    product: ProductRef
    on_hand: int
    reserved: int
    available: int
    reorder_point: int
    shortfall: int = Field(description="How far available is below the line that was used.")
    status: Status


class LowStock(Schema):
    """Active products running low, out-of-stock first, then the largest shortfall."""

    threshold: int | None = Field(description="None: each product's reorder point was used.")
    total: int = Field(description="How many products match (rows may be fewer: limit).")
    items: list[LowStockItem]


@tool(category="inventory")
def low_stock(
    ctx: ToolContext,
    *,
    threshold: Annotated[int | None, Field(ge=0)] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 20,
) -> LowStock:
    """Active products whose available stock (all warehouses) is at or below their reorder
    point, or below `threshold` when one is given.

    Args:
        threshold: List products with less than this many units available instead.
        limit: How many products to list.
    """
    on_hand = func.coalesce(func.sum(InventoryItem.on_hand), 0)
    reserved = func.coalesce(func.sum(InventoryItem.reserved), 0)
    reorder = func.coalesce(func.sum(InventoryItem.reorder_point), 0)
    available = on_hand - reserved
    if threshold is not None:
        line = threshold
        condition = available < threshold
        shortfall = threshold - available
    else:
        line = None
        condition = or_(available <= 0, and_(reorder > 0, available <= reorder))
        shortfall = reorder - available
    grouped = (
        select(
            Product.id.label("product_id"),
            on_hand.label("on_hand"),
            reserved.label("reserved"),
            available.label("available"),
            reorder.label("reorder_point"),
            shortfall.label("shortfall"),
        )
        .select_from(Product)
        .outerjoin(InventoryItem, InventoryItem.product_id == Product.id)
        .where(Product.is_active.is_(True))
        .group_by(Product.id)
        .having(condition)
        .subquery("low")
    )
    total = ctx.session.scalar(select(func.count()).select_from(grouped)) or 0
    rows = ctx.session.execute(
        select(Product, grouped)
        .join(grouped, grouped.c.product_id == Product.id)
        .order_by(
            case((grouped.c.available <= 0, 0), else_=1),
            grouped.c.shortfall.desc(),
            Product.id,
        )
        .limit(limit)
    ).all()
    return LowStock(
        threshold=line,
        total=total,
        items=[
            LowStockItem(
                product=ProductRef.model_validate(row[0]),
                on_hand=int(row.on_hand),
                reserved=int(row.reserved),
                available=int(row.available),
                reorder_point=int(row.reorder_point),
                shortfall=int(row.shortfall),
                status=stock_status(int(row.available), int(row.reorder_point)),
            )
            for row in rows
        ],
    )
