"""Active promotions: which running schemes apply to a store and a product."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tests.factories import World, ctx_for
from tools.registry import call_tool

pytest_plugins = ["tests.factories"]


def _names(result) -> set[str]:
    return {p.name for p in result.promotions}


def test_schemes_for_stores_and_products(wdb: Session, world: World) -> None:
    ctx = ctx_for(wdb, world.admin)
    everything = call_tool(ctx, "active_promotions", {})
    assert _names(everything) == {"Parle 5% off", "Buy 10 get 1 for chemists", "North dairy 3%"}
    # stores[1]: chemist in Mumbai (West); stores[2]: supermarket in Delhi (North)
    chemist_west = call_tool(ctx, "active_promotions", {"store": world.stores[1].code})
    assert _names(chemist_west) == {"Parle 5% off", "Buy 10 get 1 for chemists"}
    north = call_tool(ctx, "active_promotions", {"store": world.stores[2].code})
    assert _names(north) == {"Parle 5% off", "North dairy 3%"}
    tea = world.products[1]  # the chemists' buy-10-get-1 product, a Tata tea
    for_tea = call_tool(ctx, "active_promotions", {"product": tea.sku})
    assert _names(for_tea) == {"Buy 10 get 1 for chemists"}
    both = call_tool(ctx, "active_promotions", {"product": tea.sku, "store": world.stores[2].id})
    assert _names(both) == set()
    parle = call_tool(ctx, "active_promotions", {"product": world.products[0].sku})
    assert _names(parle) == {"Parle 5% off"}
    assert parle.promotions[0].days_left == 10
