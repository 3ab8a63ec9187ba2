"""Rolling-origin backtests: every task, at least three cut-offs, baselines in the same run."""

from __future__ import annotations

import pandas as pd
import pytest

from forecasting import baselines
from forecasting.backtest import cutoffs_for, ranking_metrics, recall_at_k, run_backtest
from forecasting.features import History, to_day
from tests.forecasting.factories import synthetic_history


def test_backtest_reports_models_and_baselines_at_three_cut_offs() -> None:
    history = synthetic_history(stores=25, products=15, days=330, seed=2).history
    result = run_backtest(history, dataset="synthetic", peers=False, tasks=["next_order", "basket"])
    assert len(result.cutoffs) == 3 and len(result.per_cutoff) == 3
    summary = result.summary()
    for key in (
        "next_date/model",
        "next_date/mean_interval",
        "who_orders_7d/recency",
        "next_basket/model",
        "next_basket/own_most_bought",
        "next_basket/tifu_knn",
    ):
        assert key in summary
    # Every cut-off leaves its evaluation window inside the data.
    assert all(c <= history.last_day - 60 for c in cutoffs_for(history))


def test_mean_interval_baseline_is_last_order_plus_mean_gap() -> None:
    day = to_day("2024-01-01")
    lines = pd.DataFrame(
        {
            "order_id": [1, 2, 3],
            "store_id": [1, 1, 1],
            "product_id": [1, 1, 1],
            "day": [day, day + 10, day + 30],
            "quantity": [1, 1, 1],
            "amount": [1.0, 1.0, 1.0],
        }
    )
    predicted = baselines.mean_interval_next_day(History(lines), day + 31)
    assert predicted.loc[1] == day + 45  # last order + (10 + 20) / 2
    # Overdue stores are predicted for the day after the cut-off, never in the past.
    assert baselines.mean_interval_next_day(History(lines), day + 60).loc[1] == day + 61


def test_recall_and_ranking_metrics() -> None:
    recs = pd.DataFrame({"store_id": [1, 1, 2], "product_id": [5, 6, 7], "rank": [1, 2, 1]})
    truth = pd.DataFrame({"store_id": [1, 2, 2], "product_id": [6, 8, 9]})
    recall, hit = recall_at_k(recs, truth, 10)
    assert recall == pytest.approx((1 / 1 + 0 / 2) / 2)
    assert hit == pytest.approx(0.5)
    scores = pd.Series([0.9, 0.8, 0.1, 0.05], index=[1, 2, 3, 4])
    labels = pd.Series([True, True, False, False], index=[1, 2, 3, 4])
    assert ranking_metrics(scores, labels)["auc"] == pytest.approx(1.0)


def test_upsell_backtest_includes_implicit_als_as_a_peer() -> None:
    history = synthetic_history(stores=40, products=30, days=330, seed=4).history
    result = run_backtest(history, dataset="synthetic", peers=False, tasks=["upsell"])
    summary = result.summary()
    for name in ("model", "most_popular", "item_knn", "implicit_als"):
        metrics = summary[f"upsell/{name}"]
        assert 0.0 <= metrics["hit_rate_at_5"] <= 1.0
        assert 0.0 <= metrics["recall_at_10"] <= 1.0


def test_implicit_als_recommends_only_products_the_store_does_not_buy() -> None:
    history = synthetic_history(stores=30, products=20, days=200, seed=5).history
    cutoff = history.last_day
    recs = baselines.implicit_als_new(history, cutoff, k=5, seed=1)
    assert recs is not None and not recs.empty
    owned = history.lines[history.lines["day"] <= cutoff][["store_id", "product_id"]]
    bought = set(map(tuple, owned.drop_duplicates().to_numpy()))
    assert not {(s, p) for s, p in recs[["store_id", "product_id"]].to_numpy()} & bought
    assert recs.groupby("store_id")["rank"].max().max() <= 5
    # Same seed, same recommendations.
    again = baselines.implicit_als_new(history, cutoff, k=5, seed=1)
    pd.testing.assert_frame_equal(recs, again)
