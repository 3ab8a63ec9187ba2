"""Weekly demand: the global model, intermittent series and the demand backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import evaluate_demand
from forecasting.demand import DemandModel, intermittent, nbinom_quantile
from forecasting.features import History, to_day, weekly_series

CUTOFF = to_day("2025-03-02")


def _wide(rates: list[float], weeks: int = 100, seed: int = 0) -> pd.DataFrame:
    """Poisson weekly quantities, one series per rate, the last column ending on CUTOFF."""
    rng = np.random.default_rng(seed)
    values = rng.poisson(np.array(rates)[:, None], size=(len(rates), weeks)).astype(float)
    return pd.DataFrame(
        values,
        index=pd.Index(range(1, len(rates) + 1), name="product_id"),
        columns=range(-weeks + 1, 1),
    )


def _history(weeks: int = 110, seed: int = 0) -> History:
    """Orders of six products every week: five regular ones and an intermittent one (id 6)."""
    rng = np.random.default_rng(seed)
    rates = [40.0, 25.0, 12.0, 8.0, 5.0, 0.4]
    rows = []
    start = CUTOFF - 7 * (weeks - 1) - 3
    for week in range(weeks):
        for product, rate in enumerate(rates, start=1):
            quantity = int(rng.poisson(rate))
            if quantity:
                rows.append((len(rows) + 1, product, product, start + 7 * week, quantity))
    lines = pd.DataFrame(rows, columns=["order_id", "store_id", "product_id", "day", "quantity"])
    lines["amount"] = lines["quantity"] * 10.0
    return History(lines)


def test_sparse_series_get_a_median_forecast_never_negative_or_nan() -> None:
    wide = _wide([60.0, 30.0, 10.0] + [0.3] * 20, seed=1)
    model = DemandModel(seed=0).fit(wide, CUTOFF)
    long = model.predict(wide, CUTOFF, 12)
    assert len(long) == 12 * len(wide)
    for column in ("forecast", "mean", "lower", "upper"):
        assert np.isfinite(long[column]).all() and (long[column] >= 0).all(), column
    assert (long["lower"] <= long["forecast"]).all() and (long["forecast"] <= long["upper"]).all()
    sparse = long[long["product_id"] > 3]
    assert sparse["intermittent"].all() and not long[long["product_id"] <= 3]["intermittent"].any()
    # The sparse series are forecast by their negative binomial median, below their mean.
    assert (sparse["forecast"] <= sparse["mean"]).all() and (sparse["mean"] > 0).any()
    # Regular series keep the mean.
    dense = long[long["product_id"] <= 3]
    assert np.allclose(dense["forecast"], dense["mean"]) and (dense["forecast"] > 5).all()
    # On weeks drawn from the same process, the median makes smaller absolute errors.
    future = np.random.default_rng(99).poisson(0.3, size=(20, 12)).astype(float)
    point = sparse["forecast"].to_numpy().reshape(12, 20).T
    mean = sparse["mean"].to_numpy().reshape(12, 20).T
    assert np.abs(point - future).sum() < np.abs(mean - future).sum()


def test_nbinom_quantile_is_zero_for_zero_or_missing_means() -> None:
    size = np.array([1.0, 1.0, 1.0, 50.0])
    median = nbinom_quantile(0.5, np.array([0.0, np.nan, 0.2, 40.0]), size)
    assert median[0] == 0 and median[1] == 0 and median[2] == 0
    assert 35 <= median[3] <= 41
    values = np.array([[0, 0, 3, 0, 1] * 6, [4, 5, 6, 5, 4] * 6], dtype=float)
    assert intermittent(values).tolist() == [True, False]


def test_demand_forecasts_are_deterministic() -> None:
    wide = _wide([50.0, 8.0, 0.5, 0.2], seed=2)
    first = DemandModel(seed=0).fit(wide, CUTOFF).predict(wide, CUTOFF, 8)
    second = DemandModel(seed=0).fit(wide, CUTOFF).predict(wide, CUTOFF, 8)
    pd.testing.assert_frame_equal(first, second)


def test_no_data_after_the_cut_off_is_used() -> None:
    history = _history()
    cutoff = CUTOFF - 7 * 10
    past = weekly_series(history, cutoff)
    before = DemandModel(seed=0).fit(past, cutoff).predict(past, cutoff, 8)
    # Huge orders after the cut-off (and a new product) change nothing up to the cut-off.
    lines = history.lines.copy()
    after = lines["day"] > cutoff
    lines.loc[after, "quantity"] = lines.loc[after, "quantity"] * 100
    extra = pd.DataFrame(
        {
            "order_id": [10**6],
            "store_id": [1],
            "product_id": [99],
            "day": [cutoff + 1],
            "quantity": [10**5],
            "amount": [1.0],
        }
    )
    changed = History(pd.concat([lines, extra], ignore_index=True))
    wide = weekly_series(changed, cutoff)
    pd.testing.assert_frame_equal(wide, past)
    again = DemandModel(seed=0).fit(wide, cutoff).predict(wide, cutoff, 8)
    pd.testing.assert_frame_equal(before, again)


def test_demand_backtest_scores_model_and_peers_on_sparse_series_too() -> None:
    history = _history()
    cutoff = CUTOFF - 7 * 10
    metrics = evaluate_demand(history, cutoff, peers=True)
    for name in ("model", "model_mean", "seasonal_naive", "autoets", "ets_theta_median", "tsb"):
        scores = metrics[f"demand/{name}"]
        assert scores["series"] == 6 and scores["sparse_series"] == 1
        for key in ("wape", "mase", "wape_sparse", "mase_sparse"):
            assert np.isfinite(scores[key]) and scores[key] >= 0, (name, key)


def test_bad_weekly_input_is_refused() -> None:
    wide = _wide([20.0, 3.0], seed=4)
    model = DemandModel(seed=0).fit(wide, CUTOFF)
    broken = wide.copy()
    broken.iloc[0, -1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.predict(broken, CUTOFF, 4)
    with pytest.raises(RuntimeError, match="not trained"):
        DemandModel().predict(wide, CUTOFF, 4)
    with pytest.raises(ValueError, match="14\\+ weeks"):
        DemandModel().fit(wide.iloc[:, -10:], CUTOFF)
