"""Features never look past the cut-off, and they say what the orders say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.features import (
    History,
    store_features,
    store_product_stats,
    to_day,
    weekly_series,
)
from tests.forecasting.factories import synthetic_history


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(stores=30, products=20, days=300, seed=1).history


def _scrambled_future(history: History, cutoff: int) -> History:
    """The same past, and a wildly different future."""
    lines = history.lines.copy()
    future = lines["day"] > cutoff
    lines.loc[future, "quantity"] *= 50
    lines.loc[future, "amount"] *= 50
    lines.loc[future, "day"] = cutoff + 1  # everything crowds onto the next day
    return History(lines, history.stores, history.products)


def test_no_store_feature_uses_data_after_the_cut_off(history: History) -> None:
    cutoff = history.first_day + 200
    full = store_features(history, cutoff)
    truncated = store_features(history.until(cutoff), cutoff)
    changed = store_features(_scrambled_future(history, cutoff), cutoff)
    pd.testing.assert_frame_equal(full, truncated)
    pd.testing.assert_frame_equal(full, changed)


def test_no_product_or_weekly_feature_uses_data_after_the_cut_off(history: History) -> None:
    cutoff = history.first_day + 180
    scrambled = _scrambled_future(history, cutoff)
    pd.testing.assert_frame_equal(
        store_product_stats(history, cutoff).reset_index(drop=True),
        store_product_stats(scrambled, cutoff).reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(weekly_series(history, cutoff), weekly_series(scrambled, cutoff))


def test_store_features_match_the_orders() -> None:
    day = to_day("2024-03-01")
    lines = pd.DataFrame(
        {
            "order_id": [1, 2, 2, 3, 4],
            "store_id": [7, 7, 7, 7, 8],
            "product_id": [1, 1, 2, 1, 1],
            "day": [day, day + 10, day + 10, day + 24, day + 5],
            "quantity": [2, 3, 1, 2, 1],
            "amount": [100.0, 150.0, 50.0, 90.0, 40.0],
        }
    )
    f = store_features(History(lines), day + 30)
    seven = f.loc[7]
    assert seven["n_orders"] == 3
    assert seven["mean_interval"] == 12  # gaps of 10 and 14 days
    assert seven["median_interval"] == 12
    assert seven["days_since_last"] == 6
    assert seven["mean_value"] == pytest.approx((100 + 200 + 90) / 3)
    # A store with a single order has no rhythm yet.
    assert np.isnan(f.loc[8, "mean_interval"])


def test_weekly_series_sums_quantities_into_weeks_ending_on_the_cut_off(history: History) -> None:
    cutoff = history.first_day + 139
    wide = weekly_series(history, cutoff)
    assert wide.columns.max() == 0
    last_week = history.lines[
        (history.lines["day"] > cutoff - 7) & (history.lines["day"] <= cutoff)
    ]
    expected = last_week.groupby("product_id")["quantity"].sum()
    assert wide[0].reindex(expected.index).tolist() == expected.tolist()
    assert wide.to_numpy().sum() == history.until(cutoff).lines["quantity"].sum()
