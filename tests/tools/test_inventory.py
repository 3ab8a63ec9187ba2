"""Inventory tools checked against SQL written here."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import World, ctx_for
from tools.registry import call_tool

pytest_plugins = ["tests.factories"]


def test_stock_level_matches_sql(wdb: Session, world: World) -> None:
    for product in world.products[:6]:
        result = call_tool(ctx_for(wdb, world.reps[2]), "stock_level", {"product": product.sku})
        rows = wdb.execute(
            text(
                "SELECT warehouse, on_hand, reserved, reorder_point FROM inventory "
                "WHERE product_id = :p"
            ),
            {"p": product.id},
        ).all()
        assert {
            (w.warehouse, w.on_hand, w.reserved, w.reorder_point) for w in result.warehouses
        } == {tuple(r) for r in rows}
        available = sum(r.on_hand - r.reserved for r in rows)
        reorder = sum(r.reorder_point for r in rows)
        assert result.available == available
        expected = "out" if available <= 0 else "low" if available <= reorder else "ok"
        assert result.status == expected


@pytest.mark.parametrize("threshold", [None, 0, 50, 300])
def test_low_stock_matches_sql(wdb: Session, world: World, threshold: int | None) -> None:
    args = {"limit": 500} if threshold is None else {"threshold": threshold, "limit": 500}
    result = call_tool(ctx_for(wdb, world.viewer), "low_stock", args)
    condition = (
        "avail <= 0 OR (rp > 0 AND avail <= rp)" if threshold is None else f"avail < {threshold}"
    )
    rows = (
        wdb.execute(
            text(
                "SELECT id FROM (SELECT p.id, COALESCE(SUM(i.on_hand - i.reserved), 0) AS avail, "
                "COALESCE(SUM(i.reorder_point), 0) AS rp FROM products p "
                "LEFT JOIN inventory i ON i.product_id = p.id WHERE p.is_active GROUP BY p.id) x "
                f"WHERE {condition}"
            )
        )
        .scalars()
        .all()
    )
    assert {i.product.id for i in result.items} == set(rows)
    assert result.total == len(rows)
    outs = [i.status == "out" for i in result.items]
    assert outs == sorted(outs, reverse=True)  # out of stock listed first
