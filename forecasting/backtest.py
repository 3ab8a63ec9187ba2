"""Rolling-origin backtests: each model against the named baselines and peers, same run.

For every cut-off the models are fitted on the history up to that day only, and scored on
what happened after it. Cut-offs step back from the end of the data so that each one has a
full evaluation window; nothing is tuned on those windows (model settings are fixed in code).

Metrics (per task, per method):
- next order date: MAE in days and the share within +-3 days, over stores with two or more
  orders that did order in the next 8 weeks;
- who will order in the next 7 days: ROC AUC and precision in the top 10% and top 20;
- next basket: recall@10 of the products in each store's next order;
- upsell: hit rate@5 and recall@10 of products first bought in the next 60 days;
- demand: WAPE and MASE of weekly forecasts 1-8 weeks ahead, overall and on the sparse
  (intermittent) series;
- at-risk: precision and recall of the flagged stores against the drops that happened (or the
  drops a data generator injected, when given).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from forecasting import baselines
from forecasting.at_risk import AtRiskModel, drop_labels, rhythm_baseline
from forecasting.demand import DemandModel, intermittent
from forecasting.features import History, from_day, weekly_series
from forecasting.next_order import BasketModel, NextOrderModel, next_basket_truth, next_visit_after
from forecasting.upsell import WINDOW as UPSELL_WINDOW
from forecasting.upsell import UpsellModel, new_products_truth

Metrics = dict[str, dict[str, float]]

NEXT_ORDER_HORIZON = 56
BASKET_HORIZON = 56
DEMAND_HORIZON = 8


def ranking_metrics(scores: pd.Series, labels: pd.Series) -> dict[str, float]:
    """AUC, precision in the top 10% and in the top 20 of `scores` against boolean `labels`."""
    labels = labels.reindex(scores.index).fillna(False).astype(bool)
    order = scores.sort_values(ascending=False, kind="stable").index
    ranked = labels.loc[order].to_numpy()
    top10 = max(1, int(round(len(ranked) * 0.1)))
    auc = (
        roc_auc_score(ranked, -np.arange(len(ranked))) if 0 < ranked.sum() < len(ranked) else np.nan
    )
    return {
        "auc": float(auc),
        "precision_top10pct": float(ranked[:top10].mean()),
        "precision_top20": float(ranked[:20].mean()),
    }


def evaluate_next_order(history: History, cutoff: int, *, seed: int = 0) -> Metrics:
    """Next-order date and who-will-order ranking at one cut-off."""
    past = history.until(cutoff)
    model = NextOrderModel(seed=seed).fit(past, cutoff)
    pred = model.predict(past, cutoff)
    end = cutoff + NEXT_ORDER_HORIZON
    actual = next_visit_after(history, cutoff, end)
    base = baselines.mean_interval_next_day(past, cutoff)
    common = pred.index.intersection(actual.index)
    out: Metrics = {}
    for name, predicted in (
        ("model", pred["predicted_day"]),
        ("mean_interval", base),
    ):
        err = (predicted.reindex(common) - actual.reindex(common)).abs()
        out[f"next_date/{name}"] = {
            "mae_days": float(err.mean()),
            "within_3_days": float((err <= 3).mean()),
            "stores": float(len(common)),
        }
    labels = (actual - cutoff <= 7).reindex(pred.index, fill_value=False).astype(bool)
    for name, score in (
        ("model", pred["p_within_7"]),
        ("recency", baselines.recency_score(past, cutoff).reindex(pred.index)),
        ("frequency", baselines.frequency_score(past, cutoff).reindex(pred.index)),
        ("mean_interval_due", -(base.reindex(pred.index) - cutoff).astype(float)),
    ):
        out[f"who_orders_7d/{name}"] = ranking_metrics(score, labels)
    return out


def recall_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> tuple[float, float]:
    """Mean recall@k and hit rate@k over the stores in `truth`."""
    top = recs[recs["rank"] <= k][["store_id", "product_id"]]
    hits = truth.merge(top, on=["store_id", "product_id"])
    per_store_hits = hits.groupby("store_id").size()
    per_store_truth = truth.groupby("store_id").size()
    recall = (per_store_hits.reindex(per_store_truth.index).fillna(0) / per_store_truth).mean()
    hit_rate = (per_store_hits.reindex(per_store_truth.index).fillna(0) > 0).mean()
    return float(recall), float(hit_rate)


def evaluate_basket(history: History, cutoff: int, *, seed: int = 0) -> Metrics:
    """Recall@10 of the next order's products."""
    past = history.until(cutoff)
    truth = next_basket_truth(history, cutoff, cutoff + BASKET_HORIZON)
    truth = truth[truth["store_id"].isin(past.lines["store_id"].unique())]
    model = BasketModel(seed=seed).fit(past, cutoff)
    out: Metrics = {}
    for name, recs in (
        ("model", model.predict(past, cutoff, k=10)),
        ("own_most_bought", baselines.own_most_bought(past, cutoff, k=10)),
        ("tifu_knn", baselines.TifuKnn().recommend(past, cutoff, k=10)),
    ):
        recall, _ = recall_at_k(recs, truth, 10)
        out[f"next_basket/{name}"] = {
            "recall_at_10": recall,
            "stores": float(truth["store_id"].nunique()),
        }
    return out


def evaluate_upsell(history: History, cutoff: int, *, seed: int = 0) -> Metrics:
    """Hit rate@5 and recall@10 of products first bought in the next 60 days."""
    past = history.until(cutoff)
    truth = new_products_truth(history, cutoff, cutoff + UPSELL_WINDOW)
    model = UpsellModel(seed=seed).fit(past, cutoff)
    out: Metrics = {}
    methods = [
        ("model", model.predict(past, cutoff, k=10)),
        ("most_popular", baselines.most_popular_new(past, cutoff, k=10)),
        ("item_knn", baselines.item_knn_new(past, cutoff, k=10)),
    ]
    als = baselines.implicit_als_new(past, cutoff, k=10, seed=seed)
    if als is not None:  # the `implicit` package is installed
        methods.append(("implicit_als", als))
    for name, recs in methods:
        _, hit5 = recall_at_k(recs, truth, 5)
        recall10, _ = recall_at_k(recs, truth, 10)
        out[f"upsell/{name}"] = {
            "hit_rate_at_5": hit5,
            "recall_at_10": recall10,
            "stores": float(truth["store_id"].nunique()),
        }
    return out


def _mase_scale(values: np.ndarray) -> np.ndarray:
    season = 52 if values.shape[1] > 60 else 1
    diffs = np.abs(values[:, season:] - values[:, :-season])
    return diffs.mean(axis=1) if diffs.shape[1] else np.zeros(len(values))


def demand_scores(forecast: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    err = np.abs(forecast - actual)
    ok = scale > 0
    return {
        "wape": float(err.sum() / max(actual.sum(), 1e-9)),
        "mase": float((err[ok].mean(axis=1) / scale[ok]).mean()) if ok.any() else float("nan"),
    }


def statsforecast_peers(
    values: np.ndarray, cutoff: int, horizon: int, *, sparse: np.ndarray
) -> dict[str, np.ndarray]:
    """Forecasts of the statsforecast peers for each row of a (series x week) matrix."""
    from statsforecast import StatsForecast
    from statsforecast.models import TSB, AutoETS, CrostonOptimized, OptimizedTheta

    n, weeks = values.shape
    dates = pd.to_datetime([from_day(cutoff - 7 * (weeks - 1 - i)) for i in range(weeks)])
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(n), weeks),
            "ds": np.tile(dates, n),
            "y": values.ravel(),
        }
    )
    season = 52 if weeks >= 104 else 1
    models = [
        AutoETS(season_length=season),
        OptimizedTheta(season_length=season),
        CrostonOptimized(),
        TSB(alpha_d=0.1, alpha_p=0.1),
    ]
    fc = StatsForecast(models=models, freq="7D", n_jobs=1).forecast(df=frame, h=horizon)
    fc = fc.sort_values(["unique_id", "ds"])

    def matrix(column: str) -> np.ndarray:
        return np.maximum(fc[column].to_numpy().reshape(n, horizon), 0)

    ets, theta = matrix("AutoETS"), matrix("OptimizedTheta")
    croston, tsb = matrix("CrostonOptimized"), matrix("TSB")
    return {
        "autoets": ets,
        "ets_theta_median": (ets + theta) / 2,
        # Croston and TSB are meant for sparse series; on the others they fall back to ETS.
        "croston": np.where(sparse[:, None], croston, ets),
        "tsb": np.where(sparse[:, None], tsb, ets),
    }


def evaluate_demand(
    history: History,
    cutoff: int,
    *,
    seed: int = 0,
    peers: bool = False,
    by_region: bool = False,
    max_series: int | None = None,
) -> Metrics:
    """WAPE and MASE of weekly demand 1-8 weeks ahead."""
    past = history.until(cutoff)
    wide = weekly_series(past, cutoff, by_region=by_region)
    end = cutoff + 7 * DEMAND_HORIZON
    future = weekly_series(history.until(end), end, by_region=by_region, weeks=DEMAND_HORIZON)
    # Evaluate series that sold in the last half year (dead products are not forecast).
    active = wide.iloc[:, -26:].sum(axis=1) > 0
    wide = wide[active]
    if max_series is not None and len(wide) > max_series:
        wide = wide.loc[
            wide.iloc[:, -26:].sum(axis=1).sort_values(ascending=False).index[:max_series]
        ]
    actual = future.reindex(index=wide.index, columns=range(-DEMAND_HORIZON + 1, 1)).fillna(0)
    actual_values = actual.to_numpy(dtype=float)
    values = wide.to_numpy(dtype=float)
    scale = _mase_scale(values)
    model = DemandModel(seed=seed).fit(wide, cutoff, horizon=DEMAND_HORIZON)
    long = model.predict(wide, cutoff, DEMAND_HORIZON)
    forecasts: dict[str, np.ndarray] = {
        "model": long["forecast"].to_numpy().reshape(DEMAND_HORIZON, len(wide)).T,
        # The model's mean on every series (its forecast uses the median on sparse ones).
        "model_mean": long["mean"].to_numpy().reshape(DEMAND_HORIZON, len(wide)).T,
        "seasonal_naive": baselines.seasonal_naive(values, DEMAND_HORIZON),
    }
    sparse = intermittent(values)
    if peers:
        forecasts.update(statsforecast_peers(values, cutoff, DEMAND_HORIZON, sparse=sparse))
    prefix = "demand_region" if by_region else "demand"
    out: Metrics = {}
    for name, fc in forecasts.items():
        scores = demand_scores(fc, actual_values, scale)
        scores["series"] = float(len(values))
        scores["sparse_series"] = float(sparse.sum())
        if sparse.any():
            sparse_scores = demand_scores(fc[sparse], actual_values[sparse], scale[sparse])
            scores["wape_sparse"] = sparse_scores["wape"]
            scores["mase_sparse"] = sparse_scores["mase"]
        out[f"{prefix}/{name}"] = scores
    return out


def evaluate_at_risk(
    history: History,
    cutoff: int,
    *,
    seed: int = 0,
    injected: set[int] | None = None,
    threshold: float = 0.5,
) -> Metrics:
    """Precision and recall of flagged stores vs realised (or injected) drops."""
    from forecasting.at_risk import WINDOW

    past = history.until(cutoff)
    model = AtRiskModel(seed=seed).fit(past, cutoff)
    flagged = set(model.flagged(past, cutoff, threshold).index)
    if injected is not None:
        truth = injected
        label = "injected"
    else:
        labels = drop_labels(history, cutoff, cutoff + WINDOW)
        truth = set(labels[labels].index)
        label = "realised"
    rule = rhythm_baseline(past, cutoff)
    # The rule flags as many stores as the model does, so the comparison is like for like.
    rule_flagged = set(rule.sort_values(ascending=False).index[: max(len(flagged), 1)])
    eligible = set(rule.index)
    truth &= eligible
    out: Metrics = {}
    for name, chosen in (("model", flagged), ("overdue_rule", rule_flagged)):
        hits = len(chosen & truth)
        out[f"at_risk_{label}/{name}"] = {
            "precision": hits / len(chosen) if chosen else float("nan"),
            "recall": hits / len(truth) if truth else float("nan"),
            "flagged": float(len(chosen)),
            "positives": float(len(truth)),
        }
    return out


TASKS: dict[str, Callable[..., Metrics]] = {
    "next_order": evaluate_next_order,
    "basket": evaluate_basket,
    "upsell": evaluate_upsell,
    "demand": evaluate_demand,
    "at_risk": evaluate_at_risk,
}


def cutoffs_for(history: History, count: int = 3, step: int = 28, horizon: int = 60) -> list[int]:
    """`count` cut-offs, `step` days apart, the latest leaving `horizon` days to evaluate."""
    last = history.last_day - horizon
    return sorted(last - k * step for k in range(count))


@dataclass
class BacktestResult:
    """Per cut-off metrics and their mean over cut-offs."""

    dataset: str
    cutoffs: list[str]
    per_cutoff: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Metric means over the cut-offs, keyed 'task/method'."""
        sums: dict[str, dict[str, list[float]]] = {}
        for entry in self.per_cutoff:
            for key, metrics in entry["metrics"].items():
                for metric, value in metrics.items():
                    sums.setdefault(key, {}).setdefault(metric, []).append(value)
        return {
            key: {
                m: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                for m, v in ms.items()
            }
            for key, ms in sums.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "cutoffs": self.cutoffs,
            "seconds": round(self.seconds, 1),
            "summary": self.summary(),
            "per_cutoff": self.per_cutoff,
        }


def run_backtest(
    history: History,
    *,
    dataset: str,
    tasks: list[str] | None = None,
    cutoffs: list[int] | None = None,
    seed: int = 0,
    peers: bool = True,
    injected: Callable[[int], set[int]] | None = None,
    progress: Callable[[str], None] | None = None,
    max_series: int | None = 400,
) -> BacktestResult:
    """Run every task at every cut-off."""
    started = time.perf_counter()
    tasks = tasks or list(TASKS)
    cutoffs = cutoffs or cutoffs_for(history)
    result = BacktestResult(dataset=dataset, cutoffs=[from_day(c).isoformat() for c in cutoffs])
    for cutoff in cutoffs:
        metrics: Metrics = {}
        for task in tasks:
            if progress:
                progress(f"{task} @ {from_day(cutoff)}")
            kwargs: dict[str, Any] = {"seed": seed}
            if task == "demand":
                kwargs.update(peers=peers, max_series=max_series)
            if task == "at_risk" and injected is not None:
                kwargs["injected"] = injected(cutoff)
            try:
                metrics.update(TASKS[task](history, cutoff, **kwargs))
            except ValueError as error:
                metrics[f"{task}/skipped"] = {"reason_code": 1.0}
                if progress:
                    progress(f"{task} skipped at {from_day(cutoff)}: {error}")
        result.per_cutoff.append({"cutoff": from_day(cutoff).isoformat(), "metrics": metrics})
    result.seconds = time.perf_counter() - started
    return result
