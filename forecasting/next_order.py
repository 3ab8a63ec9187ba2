"""When will each store order next, how likely within 7 days, and what will it buy.

Two models learnt from the store's own rhythm, both trained on examples cut from earlier
points in the history (never after the cut-off):

- `NextOrderModel`: gradient boosting on the store features predicts the days until the next
  order (absolute-error loss: the median, which is what the date MAE rewards) and, separately,
  the probability of an order within the next 7 days.
- `BasketModel`: gradient boosting over (store, product) candidates from the store's own
  history ranks the products of the next order; the quantity is the store's recent typical
  quantity of that product.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from forecasting.features import (
    BOOSTING,
    STORE_FEATURES,
    History,
    product_popularity,
    store_features,
    store_product_stats,
    visits,
)

HORIZON_CAP = 120
MIN_ORDERS = 2


def next_visit_after(history: History, start: int, end: int) -> pd.Series:
    """Per store, the first order day in (start, end]; stores without one are absent."""
    v = visits(history, end)
    v = v[v["day"] > start]
    return v.groupby("store_id")["day"].min()


def _training_cutoffs(history: History, cutoff: int, gap: int, step: int, count: int) -> list[int]:
    first = history.first_day + 56
    return [t for t in (cutoff - gap - k * step for k in range(count)) if t > first]


def _rhythm_days(feats: pd.DataFrame) -> np.ndarray:
    """Days from the cut-off to last order + mean interval, at least 1."""
    return np.clip(feats["due_in_mean"].to_numpy(dtype=float), 1, HORIZON_CAP)


class NextOrderModel:
    """Days to the next order and P(order within 7 days), per store with two or more orders."""

    def __init__(self, *, seed: int = 0, n_cutoffs: int = 8, step: int = 14, gap: int = 63):
        self.seed = seed
        self.n_cutoffs = n_cutoffs
        self.step = step
        self.gap = gap
        self.regressor: HistGradientBoostingRegressor | None = None
        self.classifier: HistGradientBoostingClassifier | None = None
        self.trained_until: int | None = None

    def _examples(self, history: History, cutoff: int) -> pd.DataFrame:
        frames = []
        for t in _training_cutoffs(history, cutoff, self.gap, self.step, self.n_cutoffs):
            feats = store_features(history, t)
            feats = feats[feats["n_orders"] >= MIN_ORDERS]
            nxt = next_visit_after(history, t, cutoff).reindex(feats.index)
            # Not ordering before the cut-off is censored at (cutoff - t) >= gap days: capped.
            days = (nxt - t).fillna(cutoff - t).clip(upper=HORIZON_CAP)
            feats = feats.assign(target_days=days.to_numpy(), target_7=(days <= 7).to_numpy())
            frames.append(feats)
        if not frames:
            raise ValueError("not enough history to train the next-order model (under 4 months)")
        return pd.concat(frames)

    def fit(self, history: History, cutoff: int) -> NextOrderModel:
        data = self._examples(history.until(cutoff), cutoff)
        if len(data) < 20:
            raise ValueError("not enough stores with repeat orders to train the next-order model")
        x = data[STORE_FEATURES].to_numpy(dtype=float)
        # Learn the correction to the store's own rhythm rather than the raw number of days:
        # a model that learns nothing falls back to the mean-interval rule.
        base = _rhythm_days(data)
        self.regressor = HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=300,
            learning_rate=0.06,
            random_state=self.seed,
            **BOOSTING,
        ).fit(x, data["target_days"].to_numpy() - base)
        y7 = data["target_7"].to_numpy()
        self.classifier = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.06, random_state=self.seed, **BOOSTING
        )
        if len(np.unique(y7)) > 1:
            self.classifier.fit(x, y7)
        else:
            self.classifier = None
        self.trained_until = cutoff
        return self

    def predict(self, history: History, cutoff: int) -> pd.DataFrame:
        """Per store: days_ahead, predicted_day, p_within_7, confidence and the features."""
        if self.regressor is None:
            raise RuntimeError("the model is not trained")
        feats = store_features(history, cutoff)
        feats = feats[feats["n_orders"] >= MIN_ORDERS].copy()
        if feats.empty:
            return feats.assign(days_ahead=[], predicted_day=[], p_within_7=[], confidence=[])
        x = feats[STORE_FEATURES].to_numpy(dtype=float)
        days = np.rint(self.regressor.predict(x) + _rhythm_days(feats))
        days = np.clip(days, 1, HORIZON_CAP).astype(int)
        feats["days_ahead"] = days
        feats["predicted_day"] = cutoff + days
        if self.classifier is not None:
            feats["p_within_7"] = self.classifier.predict_proba(x)[:, 1]
        else:
            feats["p_within_7"] = (days <= 7).astype(float)
        # How regular the store is: a coefficient of variation of 0 is a clockwork store.
        cv = (feats["std_interval"] / feats["mean_interval"].clip(lower=1)).fillna(1.0)
        feats["confidence"] = (1.0 / (1.0 + cv)).clip(0.05, 0.95)
        return feats


BASKET_FEATURES = [
    "n_bought",
    "share",
    "decayed",
    "in_last",
    "days_since",
    "mean_gap",
    "gap_ratio",
    "mean_qty",
    "store_orders",
    "store_overdue",
    "store_median_interval",
    "popularity",
    "trend",
]


def basket_candidates(history: History, cutoff: int, per_store: int = 60) -> pd.DataFrame:
    """(store, product) candidates from each store's own history, with ranking features."""
    stats = store_product_stats(history, cutoff)
    if stats.empty:
        return stats.assign(**{c: [] for c in BASKET_FEATURES})
    stats = stats.sort_values(["store_id", "decayed", "n_bought"], ascending=[True, False, False])
    stats = stats[stats.groupby("store_id").cumcount() < per_store]
    feats = store_features(history, cutoff)
    stats["store_orders"] = stats["store_id"].map(feats["n_orders"]).to_numpy()
    stats["store_overdue"] = stats["store_id"].map(feats["overdue_ratio"]).to_numpy()
    stats["store_median_interval"] = stats["store_id"].map(feats["median_interval"]).to_numpy()
    pop = product_popularity(history, cutoff)
    stats["popularity"] = stats["product_id"].map(pop["popularity"]).fillna(0).to_numpy()
    stats["trend"] = stats["product_id"].map(pop["trend"]).fillna(0).to_numpy()
    return stats.reset_index(drop=True)


def next_basket_truth(history: History, cutoff: int, end: int) -> pd.DataFrame:
    """(store_id, product_id) pairs of each store's first order day after the cut-off."""
    nxt = next_visit_after(history, cutoff, end)
    lines = history.between(cutoff, end)
    lines = lines[lines["day"].to_numpy() == lines["store_id"].map(nxt).to_numpy()]
    return lines[["store_id", "product_id"]].drop_duplicates()


class BasketModel:
    """Ranks a store's own products for its next order."""

    def __init__(
        self, *, seed: int = 0, n_cutoffs: int = 4, step: int = 21, max_stores: int = 3000
    ):
        self.seed = seed
        self.n_cutoffs = n_cutoffs
        self.step = step
        self.max_stores = max_stores
        self.classifier: HistGradientBoostingClassifier | None = None

    def fit(self, history: History, cutoff: int) -> BasketModel:
        history = history.until(cutoff)
        rng = np.random.default_rng(self.seed)
        frames = []
        for t in _training_cutoffs(history, cutoff, 35, self.step, self.n_cutoffs):
            truth = next_basket_truth(history, t, cutoff)
            stores = truth["store_id"].unique()
            if len(stores) > self.max_stores:
                stores = rng.choice(stores, self.max_stores, replace=False)
            cand = basket_candidates(history.until(t), t)
            cand = cand[cand["store_id"].isin(stores)]
            key = pd.MultiIndex.from_frame(truth[["store_id", "product_id"]])
            cand["label"] = pd.MultiIndex.from_frame(cand[["store_id", "product_id"]]).isin(key)
            frames.append(cand)
        if not frames:
            raise ValueError("not enough history to train the basket model")
        data = pd.concat(frames)
        if data["label"].nunique() < 2:
            raise ValueError("not enough repeat purchases to train the basket model")
        self.classifier = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.08, random_state=self.seed, **BOOSTING
        ).fit(data[BASKET_FEATURES].to_numpy(dtype=float), data["label"].to_numpy())
        return self

    def predict(self, history: History, cutoff: int, k: int = 10) -> pd.DataFrame:
        """Top `k` products per store: store_id, product_id, probability, quantity, rank."""
        if self.classifier is None:
            raise RuntimeError("the model is not trained")
        cand = basket_candidates(history, cutoff)
        if cand.empty:
            return cand.assign(probability=[], quantity=[], rank=[])
        cand["probability"] = self.classifier.predict_proba(
            cand[BASKET_FEATURES].to_numpy(dtype=float)
        )[:, 1]
        cand = cand.sort_values(
            ["store_id", "probability", "product_id"], ascending=[True, False, True]
        )
        cand["rank"] = cand.groupby("store_id").cumcount() + 1
        top = cand[cand["rank"] <= k].copy()
        top["quantity"] = np.maximum(1, np.rint(top["recent_qty"].fillna(top["mean_qty"])))
        return top.reset_index(drop=True)
