"""Order tools checked against SQL written here, on a generated distributor."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import TODAY, World, ctx_for, make_order, make_store
from tools.orders import previous_period, resolve_period, same_period_last_year
from tools.registry import call_tool, run_tool

pytest_plugins = ["tests.factories"]

SALES = "o.status IN ('placed', 'delivered')"


def _scope_sql(world: World, who: str) -> tuple[str, dict[str, object]]:
    """Stores visible to a role, written out by hand (not via tools.context)."""
    if who == "admin":
        return "TRUE", {}
    if who == "rep":
        return "s.rep_id = :rep", {"rep": world.reps[0].id}
    return (
        "s.rep_id IN (SELECT id FROM users WHERE manager_id = :mgr) OR s.rep_id = :mgr",
        {"mgr": world.managers[0].id},
    )


def _actor(world: World, who: str):
    return {"admin": world.admin, "rep": world.reps[0], "manager": world.managers[0]}[who]


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("today", "2026-11-25", "2026-11-25"),
        ("this_week", "2026-11-23", "2026-11-25"),
        ("last_week", "2026-11-16", "2026-11-22"),
        ("this_month", "2026-11-01", "2026-11-25"),
        ("last_month", "2026-10-01", "2026-10-31"),
        ("this_quarter", "2026-10-01", "2026-11-25"),
        ("last_quarter", "2026-07-01", "2026-09-30"),
        ("this_year", "2026-01-01", "2026-11-25"),
        ("last_year", "2025-01-01", "2025-12-31"),
        ("last_30_days", "2026-10-27", "2026-11-25"),
        ("Last 7 days", "2026-11-19", "2026-11-25"),
    ],
)
def test_named_periods(name: str, start: str, end: str) -> None:
    period, _ = resolve_period(TODAY, name)
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)


def test_comparison_periods() -> None:
    month, unit = resolve_period(TODAY, "this_month")
    before = previous_period(month, unit)
    assert (before.start, before.end) == (dt.date(2026, 10, 1), dt.date(2026, 10, 25))
    last_q, unit = resolve_period(TODAY, "last_quarter")
    assert previous_period(last_q, unit).end == dt.date(2026, 6, 30)
    days, unit = resolve_period(TODAY, "last_30_days")
    assert previous_period(days, unit).end == dt.date(2026, 10, 26)
    assert same_period_last_year(month).start == dt.date(2025, 11, 1)


def test_bad_period_is_a_clear_error(wdb: Session, world: World) -> None:
    result = run_tool(ctx_for(wdb, world.admin), "sales_summary", {"period": "fortnight"})
    assert (
        not result.ok and result.error and "Unknown period 'fortnight'" in result.error["message"]
    )
    result = run_tool(
        ctx_for(wdb, world.admin),
        "sales_summary",
        {"start": "2026-05-01", "end": "2026-04-01"},
    )
    assert not result.ok and result.error and result.error["error"] == "invalid_period"


GROUP_SQL = {
    "region": ("COALESCE(s.region, '(none)')", ""),
    "city": ("COALESCE(s.city, '(none)')", ""),
    "rep": ("COALESCE(s.rep_id, 0)::text", ""),
    "store": ("s.id::text", ""),
    "product": ("p.id::text", ""),
    "category": ("COALESCE(p.category, '(none)')", ""),
    "brand": ("COALESCE(p.brand, '(none)')", ""),
}


def _expected_groups(
    db: Session, world: World, who: str, group: str, start: dt.date, end: dt.date
) -> dict[str, tuple[Decimal, int]]:
    scope, params = _scope_sql(world, who)
    key, _ = GROUP_SQL[group]
    rows = db.execute(
        text(
            f"SELECT {key} AS k, SUM(l.amount), SUM(l.quantity) "
            "FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "JOIN stores s ON s.id = o.store_id JOIN products p ON p.id = l.product_id "
            f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND ({scope}) GROUP BY 1"
        ),
        {"a": start, "b": end, **params},
    ).all()
    return {str(k): (Decimal(a), int(q)) for k, a, q in rows}


@pytest.mark.parametrize("who", ["admin", "manager", "rep"])
@pytest.mark.parametrize("group", list(GROUP_SQL))
def test_sales_summary_matches_sql(wdb: Session, world: World, who: str, group: str) -> None:
    ctx = ctx_for(wdb, _actor(world, who))
    result = call_tool(
        ctx,
        "sales_summary",
        {
            "period": "last_6_months",
            "group_by": group,
            "compare_to": "same_period_last_year",
            "limit": 200,
        },
    )
    current = _expected_groups(wdb, world, who, group, result.period.start, result.period.end)
    before_period = result.compare_period
    before = _expected_groups(wdb, world, who, group, before_period.start, before_period.end)
    got = {r.key: r for r in result.rows}
    assert {k for k, r in got.items() if r.amount > 0} == set(current)
    for key, (amount, quantity) in current.items():
        assert got[key].amount == amount and got[key].quantity == quantity
    for key, (amount, _) in before.items():
        assert got[key].previous_amount == amount
    assert result.totals.amount == sum((a for a, _ in current.values()), Decimal("0"))
    assert result.previous_totals.amount == sum((a for a, _ in before.values()), Decimal("0"))
    scope, params = _scope_sql(world, who)
    orders = wdb.execute(
        text(
            f"SELECT COUNT(*) FROM orders o JOIN stores s ON s.id = o.store_id "
            f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND ({scope})"
        ),
        {"a": result.period.start, "b": result.period.end, **params},
    ).scalar()
    assert result.totals.orders == orders
    amounts = [r.amount for r in result.rows]
    assert amounts == sorted(amounts, reverse=True)


@pytest.mark.parametrize(
    "period", ["this_month", "this_quarter", "this_year", "last_30_days", "last_month", "today"]
)
@pytest.mark.parametrize("group", ["region", "product"])
def test_sales_summary_periods_across_rollups(
    wdb: Session, world: World, period: str, group: str
) -> None:
    """Month-to-date, whole months, partial months and today: each combination of the daily,
    monthly and live sources adds up to the SQL over the order tables."""
    ctx = ctx_for(wdb, _actor(world, "manager"))
    result = call_tool(ctx, "sales_summary", {"period": period, "group_by": group, "limit": 200})
    expected = _expected_groups(
        wdb, world, "manager", group, result.period.start, result.period.end
    )
    got = {r.key: (r.amount, r.quantity) for r in result.rows if r.amount > 0}
    assert got == expected
    assert result.totals.amount == sum((a for a, _ in expected.values()), Decimal("0"))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-10-03", "2026-10-30"),  # most of one month: October less its first and last days
        ("2026-09-20", "2026-11-24"),  # days of September, all October, November to date
        ("2026-08-02", "2026-10-28"),  # August and October each less a few days
        ("2025-11-01", "2025-11-25"),  # a month less its last days, a year ago
        ("2026-06-16", "2026-06-16"),  # one day
        ("2026-07-05", "2026-11-25"),  # through today (live)
    ],
)
@pytest.mark.parametrize("who", ["admin", "manager", "rep"])
@pytest.mark.parametrize(
    "reading",
    ["group-totals", "daily-totals", "months-and-days"],
)
def test_sales_over_periods_cut_inside_months(
    wdb: Session,
    world: World,
    who: str,
    start: str,
    end: str,
    reading: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Periods cut inside months may be read as whole months less the days outside them, as
    the daily running totals at their last day less the day before, or (sales by region, city
    or rep, and totals) as the running totals per rep, region and city: every figure (amounts,
    units, orders, ordering stores, groups) is still what the order tables say."""
    import tools.orders
    from tools.orders import _group_cume_days, _rolled_spans

    daily_totals = reading != "months-and-days"
    monkeypatch.setattr(tools.orders, "USE_DAILY_CUME", daily_totals)
    monkeypatch.setattr(tools.orders, "USE_GROUP_CUME", reading == "group-totals")
    ctx = ctx_for(wdb, _actor(world, who))
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    scope, params = _scope_sql(world, who)
    totals = wdb.execute(
        text(
            "SELECT COALESCE(SUM(l.amount), 0), COALESCE(SUM(l.quantity), 0), "
            "COUNT(DISTINCT o.id), COUNT(DISTINCT o.store_id) "
            "FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "JOIN stores s ON s.id = o.store_id "
            f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND ({scope})"
        ),
        {"a": a, "b": b, **params},
    ).one()
    for group in ("store", "product", "region", "city", "rep"):
        result = call_tool(
            ctx, "sales_summary", {"start": start, "end": end, "group_by": group, "limit": 200}
        )
        assert (result.period.start, result.period.end) == (a, b)
        expected = _expected_groups(wdb, world, who, group, a, b)
        got = {r.key: (r.amount, r.quantity) for r in result.rows}
        assert got == expected, group
        assert result.groups == len(expected)
        assert (
            result.totals.amount,
            result.totals.quantity,
            result.totals.orders,
            result.totals.stores,
        ) == (Decimal(totals[0]), int(totals[1]), int(totals[2]), int(totals[3])), group
    top = call_tool(ctx, "top_products", {"start": start, "end": end, "limit": 3})
    assert top.total_amount == Decimal(totals[0])
    top = call_tool(ctx, "top_products", {"start": start, "end": end, "limit": 200})
    assert {str(p.product.id): (p.amount, p.quantity) for p in top.products} == (
        _expected_groups(wdb, world, who, "product", a, b)
    )
    grouped = _group_cume_days(ctx_for(wdb, _actor(world, who)), result.period)
    # Every period here lies inside the running totals (today included: nothing changed since
    # the refresh).
    assert (grouped is not None) == (reading == "group-totals")
    spans = _rolled_spans(ctx_for(wdb, _actor(world, who)), a, b)
    if daily_totals and (b - a).days > 40:
        # Every long period here lies inside the daily running totals: two rows per store.
        assert [(s.cume, s.monthly) for s in spans] == [(True, False), (True, False)]
    elif not daily_totals and (b - a).days > 20:
        # The first four periods really take days away from whole months ...
        assert any(span.monthly for span in spans)
    if not daily_totals and (b - a).days > 100:
        # ... and July to November is the running totals at the end of October less June's.
        assert any(span.cume and span.monthly for span in spans)


def test_rolled_spans_take_away_the_days_outside_a_mostly_covered_month(
    wdb: Session, world: World
) -> None:
    from tools.orders import _rolled_spans

    ctx = ctx_for(wdb, world.admin)
    spans = _rolled_spans(ctx, dt.date(2026, 10, 3), dt.date(2026, 10, 30))
    assert [(s.start, s.end, s.monthly, s.sign) for s in spans] == [
        (dt.date(2026, 10, 1), dt.date(2026, 10, 31), True, 1),
        (dt.date(2026, 10, 1), dt.date(2026, 10, 2), False, -1),
        (dt.date(2026, 10, 31), dt.date(2026, 10, 31), False, -1),
    ]
    # Fewer days taken in than left out: the days themselves.
    spans = _rolled_spans(ctx, dt.date(2026, 10, 3), dt.date(2026, 10, 9))
    assert [(s.start, s.end, s.monthly, s.sign) for s in spans] == [
        (dt.date(2026, 10, 3), dt.date(2026, 10, 9), False, 1)
    ]


def test_rolled_spans_read_long_runs_of_months_as_running_totals(
    wdb: Session, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three or more whole months are the running total at the last less the one before the
    first; the newest rollup day (today here), which the monthly rows do not hold, is a day of
    the daily rollup."""
    import tools.orders
    from tools.orders import _rolled_spans

    monkeypatch.setattr(tools.orders, "USE_DAILY_CUME", False)
    ctx = ctx_for(wdb, world.admin)
    assert ctx.session.execute(text("SELECT max(day) FROM sales_store_daily")).scalar() == TODAY

    def spans(a: dt.date, b: dt.date) -> list[tuple[dt.date, dt.date, bool, bool, int]]:
        return [(s.start, s.end, s.monthly, s.cume, s.sign) for s in _rolled_spans(ctx, a, b)]

    assert spans(dt.date(2026, 6, 1), dt.date(2026, 10, 31)) == [
        (dt.date(2026, 10, 1), dt.date(2026, 10, 1), True, True, 1),
        (dt.date(2026, 5, 1), dt.date(2026, 5, 1), True, True, -1),
    ]
    # Two months stay two monthly rows.
    assert spans(dt.date(2026, 9, 1), dt.date(2026, 10, 31)) == [
        (dt.date(2026, 9, 1), dt.date(2026, 10, 31), True, False, 1)
    ]
    # Up to today: the months to yesterday, and today from the daily rollup.
    assert spans(dt.date(2026, 8, 1), TODAY) == [
        (TODAY, TODAY, False, False, 1),
        (dt.date(2026, 11, 1), dt.date(2026, 11, 1), True, True, 1),
        (dt.date(2026, 7, 1), dt.date(2026, 7, 1), True, True, -1),
    ]
    # An order changed on a rolled-up day: from that day on everything is read live.
    store = world.stores_of(world.reps[0])[0]
    make_order(wdb, store, dt.date(2026, 10, 20), [(world.products[0], 1)])
    ctx = ctx_for(wdb, world.admin)
    assert spans(dt.date(2026, 6, 1), TODAY) == [
        (dt.date(2026, 10, 1), dt.date(2026, 10, 19), False, False, 1),
        (dt.date(2026, 9, 1), dt.date(2026, 9, 1), True, True, 1),
        (dt.date(2026, 5, 1), dt.date(2026, 5, 1), True, True, -1),
    ]


def test_rolled_spans_inside_the_daily_running_totals(wdb: Session, world: World) -> None:
    """A long stretch since January of last year is the daily running total at its last day
    less the one at the day before it; earlier periods, and short ones a month's rows answer
    more cheaply, are read as before."""
    from tools.orders import _rolled_spans

    ctx = ctx_for(wdb, world.admin)
    first = ctx.session.execute(text("SELECT min(day) FROM sales_store_cume_daily")).scalar()
    assert first is not None and first <= dt.date(2025, 8, 31)

    def spans(a: dt.date, b: dt.date) -> list[tuple[dt.date, bool, bool, int]]:
        return [(s.start, s.monthly, s.cume, s.sign) for s in _rolled_spans(ctx, a, b)]

    assert spans(dt.date(2026, 6, 10), dt.date(2026, 10, 31)) == [
        (dt.date(2026, 10, 31), False, True, 1),
        (dt.date(2026, 6, 9), False, True, -1),
    ]
    # Whole months only: as few rows either way, the monthly running totals.
    assert spans(dt.date(2026, 6, 1), dt.date(2026, 10, 31)) == [
        (dt.date(2026, 10, 1), True, True, 1),
        (dt.date(2026, 5, 1), True, True, -1),
    ]
    assert spans(dt.date(2026, 8, 12), TODAY) == [
        (TODAY, False, True, 1),
        (dt.date(2026, 8, 11), False, True, -1),
    ]
    # From the first day of the totals: one row per store, and the figures still match.
    october = dt.date(2026, 10, 31)
    assert spans(first, october) == [(october, False, True, 1)]
    for group in ("region", "store", "product"):
        result = call_tool(
            ctx,
            "sales_summary",
            {"start": first.isoformat(), "end": october.isoformat(), "group_by": group},
        )
        expected = _expected_groups(wdb, world, "admin", group, first, october)
        assert result.totals.amount == sum((a for a, _ in expected.values()), Decimal("0"))
        assert result.groups == len(expected)
    # One whole month is its monthly row; before the daily totals begin, the monthly ones.
    assert spans(dt.date(2026, 10, 1), dt.date(2026, 10, 31)) == [
        (dt.date(2026, 10, 1), True, False, 1)
    ]
    assert all(s.monthly for s in _rolled_spans(ctx, dt.date(2025, 1, 1), dt.date(2025, 6, 30)))
    # An order changed on a rolled-up day: the totals stop the day before it.
    store = world.stores_of(world.reps[0])[0]
    make_order(wdb, store, dt.date(2026, 10, 20), [(world.products[0], 1)])
    ctx = ctx_for(wdb, world.admin)
    assert spans(dt.date(2026, 6, 10), TODAY) == [
        (dt.date(2026, 10, 19), False, True, 1),
        (dt.date(2026, 6, 9), False, True, -1),
    ]


def test_sales_summary_counts_orders_placed_after_the_rollup(wdb: Session, world: World) -> None:
    ctx = ctx_for(wdb, world.reps[0])
    before = call_tool(ctx, "sales_summary", {"period": "today", "group_by": "store"})
    store = world.stores_of(world.reps[0])[0]
    make_order(wdb, store, TODAY, [(world.products[0], 3, Decimal("10.50"))])
    make_order(wdb, store, TODAY, [(world.products[1], 1, Decimal("99.00"))], status="cancelled")
    after = call_tool(ctx, "sales_summary", {"period": "today", "group_by": "store"})
    assert after.totals.amount - before.totals.amount == Decimal("31.50")
    assert after.totals.orders - before.totals.orders == 1
    # stores outside the rep's book never count
    other = world.stores_of(world.reps[1])[0]
    make_order(wdb, other, TODAY, [(world.products[0], 5)])
    again = call_tool(ctx, "sales_summary", {"period": "today", "group_by": "store"})
    assert again.totals == after.totals


def test_top_products_matches_sql(wdb: Session, world: World) -> None:
    ctx = ctx_for(wdb, world.managers[1])
    result = call_tool(ctx, "top_products", {"region": "North", "period": "last_year", "limit": 5})
    rows = wdb.execute(
        text(
            "SELECT p.sku, SUM(l.amount) AS amount, SUM(l.quantity), COUNT(DISTINCT o.id) "
            "FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "JOIN stores s ON s.id = o.store_id JOIN products p ON p.id = l.product_id "
            f"WHERE {SALES} AND o.order_date BETWEEN '2025-01-01' AND '2025-12-31' "
            "AND s.region = 'North' "
            "AND s.rep_id IN (SELECT id FROM users WHERE manager_id = :m) "
            "GROUP BY p.id, p.sku ORDER BY amount DESC, p.id LIMIT 5"
        ),
        {"m": world.managers[1].id},
    ).all()
    assert [(p.product.sku, p.amount, p.quantity, p.orders) for p in result.products] == [
        (sku, Decimal(a), int(q), int(n)) for sku, a, q, n in rows
    ]


def _product_sales_sql(db: Session, rep_id: int, start: str, end: str) -> dict[str, Decimal]:
    rows = db.execute(
        text(
            "SELECT p.sku, SUM(l.amount) FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "JOIN stores s ON s.id = o.store_id JOIN products p ON p.id = l.product_id "
            f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND s.rep_id = :r GROUP BY p.sku"
        ),
        {"a": start, "b": end, "r": rep_id},
    ).all()
    return {sku: Decimal(amount) for sku, amount in rows}


def test_product_sales_follow_a_store_moved_to_another_rep(wdb: Session, world: World) -> None:
    """Whole months of product sales come from a rollup keyed by rep; when a store changes rep
    after the rollup was built, both reps' figures still follow the store's current rep."""
    old_rep, new_rep = world.reps[0], world.reps[1]

    def by_product(rep: object) -> dict[str, Decimal]:
        result = call_tool(
            ctx_for(wdb, rep),
            "sales_summary",
            {"period": "last_year", "group_by": "product", "limit": 200},
        )
        return {r.code: r.amount for r in result.rows if r.amount > 0}

    for rep in (old_rep, new_rep):
        assert by_product(rep) == _product_sales_sql(wdb, rep.id, "2025-01-01", "2025-12-31")
    moved = world.stores_of(old_rep)[0]
    wdb.execute(
        text("UPDATE stores SET rep_id = :r WHERE id = :s"), {"r": new_rep.id, "s": moved.id}
    )
    wdb.expire_all()
    for rep in (old_rep, new_rep):
        expected = _product_sales_sql(wdb, rep.id, "2025-01-01", "2025-12-31")
        assert by_product(rep) == expected
        top = call_tool(ctx_for(wdb, rep), "top_products", {"period": "last_year", "limit": 3})
        assert [p.amount for p in top.products] == sorted(expected.values(), reverse=True)[:3]
        # Store-level figures too (the per-store rollups are read by rep when current).
        by_region = call_tool(
            ctx_for(wdb, rep), "sales_summary", {"period": "last_year", "group_by": "region"}
        )
        assert by_region.totals.amount == sum(expected.values(), Decimal("0"))


def test_a_new_store_keeps_the_rep_rollups_in_use(wdb: Session, world: World) -> None:
    """A store added after the refresh has nothing in the rollups, so the rep-keyed rollups
    stay in use, and its orders (read live) count for its rep at once; reassigning a store
    that is in the rollups stops their use until the next refresh."""
    from tools.orders import _rep_rollup_current

    rep = world.reps[0]
    assert _rep_rollup_current(ctx_for(wdb, rep))
    before = call_tool(ctx_for(wdb, rep), "sales_summary", {"period": "today"}).totals
    new = make_store(wdb, rep, name="Naya Kirana Kendra")
    make_order(wdb, new, TODAY, [(world.products[0], 2, Decimal("40.00"))])
    assert _rep_rollup_current(ctx_for(wdb, rep))
    after = call_tool(ctx_for(wdb, rep), "sales_summary", {"period": "today"}).totals
    assert after.amount - before.amount == Decimal("80.00") and after.stores == before.stores + 1
    moved = world.stores_of(world.reps[1])[0]
    wdb.execute(text("UPDATE stores SET rep_id = :r WHERE id = :s"), {"r": rep.id, "s": moved.id})
    assert not _rep_rollup_current(ctx_for(wdb, rep))


def _periods(period: str, compare_to: str | None) -> tuple[Any, Any]:
    """A named period as of TODAY and the one it is compared with (None: no comparison)."""
    current, unit = resolve_period(TODAY, period)
    if compare_to is None:
        return current, None
    if compare_to == "previous_period":
        return current, previous_period(current, unit)
    return current, same_period_last_year(current)


@pytest.mark.parametrize("who", ["admin", "manager", "rep"])
@pytest.mark.parametrize("compare_to", [None, "previous_period", "same_period_last_year"])
@pytest.mark.parametrize("limit", [1, 3, 5])
def test_stores_ranked_from_the_running_totals_as_from_every_store(
    wdb: Session,
    world: World,
    who: str,
    compare_to: str | None,
    limit: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The biggest stores of a period are ranked from each store's figures in it and only the
    listed ones are looked up in the earlier period: the same rows (order, ties, previous
    amounts), group count and totals as the comparison of every store in both periods."""
    import tools.orders
    from tools.orders import _ranked_stores

    args: dict[str, Any] = {"period": "last_90_days", "group_by": "store", "limit": limit}
    if compare_to:
        args["compare_to"] = compare_to
    fast = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    current, before = _periods("last_90_days", compare_to)
    expected = _expected_groups(wdb, world, who, "store", current.start, current.end)
    # Read so unless fewer stores ordered than are listed (then stores that sold only before
    # fill the list, and every store is compared).
    ranked = _ranked_stores(ctx_for(wdb, _actor(world, who)), current, before, limit)
    assert (ranked is not None) == (before is None or len(expected) >= limit)
    monkeypatch.setattr(tools.orders, "USE_GROUP_CUME", False)
    full = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    assert fast.model_dump() == full.model_dump()
    assert len([r for r in fast.rows if r.amount > 0]) == min(limit, len(expected))
    assert {r.key: r.amount for r in fast.rows if r.amount > 0}.items() <= {
        k: a for k, (a, _) in expected.items()
    }.items()


@pytest.mark.parametrize("who", ["admin", "manager", "rep"])
@pytest.mark.parametrize("group", ["product", "category", "brand"])
@pytest.mark.parametrize("compare_to", ["previous_period", "same_period_last_year"])
@pytest.mark.parametrize("period", ["last_90_days", "this_month", "this_year"])
def test_product_comparisons_in_one_read_as_period_by_period(
    wdb: Session,
    world: World,
    who: str,
    group: str,
    compare_to: str,
    period: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both periods of a comparison by product, category or brand are read from the daily
    running totals at once: the same summary as each period read on its own and joined."""
    import tools.orders
    from tools.orders import _products_in_both_periods

    args = {"period": period, "group_by": group, "compare_to": compare_to, "limit": 7}
    one_read = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    used = _products_in_both_periods(
        ctx_for(wdb, _actor(world, who)), one_read.period, one_read.compare_period, group
    )
    # Ninety days are read so (both periods lie inside the running totals, which start in
    # June 2025 here); a month to date per rep is fewer rows from the daily rollups, and last
    # year starts before the running totals.
    assert used is not None or period != "last_90_days"
    monkeypatch.setattr(tools.orders, "USE_DAILY_CUME", False)
    joined = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    assert one_read.model_dump() == joined.model_dump()
    assert one_read.rows and one_read.previous_totals is not None


@pytest.mark.parametrize("who", ["admin", "manager", "rep"])
@pytest.mark.parametrize("group", ["product", "category", "brand", "region", "city", "rep"])
@pytest.mark.parametrize("compare_to", [None, "previous_period", "same_period_last_year"])
@pytest.mark.parametrize("limit", [1, 3, 200])
@pytest.mark.parametrize("period", ["last_90_days", "this_month"])
def test_groups_ranked_by_one_written_statement_as_by_built_ones(
    wdb: Session,
    world: World,
    who: str,
    group: str,
    compare_to: str | None,
    limit: int,
    period: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sales by region, city, rep, product, category or brand over periods inside the daily
    running totals are ranked by one statement written once: the same rows (order, ties,
    previous amounts), group count and totals as the statements built for each call, and the
    groups the order tables give."""
    import tools.orders
    from tools.orders import _ranked_from_running_totals

    args: dict[str, Any] = {"period": period, "group_by": group, "limit": limit}
    if compare_to:
        args["compare_to"] = compare_to
    current, before = _periods(period, compare_to)
    written = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    # These periods, those before them and the same days a year ago lie inside the running
    # totals here (they start in June 2025), a month to date as well as ninety days.
    used = _ranked_from_running_totals(
        ctx_for(wdb, _actor(world, who)), current, before, group, limit
    )
    assert used is not None
    monkeypatch.setattr(tools.orders, "USE_RANKING_SQL", False)
    built = call_tool(ctx_for(wdb, _actor(world, who)), "sales_summary", args)
    assert written.model_dump() == built.model_dump()
    expected = _expected_groups(wdb, world, who, group, current.start, current.end)
    assert written.groups == len(expected)
    assert {r.key: (r.amount, r.quantity) for r in written.rows if r.amount > 0}.items() <= (
        expected.items()
    )
    assert len([r for r in written.rows if r.amount > 0]) == min(limit, len(expected))


def test_groups_ranked_by_one_written_statement_when_nothing_sold(
    wdb: Session, world: World
) -> None:
    """A rep with no stores yet: their sales over a period inside the running totals are read
    by the one written statement, which then lists nothing and gives zero totals."""
    from tests.factories import make_user
    from tools.orders import _ranked_from_running_totals

    newcomer = make_user(wdb, "rep", manager=world.managers[0])
    current, unit = resolve_period(TODAY, "last_90_days")
    before = previous_period(current, unit)
    for group in ("product", "brand", "region", "rep"):
        ctx = ctx_for(wdb, newcomer)
        assert _ranked_from_running_totals(ctx, current, before, group, 5) is not None
        args = {"period": "last_90_days", "group_by": group, "compare_to": "previous_period"}
        result = call_tool(ctx_for(wdb, newcomer), "sales_summary", args)
        assert result.rows == [] and result.groups == 0
        assert result.previous_totals is not None
        for totals in (result.totals, result.previous_totals):
            assert (totals.amount, totals.quantity, totals.orders, totals.stores) == (0, 0, 0, 0)


def test_a_managers_products_follow_a_rep_moved_to_another_team(wdb: Session, world: World) -> None:
    """A manager's product figures come from running totals per team; a rep moved to another
    manager after they were built counts in the new team at once."""
    from tools.orders import _team_lead

    a, b = dt.date(2026, 8, 28), TODAY
    args = {"start": a.isoformat(), "end": b.isoformat(), "group_by": "product", "limit": 200}

    def check(manager: Any) -> None:
        result = call_tool(ctx_for(wdb, manager), "sales_summary", args)
        rows = wdb.execute(
            text(
                "SELECT p.id::text, SUM(l.amount) FROM orders o "
                "JOIN order_lines l ON l.order_id = o.id JOIN stores s ON s.id = o.store_id "
                "JOIN products p ON p.id = l.product_id "
                f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND (s.rep_id = :m OR "
                "s.rep_id IN (SELECT id FROM users WHERE manager_id = :m AND role = 'rep')) "
                "GROUP BY 1"
            ),
            {"a": a, "b": b, "m": manager.id},
        ).all()
        assert {r.key: r.amount for r in result.rows if r.amount} == {k: v for k, v in rows}

    first, second = world.managers
    assert _team_lead(ctx_for(wdb, first)) == first.id
    for manager in (first, second):
        check(manager)
    moved = next(r for r in world.reps if r.manager_id == first.id)
    wdb.execute(
        text("UPDATE users SET manager_id = :m WHERE id = :r"), {"m": second.id, "r": moved.id}
    )
    wdb.expire_all()
    assert _team_lead(ctx_for(wdb, first)) is None
    for manager in (first, second):
        check(manager)


def test_sales_by_city_follow_a_store_moved_to_another_city(wdb: Session, world: World) -> None:
    """Sales by city (and totals) come from running totals keyed by the stores' cities at the
    refresh; a store moved to another city since counts in its new city at once."""
    from tools.orders import _group_cume_days

    a, b = dt.date(2026, 8, 3), dt.date(2026, 10, 29)
    args = {"start": a.isoformat(), "end": b.isoformat(), "group_by": "city", "limit": 200}

    def check() -> Any:
        result = call_tool(ctx_for(wdb, world.admin), "sales_summary", args)
        expected = _expected_groups(wdb, world, "admin", "city", a, b)
        assert {r.key: (r.amount, r.quantity) for r in result.rows} == expected
        assert result.totals.amount == sum((v for v, _ in expected.values()), Decimal("0"))
        return result

    assert _group_cume_days(ctx_for(wdb, world.admin), check().period) is not None
    moved = wdb.execute(
        text(
            f"SELECT o.store_id FROM orders o WHERE {SALES} AND o.order_date BETWEEN :a AND :b "
            "ORDER BY o.id LIMIT 1"
        ),
        {"a": a, "b": b},
    ).scalar_one()
    wdb.execute(text("UPDATE stores SET city = 'Nashik' WHERE id = :s"), {"s": moved})
    wdb.expire_all()
    after = check()
    assert "Nashik" in {r.key for r in after.rows}
    assert _group_cume_days(ctx_for(wdb, world.admin), after.period) is None


def test_region_top_products_follow_a_store_moved_to_another_region(
    wdb: Session, world: World
) -> None:
    """A region's top products come from the rep rollups keyed by region; a store moved to
    another region after they were built counts in its new region at once, over whole months
    and over days cut inside months."""
    manager = world.managers[1]

    def expected(region: str, start: str, end: str) -> dict[str, Decimal]:
        rows = wdb.execute(
            text(
                "SELECT p.sku, SUM(l.amount) FROM orders o "
                "JOIN order_lines l ON l.order_id = o.id "
                "JOIN stores s ON s.id = o.store_id JOIN products p ON p.id = l.product_id "
                f"WHERE {SALES} AND o.order_date BETWEEN :a AND :b AND lower(s.region) = :g "
                "AND s.rep_id IN (SELECT id FROM users WHERE manager_id = :m) GROUP BY p.sku"
            ),
            {"a": start, "b": end, "g": region.lower(), "m": manager.id},
        ).all()
        return {sku: Decimal(amount) for sku, amount in rows}

    def got(region: str, start: str, end: str) -> dict[str, Decimal]:
        result = call_tool(
            ctx_for(wdb, manager),
            "top_products",
            {"region": region, "start": start, "end": end, "limit": 200},
        )
        return {p.product.sku: p.amount for p in result.products}

    periods = [("2025-01-01", "2025-12-31"), ("2026-08-03", "2026-10-29")]
    for start, end in periods:
        for region in ("North", "south"):
            assert got(region, start, end) == expected(region, start, end)
    moved = next(
        s
        for s in world.stores
        if s.region == "North"
        and s.rep_id in {r.id for r in world.reps if r.manager_id == manager.id}
    )
    wdb.execute(text("UPDATE stores SET region = 'South' WHERE id = :s"), {"s": moved.id})
    wdb.expire_all()
    for start, end in periods:
        for region in ("North", "South"):
            assert got(region, start, end) == expected(region, start, end)


@pytest.mark.parametrize("who", ["rep", "admin"])
def test_top_products_for_one_store(wdb: Session, world: World, who: str) -> None:
    """One store's products, from the rollups and from orders placed after them, as the order
    tables have them; another rep's store is not found."""
    rep = world.reps[0]
    store = world.stores_of(rep)[0]
    actor = rep if who == "rep" else world.admin
    # Days the rollups hold and a day after them (an order placed now, a cancelled one).
    make_order(wdb, store, TODAY, [(world.products[0], 3, Decimal("10.50"))])
    make_order(wdb, store, TODAY, [(world.products[1], 1, Decimal("99.00"))], status="cancelled")
    for period in ("last_90_days", "today", "last_year"):
        result = call_tool(
            ctx_for(wdb, actor), "top_products", {"store": store.code, "period": period}
        )
        start, end = result.period.start, result.period.end
        rows = wdb.execute(
            text(
                "SELECT p.sku, SUM(l.amount) AS amount, SUM(l.quantity), COUNT(DISTINCT o.id) "
                "FROM orders o JOIN order_lines l ON l.order_id = o.id "
                "JOIN products p ON p.id = l.product_id "
                f"WHERE {SALES} AND o.store_id = :s AND o.order_date BETWEEN :a AND :b "
                "GROUP BY p.id, p.sku ORDER BY amount DESC, p.id LIMIT 10"
            ),
            {"s": store.id, "a": start, "b": end},
        ).all()
        total = wdb.execute(
            text(
                "SELECT COALESCE(SUM(l.amount), 0) "
                "FROM orders o JOIN order_lines l ON l.order_id = o.id "
                f"WHERE {SALES} AND o.store_id = :s AND o.order_date BETWEEN :a AND :b"
            ),
            {"s": store.id, "a": start, "b": end},
        ).scalar()
        assert result.store.id == store.id and result.total_amount == Decimal(total)
        assert [(p.product.sku, p.amount, p.quantity, p.orders) for p in result.products] == [
            (sku, Decimal(a), int(q), int(n)) for sku, a, q, n in rows
        ]
        assert rows, period
    other = world.stores_of(world.reps[1])[0]
    outcome = run_tool(ctx_for(wdb, rep), "top_products", {"store": other.code})
    assert not outcome.ok and outcome.error and outcome.error["error"] == "not_found"


def test_recent_orders_match_sql(wdb: Session, world: World) -> None:
    store = world.stores[2]
    result = call_tool(
        ctx_for(wdb, world.admin), "recent_orders", {"store": store.name, "limit": 3}
    )
    rows = wdb.execute(
        text(
            "SELECT id, order_date, status, total_amount FROM orders WHERE store_id = :s "
            "ORDER BY order_date DESC, id DESC LIMIT 3"
        ),
        {"s": store.id},
    ).all()
    assert [(o.id, o.order_date, o.status, o.total) for o in result.orders] == [
        (i, d, s, Decimal(t)) for i, d, s, t in rows
    ]
    count = wdb.execute(text("SELECT count(*) FROM orders WHERE store_id = :s"), {"s": store.id})
    assert result.total_orders == count.scalar()
    first = result.orders[0]
    line_sum = wdb.execute(
        text("SELECT SUM(amount), SUM(quantity) FROM order_lines WHERE order_id = :o"),
        {"o": first.id},
    ).one()
    assert sum(line.amount for line in first.lines) == line_sum[0]
    assert first.units == line_sum[1]


def test_order_details_by_id_and_external_id(wdb: Session, world: World) -> None:
    store = world.stores_of(world.reps[0])[0]
    order = make_order(wdb, store, TODAY, [(world.products[3], 2)], external_id="ERP-991")
    ctx = ctx_for(wdb, world.reps[0])
    by_ext = call_tool(ctx, "order_details", {"order": "ERP-991"})
    by_id = call_tool(ctx, "order_details", {"order": order.id})
    assert by_ext.id == by_id.id == order.id
    assert by_id.rep_name == world.reps[0].name
    assert by_id.total == world.products[3].price * 2
    delivered = next(o for o in world.orders if o.status == "delivered")
    details = call_tool(ctx_for(wdb, world.admin), "order_details", {"order": delivered.id})
    invoice = wdb.execute(
        text(
            "SELECT i.number, i.amount - COALESCE((SELECT SUM(amount) FROM payments p "
            "WHERE p.invoice_id = i.id), 0) FROM invoices i WHERE i.order_id = :o"
        ),
        {"o": delivered.id},
    ).one()
    assert details.invoice is not None
    assert (details.invoice.number, details.invoice.due) == (invoice[0], Decimal(invoice[1]))


@pytest.mark.parametrize("days", [30, 90, 180])
def test_stores_not_ordered_since_matches_sql(wdb: Session, world: World, days: int) -> None:
    ctx = ctx_for(wdb, world.managers[0])
    result = call_tool(ctx, "stores_not_ordered_since", {"days": days, "limit": 200})
    rows = wdb.execute(
        text(
            "SELECT s.id, MAX(o.order_date) FROM stores s "
            f"LEFT JOIN orders o ON o.store_id = s.id AND {SALES} "
            "WHERE s.rep_id IN (SELECT id FROM users WHERE manager_id = :m) "
            "GROUP BY s.id HAVING MAX(o.order_date) IS NULL OR MAX(o.order_date) <= :t"
        ),
        {"m": world.managers[0].id, "t": TODAY - dt.timedelta(days=days)},
    ).all()
    expected = {sid: last for sid, last in rows}
    assert {r.store.id: r.last_order_date for r in result.stores} == expected
    assert result.total == len(expected)
    assert result.never_ordered == sum(1 for v in expected.values() if v is None)
    for row in result.stores:
        if row.last_order_date:
            assert row.days_since_last_order == (TODAY - row.last_order_date).days >= days
    silent = [r.days_since_last_order for r in result.stores if r.days_since_last_order]
    assert silent == sorted(silent, reverse=True)


def test_sales_follow_a_cancellation_on_a_rolled_up_day(wdb: Session, world: World) -> None:
    """An order cancelled after the rollups were refreshed leaves the sales figures at once,
    and a back-dated order joins them, before any refresh; a refresh then clears the log."""
    rep = world.reps[0]
    ctx = ctx_for(wdb, rep)
    args = {"period": "last_year", "group_by": "product", "limit": 200}
    expected = _product_sales_sql(wdb, rep.id, "2025-01-01", "2025-12-31")
    assert {r.code: r.amount for r in call_tool(ctx, "sales_summary", args).rows} == expected
    order_id, day = wdb.execute(
        text(
            "SELECT o.id, o.order_date FROM orders o JOIN stores s ON s.id = o.store_id "
            "WHERE s.rep_id = :r AND o.status IN ('placed', 'delivered') "
            "AND o.order_date BETWEEN '2025-01-01' AND '2025-12-31' ORDER BY o.id LIMIT 1"
        ),
        {"r": rep.id},
    ).one()
    wdb.execute(text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": order_id})
    store = world.stores_of(rep)[0]
    make_order(wdb, store, dt.date(2025, 6, 10), [(world.products[0], 2, Decimal("40.00"))])
    after = _product_sales_sql(wdb, rep.id, "2025-01-01", "2025-12-31")
    assert after != expected
    for tool_args in (args, {**args, "group_by": "store"}):
        result = call_tool(ctx_for(wdb, rep), "sales_summary", tool_args)
        assert result.totals.amount == sum(after.values(), Decimal("0"))
    got = call_tool(ctx_for(wdb, rep), "sales_summary", args)
    assert {r.code: r.amount for r in got.rows if r.amount > 0} == after
    top = call_tool(ctx_for(wdb, rep), "top_products", {"period": "last_year", "limit": 3})
    assert [p.amount for p in top.products] == sorted(after.values(), reverse=True)[:3]
    logged = wdb.execute(text("SELECT min(day) FROM sales_changes")).scalar()
    assert logged == min(day, dt.date(2025, 6, 10))

    from tools.migrate import refresh_rollup

    refresh_rollup(wdb.connection())
    assert wdb.execute(text("SELECT count(*) FROM sales_changes")).scalar() == 0
    got = call_tool(ctx_for(wdb, rep), "sales_summary", args)
    assert {r.code: r.amount for r in got.rows if r.amount > 0} == after


def _lapsed_sql(session: Session, manager_id: int, days: int) -> dict[int, tuple[Any, Any]]:
    rows = session.execute(
        text(
            "SELECT s.id, l.order_date, l.total_amount FROM stores s LEFT JOIN LATERAL ("
            " SELECT o.order_date, o.total_amount FROM orders o"
            f" WHERE o.store_id = s.id AND {SALES}"
            " ORDER BY o.order_date DESC, o.id DESC LIMIT 1) l ON TRUE"
            " WHERE s.rep_id IN (SELECT id FROM users WHERE manager_id = :m) AND s.is_active"
            " AND (l.order_date IS NULL OR l.order_date <= :t)"
        ),
        {"m": manager_id, "t": TODAY - dt.timedelta(days=days)},
    ).all()
    return {sid: (last, amount) for sid, last, amount in rows}


def test_lapsed_stores_follow_changes_the_stored_last_sales_do_not_hold(
    wdb: Session, world: World
) -> None:
    """Each store's last sale comes from `store_last_sale` (refreshed with the rollups) and the
    days changed since; the list, its counts and each store's last amount stay the orders
    table's after a refresh, after cancelled, new and back-dated orders, and when the changes
    go back too far for the stored dates to be used."""
    from tools.migrate import refresh_rollup
    from tools.orders import last_sale_changes

    manager = world.managers[0]
    days = 30

    def check() -> None:
        result = call_tool(
            ctx_for(wdb, manager), "stores_not_ordered_since", {"days": days, "limit": 200}
        )
        expected = _lapsed_sql(wdb, manager.id, days)
        got = {r.store.id: (r.last_order_date, r.last_order_amount) for r in result.stores}
        assert got == expected
        assert result.total == len(expected)

    refresh_rollup(wdb.connection())
    assert last_sale_changes(wdb, TODAY) == (None, True)
    check()
    lapsed = sorted(_lapsed_sql(wdb, manager.id, days))
    recent = [
        s
        for s in world.stores
        if s.rep_id in {r.id for r in world.reps if r.manager_id == manager.id}
        and s.id not in lapsed
    ]
    assert lapsed and recent
    # A lapsed store orders today; a recent store's latest sale is cancelled.
    make_order(
        wdb,
        wdb.get(type(world.stores[0]), lapsed[0]),
        TODAY,
        [(world.products[0], 1, Decimal("9.00"))],
    )
    wdb.execute(
        text(
            "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT o.id FROM orders o"
            f" WHERE o.store_id = :s AND {SALES} ORDER BY o.order_date DESC, o.id DESC LIMIT 1)"
        ),
        {"s": recent[0].id},
    )
    changed, usable = last_sale_changes(wdb, TODAY)
    assert changed is not None and usable
    check()
    # A back-dated order older than the stored-date window: every store is probed.
    make_order(
        wdb,
        wdb.get(type(world.stores[0]), lapsed[-1]),
        TODAY - dt.timedelta(days=200),
        [(world.products[0], 1, Decimal("7.00"))],
    )
    assert not last_sale_changes(wdb, TODAY)[1]
    check()
    refresh_rollup(wdb.connection())
    check()
