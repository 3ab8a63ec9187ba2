"""The permission matrix over direct calls: every role x every tool that takes a store or an
order x own store vs another team's store. A store the actor may not see must fail exactly
like one that does not exist, and never leak into search results or aggregates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.factories import (
    TODAY,
    ctx_for,
    make_invoice,
    make_order,
    make_product,
    make_stock,
    make_store,
    make_user,
)
from tools.registry import run_tool


def _world(db: Session) -> dict[str, Any]:
    admin = make_user(db, "admin")
    manager = make_user(db, "manager")
    rep = make_user(db, "rep", manager=manager)
    teammate = make_user(db, "rep", manager=manager)
    other_manager = make_user(db, "manager")
    outsider = make_user(db, "rep", manager=other_manager)
    viewer = make_user(db, "viewer", manager=manager)
    product = make_product(db, sku="PERM1", name="Permission Biscuits")
    make_stock(db, product, 100)
    stores = {
        "rep": make_store(db, rep, name="Alpha Kirana Store"),
        "teammate": make_store(db, teammate, name="Bravo Medical Hall"),
        "outsider": make_store(db, outsider, name="Zulu Provision Mart"),
    }
    orders = {}
    for key, store in stores.items():
        orders[key] = make_order(db, store, TODAY - dt.timedelta(days=3), [(product, 2)])
        make_invoice(db, store, "500", invoice_date=TODAY - dt.timedelta(days=60))
    users = {
        "admin": admin,
        "manager": manager,
        "rep": rep,
        "viewer": viewer,
    }
    return {"users": users, "stores": stores, "orders": orders, "product": product}


# Whose store each role may and may not see.
OWN = {"admin": "outsider", "manager": "teammate", "rep": "rep", "viewer": "teammate"}
FOREIGN = {"admin": None, "manager": "outsider", "rep": "teammate", "viewer": "outsider"}

STORE_TOOLS: dict[str, dict[str, Any]] = {
    "store_profile": {},
    "recent_orders": {},
    "outstanding": {},
    "top_products": {},
    "active_promotions": {},
    "draft_order": {"lines": [{"product": "PERM1", "quantity": 1}]},
    "log_note": {"text": "called, will order Friday"},
}


def _ref_kinds(store: Any) -> list[Any]:
    return [store.id, store.code, store.name, store.name.split()[0].lower()]


@pytest.mark.parametrize("role", list(OWN))
@pytest.mark.parametrize("tool_name", list(STORE_TOOLS) + ["order_details", "cancel_order"])
def test_matrix(db: Session, role: str, tool_name: str) -> None:
    w = _world(db)
    ctx = ctx_for(db, w["users"][role])
    writes = tool_name in ("draft_order", "log_note", "cancel_order")

    def call(key: str | None, ref: Any) -> Any:
        if tool_name in ("order_details", "cancel_order"):
            return run_tool(ctx, tool_name, {"order": ref})
        return run_tool(ctx, tool_name, {"store": ref, **STORE_TOOLS[tool_name]})

    own = OWN[role]
    own_refs = (
        [w["orders"][own].id]
        if tool_name in ("order_details", "cancel_order")
        else _ref_kinds(w["stores"][own])
    )
    for ref in own_refs:
        result = call(own, ref)
        if role == "viewer" and writes:
            assert not result.ok and result.error["error"] == "refused"
            assert "read-only" in result.error["message"]
        else:
            assert result.ok, (ref, result.error)
    foreign = FOREIGN[role]
    if foreign is None:
        return
    if tool_name in ("order_details", "cancel_order"):
        refs = [(w["orders"][foreign].id, 987654)]
    else:
        store = w["stores"][foreign]
        refs = [(store.id, 987654), (store.code, "NOPE-404"), (store.name, "Nowhere Shop Xyzzy")]
    for foreign_ref, missing_ref in refs:
        denied = call(foreign, foreign_ref)
        missing = call(None, missing_ref)
        assert not denied.ok
        if role == "viewer" and writes:
            assert denied.error == missing.error  # refused before anything is looked up
            continue
        assert denied.error["error"] == "not_found"
        normalise = lambda e, r: {**e, "message": e["message"].replace(str(r), "REF")}  # noqa: E731
        assert normalise(denied.error, foreign_ref) == normalise(missing.error, missing_ref)


@pytest.mark.parametrize("role", ["manager", "rep", "viewer"])
def test_search_and_aggregates_exclude_foreign_stores(db: Session, role: str) -> None:
    w = _world(db)
    ctx = ctx_for(db, w["users"][role])
    foreign = w["stores"][FOREIGN[role]]
    found = run_tool(ctx, "find_store", {"query": foreign.name})
    assert found.ok and foreign.id not in [c["id"] for c in found.result["candidates"]]
    visible = {s.id for k, s in w["stores"].items() if k != FOREIGN[role]}
    if role == "rep":
        visible = {w["stores"]["rep"].id}
    summary = run_tool(ctx, "sales_summary", {"period": "last_7_days", "group_by": "store"})
    assert {int(r["key"]) for r in summary.result["rows"]} == visible
    assert summary.result["totals"]["amount"] == float(Decimal("200.00") * len(visible))
    top = run_tool(ctx, "top_products", {"period": "last_7_days"})
    assert top.result["products"][0]["quantity"] == 2 * len(visible)
    overdue = run_tool(ctx, "overdue_stores", {})
    assert {s["store"]["id"] for s in overdue.result["stores"]} == visible
    lapsed = run_tool(ctx, "stores_not_ordered_since", {"days": 1})
    assert {s["store"]["id"] for s in lapsed.result["stores"]} == visible


def test_admin_sees_every_store(db: Session) -> None:
    w = _world(db)
    ctx = ctx_for(db, w["users"]["admin"])
    overdue = run_tool(ctx, "overdue_stores", {"limit": 200})
    ids = {s["store"]["id"] for s in overdue.result["stores"]}
    assert {s.id for s in w["stores"].values()} <= ids
