"""When will each store order next, how likely within 7 days, and what will it buy.

Two models learnt from the store's own rhythm, both trained on examples cut from earlier
points in the history (never after the cut-off):

- `NextOrderModel`: gradient boosting on the store features predicts the days until the next
  order (absolute-error loss: the median, which is what the date MAE rewards) and, separately,
  the probability of an order within the next 7 days. For both it may pick a simpler
  candidate instead (a logistic regression or BG/NBD for the 7 days; the store's rhythm for
  regular stores, or the earlier of rhythm and model, for the date), by how each would have
  done at the latest cut-offs inside the training history.
- `BasketModel`: gradient boosting over (store, product) candidates from the store's own
  history and from what its most similar stores buy (TIFU-KNN's scores are features) ranks
  the products of the next order; the quantity is the store's recent typical quantity of that
  product (1 for a product it has not bought).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from forecasting.baselines import Matrix, TifuKnn
from forecasting.btyd import BGNBD
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


# Scores for "orders within 7 days" the model chooses from, by validation inside the training
# history: gradient boosting and a regularised logistic regression on the store features
# (recency, frequency and the due date among them), and BG/NBD's expected orders in the next
# week (a "buy till you die" model, made for sparse customer histories).
WHO_CANDIDATES = ("boosting", "logistic", "bgnbd")
# Point forecasts of the next order date chosen the same way: the boosting model's correction
# of the store's rhythm (its median); the rhythm (last order + mean interval) for regular stores
# (interval coefficient of variation at most 0.25 / 0.5) and the model for the rest; or the
# earlier of the two. The rhythm alone is the baseline it must beat, so it is only a reference.
DATE_CANDIDATES = ("boosting", "rhythm_cv_0.25", "rhythm_cv_0.5", "earlier")
VALIDATION_CUTOFFS = 4
DATE_WINDOW = 56  # the date is judged on stores that order within this many days


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _logistic() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))


def _logistic_x(frame: pd.DataFrame) -> np.ndarray:
    return np.nan_to_num(_signed_log(frame[STORE_FEATURES].to_numpy(dtype=float)), nan=0.0)


def _rfm(feats: pd.DataFrame, cutoff: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD's inputs in weeks: repeat orders, last minus first order, cut-off minus first."""
    first = feats["first_day"].to_numpy(dtype=float)
    x = feats["n_orders"].to_numpy(dtype=float) - 1
    t_x = (feats["last_day"].to_numpy(dtype=float) - first) / 7
    return x, t_x, (cutoff - first) / 7


def _fit_bgnbd(history: History, cutoff: int) -> BGNBD | None:
    """BG/NBD on every store's orders up to the cut-off (None when the fit fails)."""
    feats = store_features(history, cutoff)
    if len(feats) < 10:
        return None
    try:
        model = BGNBD().fit(*_rfm(feats, cutoff))
    except (ValueError, FloatingPointError, ArithmeticError):
        return None
    return model


def _bgnbd_week(model: BGNBD | None, feats: pd.DataFrame, cutoff: int) -> np.ndarray:
    """Expected orders in the next week: P(still buying) x the store's posterior weekly rate.

    (Over one week this is BG/NBD's conditional expectation to first order; unlike the closed
    form it stays defined when the fit puts the dropout parameters at their boundary.)
    """
    if model is None:
        return np.zeros(len(feats))
    x, t_x, big_t = _rfm(feats, cutoff)
    with np.errstate(all="ignore"):
        expected = model.p_alive(x, t_x, big_t) * (model.r + x) / (model.alpha + big_t)
    return np.nan_to_num(expected, nan=0.0, posinf=0.0)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def _cv(feats: pd.DataFrame) -> np.ndarray:
    cv = feats["std_interval"] / feats["mean_interval"].clip(lower=1)
    return cv.fillna(np.inf).to_numpy(dtype=float)


def _date_choice(name: str, boosted: np.ndarray, rhythm: np.ndarray, cv: np.ndarray) -> np.ndarray:
    if name == "boosting":
        return boosted
    if name == "rhythm":
        return rhythm
    if name == "earlier":
        return np.minimum(boosted, rhythm)
    limit = float(name.rsplit("_", 1)[1])
    return np.where(cv <= limit, rhythm, boosted)


class NextOrderModel:
    """Days to the next order and P(order within 7 days), per store with two or more orders.

    Both outputs are chosen among candidates (`WHO_CANDIDATES`, `DATE_CANDIDATES`) by rolling
    validation inside the training history: each candidate is fitted on the examples before a
    validation cut-off and scored on that cut-off, for the `validation` latest training
    cut-offs; the best on average is refitted on every example. Only orders up to the cut-off
    are read, so the choice is as honest as the fit.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        n_cutoffs: int = 8,
        step: int = 14,
        gap: int = 63,
        who_cutoffs: int = 26,
        who_step: int = 7,
        validation: int = VALIDATION_CUTOFFS,
        max_stores: int = 3000,
    ):
        self.seed = seed
        self.n_cutoffs = n_cutoffs
        self.step = step
        self.gap = gap
        self.who_cutoffs = who_cutoffs
        self.who_step = who_step
        self.validation = validation
        self.max_stores = max_stores
        self.regressor: HistGradientBoostingRegressor | None = None
        self.classifier: HistGradientBoostingClassifier | Pipeline | None = None
        self.bgnbd: BGNBD | None = None
        self.who_method = "boosting"
        self.date_method = "boosting"
        self.validation_scores: dict[str, dict[str, float]] = {}
        self.trained_until: int | None = None

    def _examples(
        self, history: History, cutoff: int, gap: int, step: int, count: int
    ) -> pd.DataFrame:
        """Store features at cut-offs `gap`, `gap + step`, ... days before `cutoff`, with the
        days to each store's next order (censored at `cutoff`, capped) and whether it came
        within 7 days. Column `at` holds the example's cut-off."""
        frames = []
        for t in _training_cutoffs(history, cutoff, gap, step, count):
            feats = store_features(history, t)
            feats = feats[feats["n_orders"] >= MIN_ORDERS]
            nxt = next_visit_after(history, t, cutoff).reindex(feats.index)
            # Not ordering before the cut-off is censored at (cutoff - t) >= gap days: capped.
            days = (nxt - t).fillna(cutoff - t).clip(upper=HORIZON_CAP)
            # Within 7 days only when an order was seen (censored at 7 days is no order).
            within_7 = (nxt - t <= 7).fillna(False).astype(bool)
            frames.append(
                feats.assign(target_days=days.to_numpy(), target_7=within_7.to_numpy(), at=t)
            )
        if not frames:
            raise ValueError("not enough history to train the next-order model (under 4 months)")
        return pd.concat(frames)

    def _sample(self, data: pd.DataFrame) -> pd.DataFrame:
        """The examples of at most `max_stores` stores (a seeded choice), to bound the cost of
        the validation fits and of the weekly who-orders examples on large distributors."""
        stores = np.unique(data.index.to_numpy())
        if len(stores) <= self.max_stores:
            return data
        rng = np.random.default_rng(self.seed)
        return data[data.index.isin(rng.choice(stores, self.max_stores, replace=False))]

    @staticmethod
    def _as_of(data: pd.DataFrame, v: int, gap: int, count: int) -> pd.DataFrame:
        """The training examples a model fitted at cut-off `v` would have: the `count` latest
        example cut-offs at least `gap` days before `v`, censored at `v`."""
        cutoffs = sorted(t for t in data["at"].unique() if t <= v - gap)[-count:]
        train = data[data["at"].isin(cutoffs)].copy()
        observed = v - train["at"].to_numpy()
        train["target_days"] = np.minimum(train["target_days"].to_numpy(), observed)
        return train

    def _regressor(self, data: pd.DataFrame) -> HistGradientBoostingRegressor:
        # Learn the correction to the store's own rhythm rather than the raw number of days:
        # a model that learns nothing falls back to the mean-interval rule.
        return HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=300,
            learning_rate=0.06,
            random_state=self.seed,
            **BOOSTING,
        ).fit(
            data[STORE_FEATURES].to_numpy(dtype=float),
            data["target_days"].to_numpy() - _rhythm_days(data),
        )

    def _classifier(
        self, name: str, data: pd.DataFrame
    ) -> HistGradientBoostingClassifier | Pipeline | None:
        y = data["target_7"].to_numpy()
        if len(np.unique(y)) < 2:
            return None
        if name == "logistic":
            return _logistic().fit(_logistic_x(data), y)
        return HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.06, random_state=self.seed, **BOOSTING
        ).fit(data[STORE_FEATURES].to_numpy(dtype=float), y)

    def _who_scores(
        self,
        name: str,
        model: HistGradientBoostingClassifier | Pipeline | None,
        feats: pd.DataFrame,
    ) -> np.ndarray:
        if model is None:
            return np.zeros(len(feats))
        x = _logistic_x(feats) if name == "logistic" else feats[STORE_FEATURES].to_numpy(float)
        return model.predict_proba(x)[:, 1]

    def _choose_who(self, history: History, data: pd.DataFrame, cutoff: int) -> str:
        """The who-orders candidate with the best mean AUC at the latest `validation` weekly
        cut-offs, each candidate fitted as it would have been at that cut-off."""
        aucs: dict[str, list[float]] = {name: [] for name in WHO_CANDIDATES}
        for j in range(self.validation):
            v = cutoff - 7 - j * self.who_step
            train = self._sample(self._as_of(data, v, 7, self.who_cutoffs))
            test = data[data["at"] == v]
            if train["at"].nunique() < 4 or len(test) < 10:
                continue
            labels = test["target_7"].to_numpy(dtype=bool)
            for name in WHO_CANDIDATES:
                if name == "bgnbd":
                    scores = _bgnbd_week(_fit_bgnbd(history, v), test, v)
                else:
                    scores = self._who_scores(name, self._classifier(name, train), test)
                aucs[name].append(_auc(labels, scores))
        means = {
            name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            for name, v in aucs.items()
        }
        self.validation_scores["who_orders_auc"] = means
        finite = {name: m for name, m in means.items() if np.isfinite(m)}
        # Ties (and no validation at all) keep the first candidate, the boosting model.
        return max(finite, key=lambda name: finite[name]) if finite else "boosting"

    def _choose_date(self, data: pd.DataFrame, cutoff: int) -> str:
        """The date candidate to use, from the errors at the latest `validation` training
        cut-offs, the model fitted as it would have been at each of them."""
        errors: dict[str, list[np.ndarray]] = {name: [] for name in (*DATE_CANDIDATES, "rhythm")}
        for j in range(self.validation):
            v = cutoff - self.gap - j * self.step
            train = self._sample(self._as_of(data, v, self.gap, self.n_cutoffs))
            test = data[(data["at"] == v) & (data["target_days"] <= DATE_WINDOW)]
            if train["at"].nunique() < 2 or len(test) < 5:
                continue
            boosted = np.clip(
                np.rint(self._regressor(train).predict(test[STORE_FEATURES].to_numpy(float)))
                + _rhythm_days(test),
                1,
                HORIZON_CAP,
            )
            rhythm = np.clip(np.rint(_rhythm_days(test)), 1, HORIZON_CAP)
            actual = test["target_days"].to_numpy(dtype=float)
            for name in errors:
                guess = _date_choice(name, boosted, rhythm, _cv(test))
                errors[name].append(np.abs(guess - actual))
        if not errors["boosting"]:
            return "boosting"
        pooled = {name: np.concatenate(e) for name, e in errors.items()}
        mae = {name: float(e.mean()) for name, e in pooled.items()}
        within = {name: float((e <= 3).mean()) for name, e in pooled.items()}
        self.validation_scores["next_date_mae"] = mae
        self.validation_scores["next_date_within_3"] = within
        # Leave the model only for a candidate better on both counts (and still below the
        # rhythm's MAE); among those, the one with the most dates within +-3 days.
        better = [
            name
            for name in DATE_CANDIDATES
            if mae[name] < min(mae["boosting"], mae["rhythm"]) and within[name] > within["boosting"]
        ]
        return max(better, key=lambda name: (within[name], -mae[name])) if better else "boosting"

    def fit(self, history: History, cutoff: int) -> NextOrderModel:
        history = history.until(cutoff)
        # Example cut-offs reach back far enough for each validation cut-off to have as many
        # training cut-offs before it as the final model.
        back = self.validation + -(-self.gap // self.step)
        data = self._examples(history, cutoff, self.gap, self.step, self.n_cutoffs + back)
        latest = self._as_of(data, cutoff, self.gap, self.n_cutoffs)
        if len(latest) < 20:
            raise ValueError("not enough stores with repeat orders to train the next-order model")
        self.date_method = self._choose_date(data, cutoff)
        self.regressor = self._regressor(latest)
        who = self._examples(history, cutoff, 7, self.who_step, self.who_cutoffs + self.validation)
        self.who_method = self._choose_who(history, who, cutoff)
        if self.who_method == "bgnbd":
            self.bgnbd = _fit_bgnbd(history, cutoff)
        else:
            self.classifier = self._classifier(
                self.who_method, self._sample(self._as_of(who, cutoff, 7, self.who_cutoffs))
            )
        self.trained_until = cutoff
        return self

    def predict(self, history: History, cutoff: int) -> pd.DataFrame:
        """Per store: days_ahead, predicted_day, p_within_7, confidence and the features.

        `p_within_7` is the chosen classifier's probability, or with BG/NBD the chance of at
        least one order if the week's orders were Poisson with the model's expected count.
        """
        if self.regressor is None:
            raise RuntimeError("the model is not trained")
        feats = store_features(history, cutoff)
        feats = feats[feats["n_orders"] >= MIN_ORDERS].copy()
        if feats.empty:
            return feats.assign(days_ahead=[], predicted_day=[], p_within_7=[], confidence=[])
        x = feats[STORE_FEATURES].to_numpy(dtype=float)
        rhythm = _rhythm_days(feats)
        boosted = np.clip(np.rint(self.regressor.predict(x) + rhythm), 1, HORIZON_CAP)
        days = _date_choice(
            self.date_method, boosted, np.clip(np.rint(rhythm), 1, HORIZON_CAP), _cv(feats)
        )
        days = np.clip(days, 1, HORIZON_CAP).astype(int)
        feats["days_ahead"] = days
        feats["predicted_day"] = cutoff + days
        if self.who_method == "bgnbd":
            # P(at least one order) if the week's orders were Poisson with BG/NBD's mean.
            feats["p_within_7"] = 1 - np.exp(-_bgnbd_week(self.bgnbd, feats, cutoff))
        elif self.classifier is not None:
            feats["p_within_7"] = self._who_scores(self.who_method, self.classifier, feats)
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
    "tifu_own",
    "tifu_neighbours",
    "tifu",
    "tifu_rank",
]
# Products a store has not bought yet, from what its nearest stores buy, ranked with its own.
NEIGHBOUR_CANDIDATES = 20


def _tifu_features(history: History, cutoff: int) -> tuple[Matrix, np.ndarray, np.ndarray]:
    """TIFU-KNN's personal vectors, its neighbours' mean and their blend (the baseline's score)."""
    tifu = TifuKnn()
    own, neighbours = tifu.components(history, cutoff)
    blended = tifu.alpha * own.values + (1 - tifu.alpha) * neighbours
    return own, neighbours, blended


def basket_candidates(
    history: History, cutoff: int, per_store: int = 60, from_neighbours: int = NEIGHBOUR_CANDIDATES
) -> pd.DataFrame:
    """(store, product) candidates with ranking features.

    Candidates are each store's own products (the `per_store` most bought, recency weighted)
    plus the `from_neighbours` products it has not bought that TIFU-KNN scores highest (what
    similar stores buy). Every candidate carries the TIFU-KNN scores as features: the store's
    own time-decayed frequency, its neighbours' and the blend, and the blend's rank in the store.
    """
    stats = store_product_stats(history, cutoff)
    if stats.empty:
        return stats.assign(**{c: [] for c in BASKET_FEATURES})
    stats = stats.sort_values(["store_id", "decayed", "n_bought"], ascending=[True, False, False])
    stats = stats[stats.groupby("store_id").cumcount() < per_store]
    own, neighbours, blended = _tifu_features(history, cutoff)
    if from_neighbours > 0 and blended.shape[1] > 0:
        unseen = np.where(own.values > 0, -np.inf, blended)
        k = min(from_neighbours, unseen.shape[1])
        top = np.argpartition(-unseen, k - 1, axis=1)[:, :k]
        extra = pd.DataFrame(
            {
                "store_id": np.repeat(own.stores, k),
                "product_id": own.products[top.ravel()],
                "score": np.take_along_axis(unseen, top, axis=1).ravel(),
            }
        )
        extra = extra[np.isfinite(extra["score"]) & (extra["score"] > 0)]
        extra = extra.drop(columns="score").assign(n_bought=0, share=0.0, decayed=0.0, in_last=0.0)
        stats = pd.concat([stats, extra], ignore_index=True)
    rows = np.searchsorted(own.stores, stats["store_id"].to_numpy())
    cols = np.searchsorted(own.products, stats["product_id"].to_numpy())
    stats["tifu_own"] = own.values[rows, cols]
    stats["tifu_neighbours"] = neighbours[rows, cols]
    stats["tifu"] = blended[rows, cols]
    stats["tifu_rank"] = stats.groupby("store_id")["tifu"].rank(ascending=False, method="first")
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
        typical = top["recent_qty"].fillna(top["mean_qty"]).fillna(1.0)
        top["quantity"] = np.maximum(1, np.rint(typical))
        return top.reset_index(drop=True)
