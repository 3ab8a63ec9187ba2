"""Confirmed writes: drafts, confirmation tokens, stock and credit checks, cancel, notes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import (
    TODAY,
    ctx_for,
    make_invoice,
    make_order,
    make_product,
    make_promotion,
    make_stock,
    make_store,
    make_user,
)
from tools.registry import Ambiguous, Refused, call_tool


def _setup(db: Session) -> dict:
    manager = make_user(db, "manager")
    rep = make_user(db, "rep", manager=manager)
    store = make_store(db, rep, name="Sharma General Store", credit_limit=Decimal("10000"))
    biscuits = make_product(db, sku="PG100", name="Parle-G 100g", price=Decimal("250.00"))
    tea = make_product(
        db, sku="TT500", name="Tata Tea Gold 500g", brand="Tata", price=Decimal("400")
    )
    make_stock(db, biscuits, 30, reserved=5, warehouse="MAIN")
    make_stock(db, biscuits, 10, warehouse="NORTH")
    make_stock(db, tea, 8)
    return {"manager": manager, "rep": rep, "store": store, "biscuits": biscuits, "tea": tea}


def _counts(db: Session) -> tuple[int, int, int, int, int]:
    return tuple(  # type: ignore[return-value]
        db.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM order_lines), "
                "(SELECT COALESCE(SUM(reserved), 0) FROM inventory), "
                "(SELECT COUNT(*) FROM pending_actions), (SELECT COUNT(*) FROM communications)"
            )
        ).one()
    )


def _draft(db: Session, w: dict, lines: list[dict], user=None):
    return call_tool(
        ctx_for(db, user or w["rep"]), "draft_order", {"store": w["store"].code, "lines": lines}
    )


def test_draft_then_confirm_places_one_order(db: Session) -> None:
    w = _setup(db)
    before = _counts(db)
    draft = _draft(
        db, w, [{"product": "parle g", "quantity": 28}, {"product": "TT500", "quantity": 2}]
    )
    assert draft.status == "draft" and draft.total == Decimal("7800.00")
    assert [(x.product.sku, x.quantity, x.amount) for x in draft.lines] == [
        ("PG100", 28, Decimal("7000.00")),
        ("TT500", 2, Decimal("800.00")),
    ]
    assert draft.credit.credit_left_after_order == Decimal("2200.00")
    # a draft places nothing and reserves nothing
    after_draft = _counts(db)
    assert after_draft[:3] == before[:3] and after_draft[3] == before[3] + 1

    ctx = ctx_for(db, w["rep"])
    placed = call_tool(
        ctx,
        "confirm_order",
        {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
    )
    assert not placed.already_confirmed
    order = placed.order
    assert (order.status, order.total, order.source_channel) == (
        "placed",
        Decimal("7800.00"),
        "test",
    )
    row = db.execute(
        text("SELECT status, total_amount, created_by, order_date FROM orders WHERE id = :i"),
        {"i": order.id},
    ).one()
    assert tuple(row) == ("placed", Decimal("7800.00"), w["rep"].id, TODAY)
    # 28 biscuits: 25 available in MAIN (the default warehouse) first, then 3 from NORTH
    reserved = dict(
        db.execute(text("SELECT warehouse || ':' || product_id, reserved FROM inventory")).all()
    )
    assert reserved[f"MAIN:{w['biscuits'].id}"] == 30
    assert reserved[f"NORTH:{w['biscuits'].id}"] == 3
    assert reserved[f"MAIN:{w['tea'].id}"] == 2

    again = call_tool(
        ctx,
        "confirm_order",
        {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
    )
    assert again.already_confirmed and again.order.id == order.id
    final = _counts(db)
    assert final[0] == before[0] + 1 and final[2] == before[2] + 30


def test_confirmation_token_is_bound_to_its_draft_and_user(db: Session) -> None:
    w = _setup(db)
    first = _draft(db, w, [{"product": "PG100", "quantity": 1}])
    second = _draft(db, w, [{"product": "PG100", "quantity": 2}])
    before = _counts(db)
    rep = ctx_for(db, w["rep"])
    with pytest.raises(Refused, match="not valid"):
        call_tool(
            rep,
            "confirm_order",
            {"draft_id": second.draft_id, "confirmation_token": first.confirmation_token},
        )
    with pytest.raises(Refused, match="not valid"):
        call_tool(rep, "confirm_order", {"draft_id": first.draft_id, "confirmation_token": "guess"})
    # the manager can see the store, but the token was issued to the rep
    with pytest.raises(Refused, match="not valid"):
        call_tool(
            ctx_for(db, w["manager"]),
            "confirm_order",
            {"draft_id": first.draft_id, "confirmation_token": first.confirmation_token},
        )
    assert _counts(db) == before


def test_expired_token_is_refused(db: Session) -> None:
    w = _setup(db)
    draft = _draft(db, w, [{"product": "PG100", "quantity": 1}])
    db.execute(
        text(
            "UPDATE pending_actions SET created_at = now() - interval '1 hour', "
            "expires_at = now() - interval '1 minute' WHERE id = :i"
        ),
        {"i": draft.draft_id},
    )
    before = _counts(db)
    with pytest.raises(Refused, match="expired"):
        call_tool(
            ctx_for(db, w["rep"]),
            "confirm_order",
            {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
        )
    assert _counts(db) == before


def test_expiry_follows_the_setting(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.settings import get_settings

    monkeypatch.setenv("CONFIRMATION_MINUTES", "3")
    get_settings.cache_clear()
    w = _setup(db)
    started = dt.datetime.now(dt.UTC)
    draft = _draft(db, w, [{"product": "PG100", "quantity": 1}])
    assert (
        dt.timedelta(minutes=2) < draft.expires_at - started <= dt.timedelta(minutes=3, seconds=5)
    )


def test_unknown_sku_is_refused_naming_it(db: Session) -> None:
    w = _setup(db)
    before = _counts(db)
    with pytest.raises(Refused) as info:
        _draft(db, w, [{"product": "PG100", "quantity": 1}, {"product": "XQ-999", "quantity": 4}])
    assert "line 2: no product matches 'XQ-999'" in info.value.message
    assert _counts(db) == before


def test_ambiguous_product_asks_which(db: Session) -> None:
    w = _setup(db)
    make_product(db, sku="PG200", name="Parle-G 200g")
    with pytest.raises(Ambiguous) as info:
        _draft(db, w, [{"product": "Parle-G", "quantity": 1}])
    assert {c["code"] for c in info.value.candidates} >= {"PG100", "PG200"}


def test_out_of_stock_is_refused_with_the_shortfall(db: Session) -> None:
    w = _setup(db)
    before = _counts(db)
    with pytest.raises(Refused) as info:
        _draft(db, w, [{"product": "TT500", "quantity": 11}, {"product": "PG100", "quantity": 36}])
    message = info.value.message
    assert "Tata Tea Gold 500g (TT500): 11 asked, 8 available, short by 3" in message
    assert "Parle-G 100g (PG100): 36 asked, 35 available, short by 1" in message
    assert _counts(db) == before


def test_over_credit_limit_is_refused_with_the_amount(db: Session) -> None:
    w = _setup(db)
    store = w["store"]
    make_invoice(
        db,
        store,
        "6000",
        invoice_date=TODAY - dt.timedelta(days=40),
        paid=[(TODAY - dt.timedelta(days=5), "1000")],
    )
    make_order(db, store, TODAY - dt.timedelta(days=1), [(w["tea"], 5)])  # 2000, not invoiced
    before = _counts(db)
    # owes 5000 + 2000 open order; 4 x 250 = 1000 fits exactly (limit 10000 - 7000 = 3000)
    with pytest.raises(Refused) as info:
        _draft(db, w, [{"product": "PG100", "quantity": 14}])  # 3500
    assert "Rs 500.00 over the limit of Rs 10,000.00" in info.value.message
    assert info.value.details["problems"][0]["over_by"] == 500.0
    assert _counts(db) == before
    ok = _draft(db, w, [{"product": "PG100", "quantity": 12}])
    assert ok.credit.credit_left_after_order == Decimal("0.00")


def test_confirm_checks_stock_again(db: Session) -> None:
    w = _setup(db)
    draft = _draft(db, w, [{"product": "TT500", "quantity": 8}])
    db.execute(text("UPDATE inventory SET reserved = 3 WHERE product_id = :p"), {"p": w["tea"].id})
    before = _counts(db)
    with pytest.raises(Refused, match="short by 3"):
        call_tool(
            ctx_for(db, w["rep"]),
            "confirm_order",
            {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
        )
    assert _counts(db) == before


def test_scheme_discount_is_applied(db: Session) -> None:
    w = _setup(db)
    make_promotion(
        db, starts_on=TODAY, ends_on=TODAY, brand="Tata", discount_pct=Decimal("10"), min_quantity=2
    )
    draft = _draft(
        db, w, [{"product": "TT500", "quantity": 2}, {"product": "PG100", "quantity": 1}]
    )
    tea = draft.lines[0]
    assert (tea.discount_pct, tea.amount) == (10.0, Decimal("720.00"))
    assert draft.total == Decimal("970.00")
    placed = call_tool(
        ctx_for(db, w["rep"]),
        "confirm_order",
        {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
    )
    stored = db.execute(
        text("SELECT discount, amount FROM order_lines WHERE order_id = :o ORDER BY line_no"),
        {"o": placed.order.id},
    ).all()
    assert stored[0] == (Decimal("0.1000"), Decimal("720.00"))


def test_cancel_needs_confirmation_and_releases_stock(db: Session) -> None:
    w = _setup(db)
    ctx = ctx_for(db, w["rep"])
    draft = _draft(db, w, [{"product": "PG100", "quantity": 27}])
    order = call_tool(
        ctx,
        "confirm_order",
        {"draft_id": draft.draft_id, "confirmation_token": draft.confirmation_token},
    ).order
    reserved_after_order = _counts(db)[2]
    ask = call_tool(ctx, "cancel_order", {"order": order.id})
    assert ask.status == "confirmation_required" and "Cancel order" in ask.summary
    status = db.execute(text("SELECT status FROM orders WHERE id = :i"), {"i": order.id}).scalar()
    assert status == "placed"
    done = call_tool(
        ctx, "cancel_order", {"order": order.id, "confirmation_token": ask.confirmation_token}
    )
    assert done.status == "cancelled" and not done.already_done
    assert sorted((r.warehouse, r.quantity) for r in done.released) == [("MAIN", 25), ("NORTH", 2)]
    assert _counts(db)[2] == reserved_after_order - 27
    again = call_tool(
        ctx, "cancel_order", {"order": order.id, "confirmation_token": ask.confirmation_token}
    )
    assert again.already_done and _counts(db)[2] == reserved_after_order - 27


def test_cancel_refusals(db: Session) -> None:
    w = _setup(db)
    ctx = ctx_for(db, w["rep"])
    delivered = make_order(
        db, w["store"], TODAY - dt.timedelta(days=9), [(w["tea"], 1)], status="delivered"
    )
    with pytest.raises(Refused, match="delivered"):
        call_tool(ctx, "cancel_order", {"order": delivered.id})
    first = make_order(db, w["store"], TODAY, [(w["tea"], 1)])
    second = make_order(db, w["store"], TODAY, [(w["tea"], 2)])
    ask = call_tool(ctx, "cancel_order", {"order": first.id})
    with pytest.raises(Refused, match="different details"):
        call_tool(
            ctx, "cancel_order", {"order": second.id, "confirmation_token": ask.confirmation_token}
        )
    statuses = (
        db.execute(
            text("SELECT status FROM orders WHERE id IN (:a, :b)"), {"a": first.id, "b": second.id}
        )
        .scalars()
        .all()
    )
    assert statuses == ["placed", "placed"]


def test_log_note_needs_confirmation_bound_to_the_text(db: Session) -> None:
    w = _setup(db)
    ctx = ctx_for(db, w["rep"])
    ask = call_tool(ctx, "log_note", {"store": "Sharma General", "text": "Wants Diwali scheme"})
    assert ask.status == "confirmation_required"
    before = _counts(db)
    with pytest.raises(Refused, match="different details"):
        call_tool(
            ctx,
            "log_note",
            {
                "store": "Sharma General",
                "text": "Something else",
                "confirmation_token": ask.confirmation_token,
            },
        )
    with pytest.raises(Refused, match="for log_note, not cancel_order"):
        order = make_order(db, w["store"], TODAY, [(w["tea"], 1)])
        call_tool(
            ctx, "cancel_order", {"order": order.id, "confirmation_token": ask.confirmation_token}
        )
    assert _counts(db)[4] == before[4]
    saved = call_tool(
        ctx,
        "log_note",
        {
            "store": "Sharma General",
            "text": "Wants Diwali scheme",
            "confirmation_token": ask.confirmation_token,
        },
    )
    row = db.execute(
        text(
            "SELECT store_id, author_id, kind, direction, channel, text FROM communications "
            "WHERE id = :i"
        ),
        {"i": saved.note_id},
    ).one()
    assert tuple(row) == (
        w["store"].id,
        w["rep"].id,
        "note",
        "internal",
        "test",
        "Wants Diwali scheme",
    )
    repeat = call_tool(
        ctx,
        "log_note",
        {
            "store": "Sharma General",
            "text": "Wants Diwali scheme",
            "confirmation_token": ask.confirmation_token,
        },
    )
    assert repeat.already_done and repeat.note_id == saved.note_id
    assert _counts(db)[4] == before[4] + 1


def test_viewers_cannot_write_even_directly(db: Session) -> None:
    from tools.order_flow import draft_order

    w = _setup(db)
    viewer = make_user(db, "viewer", manager=w["manager"])
    before = _counts(db)
    with pytest.raises(Refused, match="read-only"):
        call_tool(ctx_for(db, viewer), "log_note", {"store": w["store"].code, "text": "hi"})
    with pytest.raises(Refused, match="read-only"):
        draft_order(ctx_for(db, viewer), store=w["store"].code, lines=[])
    assert _counts(db) == before
