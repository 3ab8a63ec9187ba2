"""Credit tools checked against SQL written here, on a generated distributor."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import TODAY, World, ctx_for
from tools.registry import call_tool

pytest_plugins = ["tests.factories"]

OPEN_SQL = """
SELECT i.id, i.store_id, i.due_date,
       i.amount - COALESCE((SELECT SUM(p.amount) FROM payments p WHERE p.invoice_id = i.id), 0)
         AS due
FROM invoices i
"""


@pytest.mark.parametrize("index", [0, 3, 7, 11])
def test_outstanding_matches_sql(wdb: Session, world: World, index: int) -> None:
    store = world.stores[index]
    result = call_tool(ctx_for(wdb, world.admin), "outstanding", {"store": store.code})
    rows = wdb.execute(
        text(f"SELECT due_date, due FROM ({OPEN_SQL}) x WHERE store_id = :s AND due > 0"),
        {"s": store.id},
    ).all()
    buckets = dict.fromkeys(
        ["not_due", "days_0_30", "days_31_60", "days_61_90", "days_90_plus"], Decimal("0")
    )
    for due_date, due in rows:
        late = (TODAY - due_date).days
        key = (
            "not_due"
            if late <= 0
            else "days_0_30"
            if late <= 30
            else "days_31_60"
            if late <= 60
            else "days_61_90"
            if late <= 90
            else "days_90_plus"
        )
        buckets[key] += due
    assert result.outstanding == sum((d for _, d in rows), Decimal("0"))
    assert result.overdue == sum((d for day, d in rows if day < TODAY), Decimal("0"))
    assert result.ageing.model_dump() == buckets
    assert result.open_invoices == len(rows)
    totals = wdb.execute(
        text(
            "SELECT (SELECT COALESCE(SUM(amount), 0) FROM invoices WHERE store_id = :s), "
            "(SELECT COALESCE(SUM(amount), 0) FROM payments WHERE store_id = :s), "
            "(SELECT COALESCE(SUM(total_amount), 0) FROM orders o WHERE store_id = :s "
            " AND status = 'placed' AND NOT EXISTS "
            " (SELECT 1 FROM invoices i WHERE i.order_id = o.id))"
        ),
        {"s": store.id},
    ).one()
    assert (result.invoiced_total, result.paid_total) == (totals[0], totals[1])
    assert result.open_orders_not_invoiced == totals[2]
    assert result.available_credit == store.credit_limit - result.outstanding - totals[2]
    assert [i.due_date for i in result.invoices] == sorted(i.due_date for i in result.invoices)


@pytest.mark.parametrize(("min_amount", "min_days"), [(0, 1), (20000, 1), (0, 90), (5000, 45)])
@pytest.mark.parametrize(("who", "limit"), [("rep", 200), ("manager", 200), ("admin", 3)])
def test_overdue_stores_matches_sql(
    wdb: Session, world: World, min_amount: int, min_days: int, who: str, limit: int
) -> None:
    actor = {"rep": world.reps[1], "manager": world.managers[0], "admin": world.admin}[who]
    scope = {
        "rep": "s.rep_id = :u",
        "manager": "(s.rep_id = :u OR s.rep_id IN "
        "(SELECT id FROM users WHERE manager_id = :u AND role = 'rep'))",
        "admin": "true",
    }[who]
    result = call_tool(
        ctx_for(wdb, actor),
        "overdue_stores",
        {"min_amount": min_amount, "min_days": min_days, "limit": limit},
    )
    rows = wdb.execute(
        text(
            f"SELECT x.store_id, SUM(x.due) FROM ({OPEN_SQL}) x JOIN stores s ON s.id = x.store_id "
            f"WHERE {scope} AND x.due > 0 AND :today - x.due_date >= :d "
            "GROUP BY x.store_id HAVING SUM(x.due) >= :m ORDER BY 2 DESC, 1"
        ),
        {"u": actor.id, "today": TODAY, "d": min_days, "m": min_amount},
    ).all()
    assert rows, "the generated data has overdue stores in every scope"
    assert [(s.store.id, s.overdue) for s in result.stores] == [
        (i, Decimal(a)) for i, a in rows[:limit]
    ]
    assert result.total_stores == len(rows)
    assert result.total_overdue == sum((Decimal(a) for _, a in rows), Decimal("0"))
    assert all(row.rep_name for row in result.stores)
    for row in result.stores:
        assert row.oldest_days_overdue >= min_days
        outstanding, oldest, late = wdb.execute(
            text(
                f"SELECT SUM(x.due), MAX(:today - x.due_date),"
                " COUNT(*) FILTER (WHERE :today - x.due_date >= :d)"
                f" FROM ({OPEN_SQL}) x WHERE x.store_id = :s AND x.due > 0"
            ),
            {"s": row.store.id, "today": TODAY, "d": min_days},
        ).one()
        assert (row.outstanding, row.oldest_days_overdue, row.overdue_invoices) == (
            Decimal(outstanding),
            oldest,
            late,
        )
