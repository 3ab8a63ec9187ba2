"""The named baselines and neighbour methods every model is measured against.

- next-order date: last order + the store's mean inter-order interval (clamped to the day
  after the cut-off, which can only help it);
- next basket: the store's own most-bought products, and TIFU-KNN (Hu et al., SIGIR 2020:
  time-decayed personal item-frequency vectors blended with those of the nearest stores);
- upsell: most-popular products the store does not buy, item-kNN (cosine over the
  store x product purchase matrix), and implicit-feedback ALS (Hu, Koren and Volinsky 2008,
  the `implicit` package's defaults, on purchase counts) when that package is installed;
- who will order: recency only and frequency only;
- demand: seasonal naive.

Hyper-parameters are fixed up front (the published defaults), never tuned on an evaluation
window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.features import History, store_features, visits


def mean_interval_next_day(history: History, cutoff: int) -> pd.Series:
    """Per store with two or more orders: last order day + mean interval (at least cutoff+1)."""
    f = store_features(history, cutoff)
    f = f[f["n_orders"] >= 2]
    predicted = np.rint(f["last_day"] + f["mean_interval"]).astype(int)
    return predicted.clip(lower=cutoff + 1)


def _top_k(scores: pd.DataFrame, k: int, score: str) -> pd.DataFrame:
    ordered = scores.sort_values(["store_id", score, "product_id"], ascending=[True, False, True])
    ordered = ordered[ordered.groupby("store_id").cumcount() < k].copy()
    ordered["rank"] = ordered.groupby("store_id").cumcount() + 1
    return ordered.reset_index(drop=True)


def own_most_bought(history: History, cutoff: int, k: int = 10) -> pd.DataFrame:
    """Each store's products by the number of its orders containing them (ties: most recent)."""
    lines = history.lines[history.lines["day"] <= cutoff]
    counts = (
        lines.groupby(["store_id", "product_id"])
        .agg(n=("order_id", "nunique"), last=("day", "max"))
        .reset_index()
    )
    counts["score"] = counts["n"] + counts["last"] / 1e7
    return _top_k(counts, k, "score")


@dataclass
class Matrix:
    """A dense store x product matrix with its row and column labels."""

    values: np.ndarray
    stores: np.ndarray
    products: np.ndarray

    def to_frame(self, k: int, exclude: np.ndarray | None = None) -> pd.DataFrame:
        """Top `k` products per store as store_id, product_id, score, rank."""
        scores = self.values.copy()
        if exclude is not None:
            scores[exclude] = -np.inf
        k = min(k, scores.shape[1])
        if k == 0 or scores.shape[0] == 0:
            return pd.DataFrame(columns=["store_id", "product_id", "score", "rank"])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        frame = pd.DataFrame(
            {
                "store_id": np.repeat(self.stores, k),
                "product_id": self.products[top.ravel()],
                "score": top_scores.ravel(),
                "rank": np.tile(np.arange(1, k + 1), len(self.stores)),
            }
        )
        return frame[np.isfinite(frame["score"]) & (frame["score"] > 0)].reset_index(drop=True)


def purchase_matrix(
    history: History,
    cutoff: int,
    weights: pd.Series | None = None,
    products: np.ndarray | None = None,
) -> Matrix:
    """Store x product matrix of (weighted) purchases up to the cut-off; 1/0 by default."""
    lines = history.lines[history.lines["day"] <= cutoff]
    stores = np.sort(lines["store_id"].unique())
    if products is None:
        products = np.sort(lines["product_id"].unique())
    values = np.zeros((len(stores), len(products)), dtype=np.float32)
    rows = np.searchsorted(stores, lines["store_id"].to_numpy())
    cols = np.searchsorted(products, lines["product_id"].to_numpy())
    known = (cols < len(products)) & (
        products[np.minimum(cols, len(products) - 1)] == lines["product_id"].to_numpy()
    )
    if weights is None:
        values[rows[known], cols[known]] = 1.0
    else:
        np.add.at(values, (rows[known], cols[known]), weights.to_numpy(dtype=np.float32)[known])
    return Matrix(values, stores, products)


def _normalise_rows(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms == 0, 1, norms)


def neighbour_mean(values: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """For each row, the mean of its `k` most cosine-similar other rows.

    The neighbours' rows are averaged through a sparse (row x neighbour) weight matrix, so the
    memory stays at one chunk of similarities however many columns there are.
    """
    from scipy import sparse

    unit = _normalise_rows(values)
    out = np.zeros_like(values)
    k = min(k, max(len(values) - 1, 0))
    if k == 0:
        return out
    for start in range(0, len(values), chunk):
        sims = unit[start : start + chunk] @ unit.T
        idx = np.arange(start, min(start + chunk, len(values)))
        sims[idx - start, idx] = -np.inf  # never one's own neighbour
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(len(idx)), k)
        weights = sparse.csr_matrix(
            (np.full(rows.size, 1.0 / k, dtype=values.dtype), (rows, nearest.ravel())),
            shape=(len(idx), len(values)),
        )
        out[start : start + chunk] = weights @ values
    return out


@dataclass(frozen=True)
class TifuKnn:
    """TIFU-KNN with fixed parameters (group size, within/across-group decay, k, alpha)."""

    group_size: int = 7
    within_decay: float = 0.9
    group_decay: float = 0.7
    neighbours: int = 300
    alpha: float = 0.7

    def personal_vectors(self, history: History, cutoff: int) -> Matrix:
        v = visits(history, cutoff)
        v["rank_from_end"] = v.groupby("store_id").cumcount(ascending=False)
        n_orders = v.groupby("store_id").size()
        lines = history.lines[history.lines["day"] <= cutoff]
        lines = lines.drop_duplicates(["store_id", "day", "product_id"])
        rank = lines.merge(v[["store_id", "day", "rank_from_end"]], on=["store_id", "day"])
        r = rank["rank_from_end"].to_numpy()
        groups = np.ceil(rank["store_id"].map(n_orders).to_numpy() / self.group_size)
        weights = (
            self.within_decay ** (r % self.group_size)
            * self.group_decay ** (r // self.group_size)
            / self.group_size
            / groups
        )
        return purchase_matrix(
            History(rank[history.lines.columns], history.stores, history.products),
            cutoff,
            weights=pd.Series(weights),
        )

    def components(self, history: History, cutoff: int) -> tuple[Matrix, np.ndarray]:
        """The personal vectors and the mean of each store's nearest neighbours' vectors."""
        own = self.personal_vectors(history, cutoff)
        return own, neighbour_mean(own.values, self.neighbours)

    def scores(self, history: History, cutoff: int) -> Matrix:
        own, neighbours = self.components(history, cutoff)
        blended = self.alpha * own.values + (1 - self.alpha) * neighbours
        return Matrix(blended, own.stores, own.products)

    def recommend(self, history: History, cutoff: int, k: int = 10) -> pd.DataFrame:
        return self.scores(history, cutoff).to_frame(k)


def most_popular_new(history: History, cutoff: int, k: int = 10) -> pd.DataFrame:
    """Products bought by the most stores, excluding those the store already buys."""
    owned = purchase_matrix(history, cutoff)
    popularity = owned.values.sum(axis=0, keepdims=True)
    scores = np.broadcast_to(popularity, owned.values.shape).astype(np.float32)
    return Matrix(scores, owned.stores, owned.products).to_frame(k, exclude=owned.values > 0)


def item_knn_scores(owned: Matrix, learn_from: np.ndarray | None = None) -> np.ndarray:
    """Item-kNN: sum of cosine similarities of each product to the products a store buys.

    Similarities come from `learn_from` (all stores' purchases) when given, else from `owned`.
    """
    basis = owned.values if learn_from is None else learn_from
    unit_items = _normalise_rows(basis.T)
    similarity = unit_items @ unit_items.T
    np.fill_diagonal(similarity, 0.0)
    return owned.values @ similarity


def item_knn_new(history: History, cutoff: int, k: int = 10) -> pd.DataFrame:
    """Item-kNN recommendations of products the store does not buy yet."""
    owned = purchase_matrix(history, cutoff)
    scores = item_knn_scores(owned)
    return Matrix(scores, owned.stores, owned.products).to_frame(k, exclude=owned.values > 0)


def implicit_als_new(
    history: History, cutoff: int, k: int = 10, *, seed: int = 0
) -> pd.DataFrame | None:
    """Implicit-feedback ALS recommendations of products the store does not buy yet, or None
    when the `implicit` package is not installed (`pip install mangalm[peers]`).

    The store x product matrix holds how many order lines bought each product (the confidence
    of the implicit preference); the factors, regularisation, alpha and iterations are the
    library's defaults, and one thread keeps runs reproducible.
    """
    try:
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        return None
    from scipy import sparse

    lines = history.lines[history.lines["day"] <= cutoff]
    counts = purchase_matrix(history, cutoff, weights=pd.Series(np.ones(len(lines))))
    if counts.values.size == 0:
        return Matrix(counts.values, counts.stores, counts.products).to_frame(k)
    from threadpoolctl import threadpool_limits

    # The library's own advice: BLAS threads under its solver slow it down.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(random_state=seed, num_threads=1)
        model.fit(sparse.csr_matrix(counts.values), show_progress=False)
    scores = np.asarray(model.user_factors) @ np.asarray(model.item_factors).T
    # Scores may be negative: shift so that every candidate stays rankable (to_frame keeps > 0).
    scores = scores - scores.min() + 1e-6
    return Matrix(scores.astype(np.float32), counts.stores, counts.products).to_frame(
        k, exclude=counts.values > 0
    )


def recency_score(history: History, cutoff: int) -> pd.Series:
    """Higher for stores that ordered more recently."""
    f = store_features(history, cutoff)
    return -f["days_since_last"].astype(float)


def frequency_score(history: History, cutoff: int) -> pd.Series:
    """Higher for stores with more orders."""
    f = store_features(history, cutoff)
    return f["n_orders"].astype(float)


def seasonal_naive(series: np.ndarray, horizon: int, season: int = 52) -> np.ndarray:
    """Seasonal naive for each row of a (series x weeks) matrix; naive when too short."""
    n = series.shape[1]
    if n >= season:
        idx = n - season + (np.arange(horizon) % season)
        return series[:, idx]
    return np.repeat(series[:, -1:], horizon, axis=1)
