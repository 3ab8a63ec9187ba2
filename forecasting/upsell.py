"""What to pitch to a store: products similar stores buy that it does not, and ones it stopped.

`UpsellModel` ranks products a store has never bought. Candidates come from three sources
(item-kNN over the purchase matrix, the nearest stores' baskets, and popularity in the store's
segment and region); a logistic regression, trained on which products stores really started
buying in 60-day windows before the cut-off, orders them. `stopped_buying` finds products a
store bought regularly and then dropped. Stock and promotions change by the hour, so they are
applied when the tool is called, not here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from forecasting.baselines import Matrix, item_knn_scores, purchase_matrix
from forecasting.features import History, store_features, store_product_stats

WINDOW = 60
UPSELL_FEATURES = [
    "item_knn",
    "item_knn_rank",
    "store_knn",
    "store_knn_rank",
    "popularity",
    "segment_popularity",
    "region_popularity",
    "category_share",
    "owned_count",
    "recent_popularity",
]


def store_knn_scores(owned: Matrix, rows: np.ndarray, k: int = 50, chunk: int = 1024) -> np.ndarray:
    """For the stores at `rows`: the share of their `k` most similar stores buying each product."""
    norms = np.linalg.norm(owned.values, axis=1, keepdims=True)
    unit = owned.values / np.where(norms == 0, 1, norms)
    out = np.zeros((len(rows), owned.values.shape[1]), dtype=np.float32)
    k = min(k, max(len(owned.values) - 1, 0))
    if k == 0:
        return out
    for start in range(0, len(rows), chunk):
        idx = rows[start : start + chunk]
        sims = unit[idx] @ unit.T
        sims[np.arange(len(idx)), idx] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start : start + len(idx)] = owned.values[nearest].mean(axis=1)
    return out


def _group_popularity(owned: Matrix, groups: pd.Series) -> np.ndarray:
    """Per store row: the share of stores in its group buying each product."""
    labels = groups.reindex(owned.stores).fillna("?").astype(str).to_numpy()
    codes, uniques = pd.factorize(labels)
    out = np.zeros_like(owned.values)
    for code in range(len(uniques)):
        mask = codes == code
        out[mask] = owned.values[mask].mean(axis=0)
    return out


def upsell_candidates(
    history: History,
    cutoff: int,
    *,
    stores: np.ndarray | None = None,
    per_source: int = 30,
) -> pd.DataFrame:
    """Never-bought (store, product) candidates with ranking features."""
    owned = purchase_matrix(history, cutoff)
    if owned.values.size == 0:
        return pd.DataFrame(columns=["store_id", "product_id", *UPSELL_FEATURES])
    rows = np.arange(len(owned.stores))
    if stores is not None:
        rows = rows[np.isin(owned.stores, stores)]
    values = owned.values[rows]
    # Item-kNN learns co-purchases from every store, then scores the selected rows only.
    item = item_knn_scores(Matrix(values, owned.stores[rows], owned.products), owned.values)
    near = store_knn_scores(owned, rows)
    pop = np.broadcast_to(owned.values.mean(axis=0, keepdims=True), values.shape)
    recent_lines = history.between(cutoff - 91, cutoff)
    recent_pop = np.zeros(len(owned.products), dtype=np.float32)
    if not recent_lines.empty:
        recent = purchase_matrix(
            History(recent_lines, history.stores, history.products), cutoff, products=owned.products
        )
        recent_pop = recent.values.mean(axis=0)
    attrs = history.stores.set_index("store_id")
    segment = _group_popularity(owned, attrs["segment"])[rows] if "segment" in attrs else pop
    region = _group_popularity(owned, attrs["region"])[rows] if "region" in attrs else pop

    excluded = values > 0
    choose = np.zeros_like(excluded)
    n_products = values.shape[1]
    k = min(per_source, n_products)
    for source in (item, near, pop, segment):
        masked = np.where(excluded, -np.inf, source)
        top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
        np.put_along_axis(choose, top, True, axis=1)
    choose &= ~excluded
    r, c = np.nonzero(choose)

    def rank_of(source: np.ndarray) -> np.ndarray:
        masked = np.where(excluded, -np.inf, source)
        order = np.argsort(-masked, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(
            ranks, order, np.arange(n_products)[None, :].repeat(len(order), 0), axis=1
        )
        return ranks

    products = history.products.set_index("product_id")
    category = (
        products["category"].reindex(owned.products).fillna("?").astype(str).to_numpy()
        if "category" in products
        else np.array(["?"] * n_products)
    )
    cat_codes, cat_uniques = pd.factorize(category)
    cat_onehot = np.zeros((n_products, len(cat_uniques)), dtype=np.float32)
    cat_onehot[np.arange(n_products), cat_codes] = 1.0
    owned_count = values.sum(axis=1)
    cat_share = (values @ cat_onehot) / np.maximum(owned_count[:, None], 1)

    frame = pd.DataFrame(
        {
            "store_id": owned.stores[rows][r],
            "product_id": owned.products[c],
            "item_knn": item[r, c] / np.maximum(owned_count[r], 1),
            "item_knn_rank": rank_of(item)[r, c],
            "store_knn": near[r, c],
            "store_knn_rank": rank_of(near)[r, c],
            "popularity": pop[r, c],
            "segment_popularity": segment[r, c],
            "region_popularity": region[r, c],
            "category_share": cat_share[r, cat_codes[c]],
            "owned_count": owned_count[r],
            "recent_popularity": recent_pop[c],
        }
    )
    return frame


def new_products_truth(history: History, cutoff: int, end: int) -> pd.DataFrame:
    """(store_id, product_id) first bought in (cutoff, end] by stores that ordered before."""
    before = history.lines[history.lines["day"] <= cutoff]
    after = history.between(cutoff, end)[["store_id", "product_id"]].drop_duplicates()
    after = after[after["store_id"].isin(before["store_id"].unique())]
    owned = pd.MultiIndex.from_frame(before[["store_id", "product_id"]].drop_duplicates())
    return after[~pd.MultiIndex.from_frame(after).isin(owned)].reset_index(drop=True)


def _log_features(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(x, 0))


class UpsellModel:
    """Ranks never-bought products per store (logistic regression over the candidate features)."""

    def __init__(
        self, *, seed: int = 0, n_cutoffs: int = 3, step: int = 30, max_stores: int = 3000
    ):
        self.seed = seed
        self.n_cutoffs = n_cutoffs
        self.step = step
        self.max_stores = max_stores
        self.classifier: Pipeline | None = None

    def fit(self, history: History, cutoff: int) -> UpsellModel:
        history = history.until(cutoff)
        rng = np.random.default_rng(self.seed)
        frames = []
        for k in range(self.n_cutoffs):
            t = cutoff - WINDOW - k * self.step
            if t <= history.first_day + 60:
                break
            past = history.until(t)
            stores = past.lines["store_id"].unique()
            if len(stores) > self.max_stores:
                stores = rng.choice(stores, self.max_stores, replace=False)
            cand = upsell_candidates(past, t, stores=stores)
            truth = new_products_truth(history, t, t + WINDOW)
            key = pd.MultiIndex.from_frame(truth)
            cand["label"] = pd.MultiIndex.from_frame(cand[["store_id", "product_id"]]).isin(key)
            frames.append(cand)
        if not frames:
            raise ValueError("not enough history to train the upsell model (under 4 months)")
        data = pd.concat(frames)
        if data["label"].nunique() < 2:
            raise ValueError("no store started a new product in the training windows")
        # A linear model on log features: new-product adoptions are rare, and in backtests
        # boosted trees overfit them while this generalises across cut-offs.
        self.classifier = make_pipeline(
            FunctionTransformer(_log_features),
            StandardScaler(),
            LogisticRegression(max_iter=1000, random_state=self.seed),
        ).fit(data[UPSELL_FEATURES].to_numpy(dtype=float), data["label"].to_numpy())
        return self

    def predict(self, history: History, cutoff: int, k: int = 20) -> pd.DataFrame:
        """Top `k` never-bought products per store with probability and the evidence."""
        if self.classifier is None:
            raise RuntimeError("the model is not trained")
        cand = upsell_candidates(history, cutoff)
        if cand.empty:
            return cand.assign(probability=[], rank=[])
        cand["probability"] = self.classifier.predict_proba(
            cand[UPSELL_FEATURES].to_numpy(dtype=float)
        )[:, 1]
        cand = cand.sort_values(
            ["store_id", "probability", "product_id"], ascending=[True, False, True]
        )
        cand["rank"] = cand.groupby("store_id").cumcount() + 1
        return cand[cand["rank"] <= k].reset_index(drop=True)


def stopped_buying(history: History, cutoff: int, *, min_purchases: int = 3) -> pd.DataFrame:
    """Products a still-active store bought regularly but not for over 3 of its usual gaps.

    Columns: store_id, product_id, n_bought, mean_gap, days_since, last_day.
    """
    stats = store_product_stats(history, cutoff)
    if stats.empty:
        return stats
    feats = store_features(history, cutoff)
    active = feats.index[feats["days_since_last"] <= 2 * feats["median_interval"].fillna(30) + 14]
    lapsed = stats[
        (stats["n_bought"] >= min_purchases)
        & (stats["days_since"] > np.maximum(3 * stats["mean_gap"], 45))
        & stats["store_id"].isin(active)
    ]
    return lapsed[["store_id", "product_id", "n_bought", "mean_gap", "days_since", "last_day"]]
