"""The forecasting tools: answers from stored predictions, permissions, edge cases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from tests.forecasting.conftest import Trained
from tools.context import Actor, ToolContext
from tools.db import IntArray
from tools.models import InventoryItem, Store, User
from tools.registry import Refused, call_tool, run_tool


def _ctx(session: Session, trained: Trained, user_id: int | None = None) -> ToolContext:
    if user_id is None:
        actor = Actor(id=0, email="admin@x", name="Admin", role="admin")
    else:
        user = session.get(User, user_id)
        assert user is not None
        actor = Actor.from_user(user)
    return ToolContext(session=session, actor=actor, today=trained.today)


def _rep_store(session: Session, rep: int) -> Store:
    store = session.scalars(
        select(Store).where(Store.rep_id == rep, Store.code.like("S%")).order_by(Store.id)
    ).first()
    assert store is not None
    return store


def test_next_order_answers_from_the_stored_prediction(tdb: Session, trained: Trained) -> None:
    rep = trained.loaded.reps[0]
    store = _rep_store(tdb, rep)
    result = call_tool(_ctx(tdb, trained, rep), "predict_next_order", {"store": store.code})
    stored = tdb.execute(
        text(
            "SELECT predicted_date, probability FROM predictions "
            "WHERE kind='next_order' AND store_id=:s"
        ),
        {"s": store.id},
    ).one()
    assert result.predicted_date == stored.predicted_date
    assert result.predicted_date > trained.today - dt.timedelta(days=1)
    assert result.probability_within_7_days == pytest.approx(stored.probability, abs=1e-3)
    assert 1 <= len(result.basket) <= 10
    assert all(item.quantity >= 1 for item in result.basket)
    last = tdb.execute(
        text("SELECT max(order_date) FROM orders WHERE store_id=:s"), {"s": store.id}
    ).scalar()
    assert result.last_order_date == last


def test_a_rep_cannot_see_another_reps_store(tdb: Session, trained: Trained) -> None:
    mine, theirs = trained.loaded.reps
    foreign = _rep_store(tdb, theirs)
    ctx = _ctx(tdb, trained, mine)
    for name, args in (
        ("predict_next_order", {"store": foreign.code}),
        ("upsell_suggestions", {"store": foreign.name}),
    ):
        outcome = run_tool(ctx, name, args)
        assert not outcome.ok and outcome.error is not None
        assert outcome.error["error"] in ("not_found", "ambiguous")
        # Whatever it says, it offers none of the other rep's stores.
        offered = {c["id"] for c in outcome.error.get("candidates", [])}
        assert foreign.id not in offered
        assert all(tdb.get(Store, i).rep_id == mine for i in offered)  # type: ignore[union-attr]
    at_risk = call_tool(ctx, "at_risk_stores", {"limit": 100})
    owners = {tdb.get(Store, r.store.id).rep_id for r in at_risk}  # type: ignore[union-attr]
    assert owners <= {mine}


def test_stores_with_one_or_no_orders_get_not_enough_history(
    tdb: Session, trained: Trained
) -> None:
    ctx = _ctx(tdb, trained)
    one = run_tool(ctx, "predict_next_order", {"store": "ONE-1"})
    assert one.error is not None and one.error["error"] == "not_enough_history"
    assert "one order" in one.error["message"]
    none = run_tool(ctx, "predict_next_order", {"store": "NONE-1"})
    assert none.error is not None and none.error["error"] == "not_enough_history"
    assert "no orders" in none.error["message"]
    upsell = run_tool(ctx, "upsell_suggestions", {"store": "NONE-1"})
    assert upsell.error is not None and upsell.error["error"] == "not_enough_history"


def test_call_list_of_a_rep_holds_only_their_stores_with_reasons(
    tdb: Session, trained: Trained
) -> None:
    rep = trained.loaded.reps[0]
    result = call_tool(_ctx(tdb, trained, rep), "call_list", {"limit": 200})
    assert result.entries
    rep_of = {s.id: s.rep_id for s in tdb.scalars(select(Store))}
    assert all(rep_of[e.store.id] == rep for e in result.entries)
    assert all(e.reasons for e in result.entries)
    scores = [e.score for e in result.entries]
    assert scores == sorted(scores, reverse=True)
    other = tdb.get(User, trained.loaded.reps[1])
    assert other is not None
    refused = run_tool(_ctx(tdb, trained, rep), "call_list", {"rep": other.email})
    assert refused.error is not None and refused.error["error"] == "refused"


def test_a_manager_may_ask_for_one_of_their_reps(tdb: Session, trained: Trained) -> None:
    rep = tdb.get(User, trained.loaded.reps[1])
    assert rep is not None
    result = call_tool(_ctx(tdb, trained, trained.loaded.manager), "call_list", {"rep": rep.name})
    assert result.rep == rep.name
    rep_of = {s.id: s.rep_id for s in tdb.scalars(select(Store))}
    assert result.entries and all(rep_of[e.store.id] == rep.id for e in result.entries)
    stranger = run_tool(
        _ctx(tdb, trained, trained.loaded.manager), "call_list", {"rep": "Nobody Such"}
    )
    assert stranger.error is not None and stranger.error["error"] == "not_found"


def test_call_list_reason_numbers_match_sql(tdb: Session, trained: Trained) -> None:
    rep = trained.loaded.reps[0]
    result = call_tool(_ctx(tdb, trained, rep), "call_list", {"limit": 200})
    by_store = {e.store.id: e for e in result.entries}
    credit = {r.code: r for r in by_store[trained.overdue_store].reasons}["overdue_credit"]
    owed = tdb.execute(
        text(
            "SELECT sum(i.amount - coalesce((SELECT sum(amount) FROM payments p "
            "WHERE p.invoice_id = i.id), 0)), max(CAST(:d AS date) - i.due_date) FROM invoices i "
            "WHERE i.store_id = :s AND i.due_date < :d"
        ),
        {"s": trained.overdue_store, "d": trained.today},
    ).one()
    assert credit.numbers["overdue_amount"] == pytest.approx(float(owed[0]))
    assert credit.numbers["days_overdue"] == owed[1] == 45
    assert credit.text == "Rs 18,400 overdue 45 days"
    complaint = {r.code: r for r in by_store[trained.complaint_store].reasons}["complaint"]
    assert complaint.numbers["complaints"] == 1
    for entry in result.entries:
        for reason in entry.reasons:
            if reason.code != "due_to_order":
                continue
            last = tdb.execute(
                text(
                    "SELECT max(order_date) FROM orders WHERE store_id = :s "
                    "AND status IN ('placed','delivered')"
                ),
                {"s": entry.store.id},
            ).scalar()
            assert reason.numbers["days_since_last_order"] == (trained.today - last).days
            gaps = tdb.execute(
                text(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FROM ("
                    " SELECT d - lag(d) OVER (ORDER BY d) AS gap FROM ("
                    "  SELECT DISTINCT order_date AS d FROM orders WHERE store_id = :s"
                    "  AND status IN ('placed','delivered') AND order_date < :t) x) y"
                ),
                {"s": entry.store.id, "t": trained.today},
            ).scalar()
            assert reason.numbers["usual_interval_days"] == pytest.approx(float(gaps), abs=0.05)


def test_upsell_never_suggests_an_out_of_stock_product(tdb: Session, trained: Trained) -> None:
    ctx = _ctx(tdb, trained)
    store = _rep_store(tdb, trained.loaded.reps[0])
    first = call_tool(ctx, "upsell_suggestions", {"store": store.code, "limit": 5})
    assert first.suggestions and all(s.reason for s in first.suggestions)
    top = first.suggestions[0].product.id
    tdb.execute(update(InventoryItem).where(InventoryItem.product_id == top).values(reserved=1000))
    again = call_tool(ctx, "upsell_suggestions", {"store": store.code, "limit": 5})
    assert top not in {s.product.id for s in again.suggestions}
    assert all(s.available > 0 for s in again.suggestions)


def test_demand_forecast_has_weeks_and_an_interval(tdb: Session, trained: Trained) -> None:
    product = trained.loaded.products[0]
    sold = tdb.execute(
        text("SELECT count(*) FROM predictions WHERE kind='demand' AND product_id=:p"),
        {"p": product},
    ).scalar()
    ctx = _ctx(tdb, trained, trained.loaded.reps[0])
    if not sold:
        pytest.skip("product 0 did not sell recently in this seed")
    result = call_tool(ctx, "demand_forecast", {"product": str(product), "weeks": 6})
    assert len(result.weeks) == 6
    assert result.weeks[0].week_start > trained.today - dt.timedelta(days=1)
    for week in result.weeks:
        assert week.lower is not None and week.upper is not None
        assert week.lower <= week.quantity <= week.upper
    regional = call_tool(ctx, "demand_forecast", {"product": str(product), "region": "north"})
    assert regional.region == "North"
    assert regional.total <= result.total * 3
    bad = run_tool(ctx, "demand_forecast", {"product": str(product), "region": "Atlantis"})
    assert bad.error is not None and bad.error["error"] == "not_found"
    too_far = run_tool(ctx, "demand_forecast", {"product": str(product), "weeks": 30})
    assert too_far.error is not None and too_far.error["error"] == "invalid_arguments"


def test_tools_on_an_untrained_database_say_so(db: Session) -> None:
    ctx = ToolContext(session=db, actor=Actor(id=0, email="a@x", name="A", role="admin"))
    db.execute(text("DELETE FROM predictions"))
    for name, args in (("at_risk_stores", {}), ("call_list", {})):
        outcome = run_tool(ctx, name, args)
        assert outcome.error is not None and outcome.error["error"] == "no_forecasts"
        assert "mangalm train" in outcome.error["message"]


def test_a_rep_naming_themselves_is_fine(tdb: Session, trained: Trained) -> None:
    rep = tdb.get(User, trained.loaded.reps[0])
    assert rep is not None
    result = call_tool(_ctx(tdb, trained, rep.id), "call_list", {"rep": rep.email})
    assert result.rep == rep.name
    with pytest.raises(Refused):
        call_tool(_ctx(tdb, trained, rep.id), "call_list", {"rep": "someone else"})


def test_demand_figures_round_halves_up() -> None:
    """Weekly quantities and their total are shown to one decimal with halves rounded up, as
    a person summing them would (not Python's round-half-to-even on floats)."""
    from decimal import Decimal

    from forecasting.tools import _tenths

    assert [_tenths(v) for v in (33.25, 2.35, 0.05, None, Decimal("269.95"))] == [
        33.3,
        2.4,
        0.1,
        0.0,
        270.0,
    ]


def test_demand_total_adds_the_weekly_expectations(tdb: Session, trained: Trained) -> None:
    """A product that sells in few weeks is shown its typical (median) weekly quantity, but the
    total over the weeks is the sum of the weekly expectations, as stock planning needs."""
    rows = tdb.execute(
        text(
            "SELECT product_id, count(*) FILTER (WHERE details ? 'mean') FROM predictions "
            "WHERE kind = 'demand' AND details->>'region' IS NULL GROUP BY product_id"
        )
    ).all()
    assert rows, "no demand predictions"
    ctx = _ctx(tdb, trained, trained.loaded.reps[0])
    checked = 0
    for product, sparse_weeks in rows[:40]:
        result = call_tool(ctx, "demand_forecast", {"product": str(product), "weeks": 8})
        expected = tdb.execute(
            text(
                "SELECT sum(coalesce(CAST(details->>'mean' AS numeric), quantity)) FROM ("
                "SELECT details, quantity FROM predictions WHERE kind = 'demand' "
                "AND product_id = :p AND details->>'region' IS NULL "
                "ORDER BY predicted_date LIMIT 8) w"
            ),
            {"p": product},
        ).scalar()
        assert result.total == pytest.approx(float(expected), abs=0.051)
        if sparse_weeks:
            assert result.total >= sum(w.quantity for w in result.weeks) - 0.1
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("days_later", [0, 2, 5, 9, 14, 30])
def test_the_database_scores_every_store_as_python_does(
    tdb: Session, trained: Trained, days_later: int
) -> None:
    """The call list's first pass (`RANK_SQL`) computes each store's score in the database;
    it must equal `score_store`'s on every store, and the ranked list must be the one a full
    ranking in Python gives, for every list length (ties at the cut included). Later days
    move the stores through the due thresholds."""
    from forecasting import call_list as calls

    day = trained.today + dt.timedelta(days=days_later)
    ids = list(tdb.scalars(select(Store.id).where(Store.is_active.is_(True))).all())
    data = calls.gather(tdb, ids, day)
    max_value = max((float(info["expected"] or 0) for info in data.values()), default=0.0)
    python = {
        store_id: calls.score_store(info, day, max_value, "Rs") for store_id, info in data.items()
    }
    listed = [i for i, e in python.items() if e["listed"] and e["score"] > 0]
    assert len(listed) >= 10
    first = calls.candidates(tdb, ids, day, len(ids))
    everyone, db_max, db_scores = first.rows, first.max_value, first.scores
    assert first.considered == len(ids)
    assert db_max == pytest.approx(max_value)
    # Every listed store is a candidate; any other candidate rounds to a score of 0 here.
    assert set(listed) <= set(everyone)
    assert all(python[i]["score"] == 0 for i in set(everyone) - set(listed))
    for store_id, score in db_scores.items():
        assert score == pytest.approx(python[store_id]["score"], abs=5e-5 + 1e-9), store_id
        assert everyone[store_id] == data[store_id]
    full = sorted(listed, key=lambda i: (-python[i]["score"], i))
    for limit in (1, 3, 7, len(full), len(full) + 5):
        ranked = calls.rank(tdb, ids, day, limit)
        assert [store_id for store_id, _ in ranked] == full[:limit]
        assert [entry for _, entry in ranked] == [python[i] for i in full[:limit]]
        if limit <= 7:  # only the few that can make the list come back
            few = calls.candidates(tdb, ids, day, limit).rows
            assert limit <= len(few) < len(listed)


def test_stores_named_by_their_reps_rank_as_their_listed_ids(
    tdb: Session, trained: Trained
) -> None:
    """A team's or the fleet's stores are named by their reps (`RepStores`) rather than
    listed: the same gathered rows, the same first pass (candidates, scores, largest expected
    value, stores considered) and the same ranking as the list of their active stores."""
    from forecasting import call_list as calls

    day = trained.today
    reps = list(trained.loaded.reps[:2])
    inactive = tdb.scalars(
        select(Store.id).where(Store.rep_id == reps[0]).order_by(Store.id.desc())
    ).first()
    tdb.execute(update(Store).where(Store.id == inactive).values(is_active=False))
    for named, where in (
        (calls.RepStores(None), Store.is_active.is_(True)),
        (calls.RepStores(reps), Store.is_active.is_(True) & Store.rep_id.in_(reps)),
        (calls.RepStores(reps[:1]), Store.is_active.is_(True) & (Store.rep_id == reps[0])),
        (calls.RepStores([]), Store.id.in_([])),
    ):
        ids = list(tdb.scalars(select(Store.id).where(where)).all())
        assert inactive not in ids
        assert calls.gather(tdb, named, day) == calls.gather(tdb, ids, day)
        for limit in (1, 5, 50):
            assert calls.candidates(tdb, named, day, limit) == calls.candidates(
                tdb, ids, day, limit
            )
            assert calls.ranked(tdb, named, day, limit) == (
                calls.rank(tdb, ids, day, limit),
                len(ids),
            )
    assert len(calls.rank(tdb, calls.RepStores(None), day, 50)) > 10


def test_team_and_fleet_lists_consider_their_active_stores(tdb: Session, trained: Trained) -> None:
    """The manager's and the administrator's lists consider every active store they see,
    and list only those."""
    everyone = _ctx(tdb, trained)
    manager = _ctx(tdb, trained, trained.loaded.manager)
    for ctx in (everyone, manager):
        scope = select(Store.id).where(ctx.store_scope(), Store.is_active.is_(True))
        seen = set(tdb.scalars(scope).all())
        result = call_tool(ctx, "call_list", {"limit": 200})
        assert result.stores_considered == len(seen) > 0
        assert result.entries and {e.store.id for e in result.entries} <= seen
        scores = [e.score for e in result.entries]
        assert scores == sorted(scores, reverse=True)


def test_next_order_fields_follow_the_stored_prediction(tdb: Session, trained: Trained) -> None:
    """When a next-order prediction is changed after training, the call list scores the new
    values at once (and still as Python does)."""
    from forecasting import call_list as calls

    day = trained.today
    rep = trained.loaded.reps[0]
    ids = list(tdb.scalars(select(Store.id).where(Store.rep_id == rep, Store.is_active)).all())
    before = calls.gather(tdb, ids, day)
    store = next(i for i, row in before.items() if row["predicted"] and row["last_order"])
    last = before[store]["last_order"]
    tdb.execute(
        text(
            "UPDATE predictions SET details = details || jsonb_build_object("
            "'median_interval_days', 2.5, 'expected_value', 987654.5, "
            "'last_order_date', CAST(:last AS text)) "
            "WHERE kind = 'next_order' AND store_id = :s"
        ),
        {"s": store, "last": (last - dt.timedelta(days=1)).isoformat()},
    )
    after = calls.gather(tdb, ids, day)[store]
    assert (after["usual"], after["expected"]) == (2.5, 987654.5)
    assert after["trained_last"] == last - dt.timedelta(days=1)
    # Ordered since training: the 7-day probability no longer counts, the rhythm does.
    scored = calls.score_store(after, day, 987654.5, "Rs")
    since = (day - last).days
    assert scored["components"]["due"] == round(min(since / 2.5 / 1.5, 1.0), 3)
    first = calls.candidates(tdb, calls.RepStores([rep]), day, 1)
    assert first.max_value == 987654.5
    top = calls.rank(tdb, calls.RepStores([rep]), day, 3)
    assert top == calls.rank(tdb, ids, day, 3)
    python = {
        i: calls.score_store(row, day, 987654.5, "Rs")
        for i, row in calls.gather(tdb, ids, day).items()
    }
    best = sorted(
        (i for i, e in python.items() if e["listed"] and e["score"] > 0),
        key=lambda i: (-python[i]["score"], i),
    )
    assert [i for i, _ in top] == best[:3]


def test_last_orders_from_the_stored_dates_match_the_orders(tdb: Session, trained: Trained) -> None:
    """The call list reads each store's last sale from `store_last_sale` (refreshed with the
    rollups) plus the days changed since; after new, cancelled, deleted and back-dated orders
    and a new store, none of it refreshed, every store's last order is still the orders
    table's, for today and for earlier days."""
    from forecasting import call_list as calls
    from tools.migrate import refresh_rollup
    from tools.models import Order

    refresh_rollup(tdb.connection())
    assert tdb.execute(text("SELECT count(*) FROM sales_changes")).scalar() == 0
    day = trained.today
    rep = trained.loaded.reps[0]

    def ids() -> list[int]:
        return list(tdb.scalars(select(Store.id).order_by(Store.id)).all())

    def check(on: dt.date) -> None:
        truth = dict(
            tdb.execute(
                text(
                    "SELECT s.id, (SELECT max(o.order_date) FROM orders o WHERE o.store_id = s.id"
                    " AND o.status IN ('placed', 'delivered') AND o.order_date <= :d)"
                    " FROM stores s"
                ),
                {"d": on},
            ).all()
        )
        gathered = calls.gather(tdb, ids(), on)
        assert {i: row["last_order"] for i, row in gathered.items()} == truth

    check(day)
    check(day - dt.timedelta(days=30))  # stores whose stored date is later are read live
    stores = [s for s in ids() if s not in (trained.no_order_store, trained.one_order_store)]

    def latest(store: int) -> Order:
        order = tdb.scalars(
            select(Order)
            .where(Order.store_id == store, Order.status.in_(("placed", "delivered")))
            .order_by(Order.order_date.desc(), Order.id.desc())
        ).first()
        assert order is not None
        return order

    def add(store: int, on: dt.date, status: str = "placed") -> None:
        tdb.add(Order(store_id=store, order_date=on, status=status, total_amount=500))
        tdb.flush()

    add(stores[0], day)  # a new order today
    latest(stores[1]).status = "cancelled"  # the latest order cancelled
    tdb.delete(latest(stores[2]))  # the latest order deleted
    tdb.flush()
    add(stores[3], day - dt.timedelta(days=10))  # a back-dated order (older than its last)
    new_store = Store(code="NEW-LS-1", name="Fresh Start Mart", rep_id=rep)
    tdb.add(new_store)
    tdb.flush()
    add(new_store.id, day - dt.timedelta(days=1))
    assert calls._parameters(tdb, ids(), day)["stored"]
    for days_back in (0, 1, 5, 12, 30):
        check(day - dt.timedelta(days=days_back))

    add(stores[4], day - dt.timedelta(days=90))  # changes too old to read live: probe all
    assert not calls._parameters(tdb, ids(), day)["stored"]
    check(day)
    refresh_rollup(tdb.connection())
    assert calls._parameters(tdb, ids(), day)["stored"]
    check(day)


def test_store_ids_travel_as_an_array_literal(tdb: Session, trained: Trained) -> None:
    """The call list passes its store ids on as PostgreSQL's own array text; a list of
    integers and that text rank the same, and no ids rank nothing."""
    from forecasting import call_list as calls

    assert [IntArray(t).size for t in ("{}", "{7}", "{3,17,42}")] == [0, 1, 3]
    text_ids = tdb.execute(text("SELECT array_agg(id ORDER BY id)::text FROM stores")).scalar()
    ids = list(tdb.scalars(select(Store.id).order_by(Store.id)).all())
    assert IntArray(text_ids).size == len(ids)
    day = trained.today
    assert calls.rank(tdb, IntArray(text_ids), day, 10) == calls.rank(tdb, ids, day, 10)
    assert calls.rank(tdb, IntArray("{}"), day, 10) == []
    assert calls.rank(tdb, [], day, 10) == []
    rep = trained.loaded.reps[0]
    result = call_tool(_ctx(tdb, trained, rep), "call_list", {"limit": 5})
    mine = tdb.scalar(
        select(func.count()).select_from(Store).where(Store.rep_id == rep, Store.is_active)
    )
    assert result.stores_considered == mine and len(result.entries) == 5


def test_int_arrays_reach_the_server_typed(tdb: Session) -> None:
    """`IntArray` is sent as `int4[]`: the planner sees a constant array, not text cast per
    row."""
    value = IntArray.of([5, 3, 9])
    assert value == "{5,3,9}" and value.size == 3
    row = tdb.execute(
        text("SELECT pg_typeof(:v)::text, cardinality(:v), 3 = ANY(:v)"), {"v": value}
    ).one()
    assert tuple(row) == ("integer[]", 3, True)
