"""The demo generator's ground truth: the history it loads and the basket oracle's ceiling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from forecasting.demo_truth import (
    basket_ceiling,
    demo_history,
    oracle_basket,
    true_basket_probabilities,
)
from forecasting.features import load_history, to_day
from tools.data.demo import generate, load_demo
from tools.db import make_engine

TODAY = dt.date(2025, 6, 30)


def test_the_rebuilt_history_is_what_the_demo_loads(create_database: Callable[..., str]) -> None:
    engine = make_engine(create_database(migrate=True))
    try:
        load_demo(engine, stores=12, products=25, months=3, seed=5, today=TODAY)
        with engine.connect() as conn:
            loaded = load_history(conn)
    finally:
        engine.dispose()
    rebuilt = demo_history(generate(stores=12, products=25, months=3, seed=5, today=TODAY))
    columns = ["store_id", "product_id", "day", "quantity", "amount"]

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[columns].sort_values(columns).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(loaded.lines), rows(rebuilt.lines), check_dtype=False)


def test_true_probabilities_follow_the_generator() -> None:
    g = generate(stores=20, products=30, months=4, seed=3, today=TODAY)
    cutoff = to_day(TODAY) - 30
    probs = true_basket_probabilities(g, cutoff)
    assert probs["probability"].between(0, 1).all()
    assert len(probs) == 20 * 30
    # A store's favourite (active at the cut-off) is at least as likely as its coin says.
    s, col = 0, int(np.argmax(g.fav_p[0]))
    product = int(g.fav_prod[0, col]) + 1
    p = probs[(probs["store_id"] == s + 1) & (probs["product_id"] == product)]["probability"]
    if g.fav_start[0, col] <= cutoff - to_day(g.start) + 1 < g.fav_end[0, col]:
        assert float(p.iloc[0]) >= float(g.fav_p[0, col]) - 1e-12
    top = oracle_basket(g, cutoff, k=5)
    assert top.groupby("store_id")["rank"].max().max() <= 5
    first = top[top["rank"] == 1].set_index("store_id")["probability"]
    assert (first >= probs.groupby("store_id")["probability"].max() - 1e-12).all()


def test_the_oracle_sets_the_ceiling_for_own_most_bought() -> None:
    g = generate(stores=60, products=50, months=8, seed=1, today=TODAY)
    cutoffs = [to_day(TODAY) - 60 - 28 * k for k in (2, 1, 0)]
    scores = basket_ceiling(g, cutoffs)
    assert set(scores) == {"oracle", "model", "own_most_bought", "tifu_knn"}
    assert scores["oracle"] >= scores["own_most_bought"]
    assert all(0 <= v <= 1 for v in scores.values())
