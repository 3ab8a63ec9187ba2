"""Next-order and basket models: choices made inside the training history, never after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import next_order
from forecasting.features import History
from forecasting.next_order import (
    DATE_CANDIDATES,
    WHO_CANDIDATES,
    BasketModel,
    NextOrderModel,
    basket_candidates,
)
from tests.forecasting.factories import synthetic_history


def _with_a_different_future(history: History, cutoff: int, seed: int) -> History:
    """The same history up to the cut-off, and a scrambled one after it."""
    rng = np.random.default_rng(seed)
    lines = history.lines.copy()
    after = lines["day"] > cutoff
    lines.loc[after, "store_id"] = rng.permutation(lines.loc[after, "store_id"].to_numpy())
    lines.loc[after, "day"] = cutoff + rng.integers(1, 60, after.sum())
    extra = lines[after].assign(order_id=lambda f: f["order_id"] + 10**6)
    return History(pd.concat([lines, extra]), history.stores, history.products)


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(stores=50, products=25, days=400, seed=11).history


def test_choices_and_predictions_ignore_orders_after_the_cut_off(history: History) -> None:
    cutoff = history.last_day - 60
    changed = _with_a_different_future(history, cutoff, seed=1)
    a = NextOrderModel(seed=0).fit(history, cutoff)
    b = NextOrderModel(seed=0).fit(changed, cutoff)
    assert (a.who_method, a.date_method) == (b.who_method, b.date_method)
    assert a.validation_scores == b.validation_scores
    pd.testing.assert_frame_equal(
        a.predict(history.until(cutoff), cutoff), b.predict(changed.until(cutoff), cutoff)
    )
    basket_a = BasketModel(seed=0).fit(history, cutoff).predict(history.until(cutoff), cutoff)
    basket_b = BasketModel(seed=0).fit(changed, cutoff).predict(changed.until(cutoff), cutoff)
    pd.testing.assert_frame_equal(basket_a, basket_b)


def test_the_choice_is_made_among_the_named_candidates_and_is_deterministic(
    history: History,
) -> None:
    cutoff = history.last_day
    a = NextOrderModel(seed=3).fit(history, cutoff)
    b = NextOrderModel(seed=3).fit(history, cutoff)
    assert a.who_method in WHO_CANDIDATES and a.date_method in DATE_CANDIDATES
    assert set(a.validation_scores["who_orders_auc"]) == set(WHO_CANDIDATES)
    assert a.validation_scores == b.validation_scores
    pred = a.predict(history, cutoff)
    pd.testing.assert_frame_equal(pred, b.predict(history, cutoff))
    assert pred["p_within_7"].between(0, 1).all()
    assert (pred["days_ahead"] >= 1).all()


def test_validation_examples_are_censored_where_the_validation_cut_off_stood(
    history: History,
) -> None:
    model = NextOrderModel()
    cutoff = history.last_day
    data = model._examples(history, cutoff, 7, 7, 30)
    v = cutoff - 35
    train = model._as_of(data, v, 7, 26)
    assert train["at"].max() <= v - 7
    assert train["at"].nunique() <= 26
    # No example knows of a next order later than the validation cut-off.
    assert (train["at"] + train["target_days"] <= v).all()
    # A store that did not order within 7 days is a negative even when censored at 7 days.
    censored = data[(data["at"] == cutoff - 7) & (data["target_days"] == 7)]
    ordered_on_day_7 = [
        s
        for s in censored.index
        if ((history.lines["store_id"] == s) & (history.lines["day"] == cutoff)).any()
    ]
    assert censored.drop(index=ordered_on_day_7)["target_7"].eq(False).all()


def test_a_date_candidate_replaces_the_model_only_when_better_on_both_counts(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = NextOrderModel()
    cutoff = history.last_day
    data = model._examples(history, cutoff, model.gap, model.step, 17)
    chosen = model._choose_date(data, cutoff)
    mae = model.validation_scores["next_date_mae"]
    within = model.validation_scores["next_date_within_3"]
    if chosen != "boosting":
        assert mae[chosen] < mae["boosting"] and within[chosen] > within["boosting"]
        assert mae[chosen] < mae["rhythm"]
    # A candidate that is always 30 days late is never chosen.
    monkeypatch.setattr(next_order, "DATE_CANDIDATES", ("boosting", "late"))
    real = next_order._date_choice

    def late(name: str, boosted: np.ndarray, rhythm: np.ndarray, cv: np.ndarray) -> np.ndarray:
        return boosted + 30 if name == "late" else real(name, boosted, rhythm, cv)

    monkeypatch.setattr(next_order, "_date_choice", late)
    assert model._choose_date(data, cutoff) == "boosting"


def test_basket_candidates_add_what_similar_stores_buy(history: History) -> None:
    cutoff = history.last_day
    cand = basket_candidates(history, cutoff)
    bought = set(map(tuple, history.lines[["store_id", "product_id"]].drop_duplicates().to_numpy()))
    new = cand[cand["n_bought"] == 0]
    assert not new.empty
    assert not {(s, p) for s, p in new[["store_id", "product_id"]].to_numpy()} & bought
    assert new.groupby("store_id").size().max() <= next_order.NEIGHBOUR_CANDIDATES
    assert (new["tifu_own"] == 0).all() and (new["tifu_neighbours"] > 0).all()
    assert cand[next_order.BASKET_FEATURES].notna().any().all()
    assert not cand.duplicated(["store_id", "product_id"]).any()
    recs = BasketModel(seed=0).fit(history, cutoff).predict(history, cutoff, k=10)
    assert (recs["quantity"] >= 1).all()


def test_validation_fits_on_a_large_distributor_use_a_seeded_sample_of_stores(
    history: History,
) -> None:
    model = NextOrderModel(seed=4, max_stores=10)
    data = model._examples(history, history.last_day, 7, 7, 5)
    sample = model._sample(data)
    assert sample.index.nunique() == 10
    # The sample is of stores, not rows: a chosen store keeps its examples at every cut-off.
    chosen = set(sample.index)
    pd.testing.assert_frame_equal(sample, data[data.index.isin(chosen)])
    pd.testing.assert_frame_equal(sample, NextOrderModel(seed=4, max_stores=10)._sample(data))
    assert NextOrderModel(max_stores=1000)._sample(data) is data


def test_bgnbd_week_ranks_frequent_recent_buyers_first(history: History) -> None:
    cutoff = history.last_day
    model = next_order._fit_bgnbd(history, cutoff)
    assert model is not None
    feats = next_order.store_features(history, cutoff)
    scores = pd.Series(next_order._bgnbd_week(model, feats, cutoff), index=feats.index)
    assert np.isfinite(scores).all() and (scores >= 0).all()
    # Same first order, same count: the store that bought last more recently scores higher.
    base = feats.iloc[[0]].copy()
    recent, lapsed = base.copy(), base.copy()
    recent["last_day"] = cutoff - 3
    lapsed["last_day"] = cutoff - 150
    recent["first_day"] = lapsed["first_day"] = cutoff - 300
    recent["n_orders"] = lapsed["n_orders"] = 10
    both = pd.concat([recent, lapsed])
    # With dropout (CDNOW's published fit) a long silence lowers the chance still to be buying.
    published = next_order.BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)
    high, low = next_order._bgnbd_week(published, both, cutoff)
    assert high > low
    # A more frequent buyer scores higher at the same recency.
    more = recent.assign(n_orders=20)
    assert next_order._bgnbd_week(published, more, cutoff)[0] > high
    assert (next_order._bgnbd_week(None, feats, cutoff) == 0).all()
