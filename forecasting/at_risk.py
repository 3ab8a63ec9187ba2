"""Stores whose ordering has dropped against their own rhythm: later, smaller, fewer lines.

`AtRiskModel` is a gradient-boosting classifier on the store features, trained on earlier
cut-offs to predict "in the next 8 weeks this store buys under 40% of what its own last six
months say it would". Each flagged store carries reason codes with the numbers behind them,
computed from the same features (so they can be checked with SQL on the orders table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from forecasting.features import BOOSTING, STORE_FEATURES, History, store_features, visits

WINDOW = 56
MIN_ORDERS = 3
DROP_SHARE = 0.4


def drop_labels(history: History, t: int, end: int) -> pd.Series:
    """Per store active before `t`: True when it bought < 40% of its usual in (t, t+56]."""
    v = visits(history, end)
    before = v[(v["day"] <= t) & (v["day"] > t - 182)]
    daily = before.groupby("store_id")["amount"].sum() / 182
    after = v[(v["day"] > t) & (v["day"] <= t + WINDOW)].groupby("store_id")["amount"].sum()
    expected = daily * WINDOW
    bought = after.reindex(expected.index).fillna(0)
    return bought < DROP_SHARE * expected


def reasons(row: pd.Series, currency: str = "Rs") -> list[dict[str, Any]]:
    """Reason codes with their numbers for one store's features."""
    out: list[dict[str, Any]] = []
    median = row["median_interval"]
    since = row["days_since_last"]
    if pd.notna(median) and since > 1.5 * max(median, 1):
        out.append(
            {
                "code": "late",
                "text": f"usually orders every {median:.0f} days, last order {since:.0f} days ago",
                "usual_interval_days": float(median),
                "days_since_last": float(since),
            }
        )
    if pd.notna(row["value_ratio"]) and row["value_ratio"] < 0.7:
        before = row["recent_value"] / row["value_ratio"]
        out.append(
            {
                "code": "smaller",
                "text": (
                    f"last 3 orders average {currency} {row['recent_value']:,.0f} vs "
                    f"{currency} {before:,.0f} before ({(row['value_ratio'] - 1) * 100:+.0f}%)"
                ),
                "recent_value": float(row["recent_value"]),
                "earlier_value": float(before),
            }
        )
    if pd.notna(row["lines_ratio"]) and row["lines_ratio"] < 0.7:
        before = row["recent_lines"] / row["lines_ratio"]
        out.append(
            {
                "code": "fewer_lines",
                "text": (
                    f"last 3 orders average {row['recent_lines']:.1f} products vs "
                    f"{before:.1f} before"
                ),
                "recent_lines": float(row["recent_lines"]),
                "earlier_lines": float(before),
            }
        )
    expected = row["expected_orders_91"]
    if expected >= 2 and row["orders_91"] < 0.6 * expected:
        out.append(
            {
                "code": "fewer_orders",
                "text": (
                    f"{row['orders_91']:.0f} orders in the last 91 days, usually {expected:.0f}"
                ),
                "orders_91": float(row["orders_91"]),
                "usual_orders_91": float(expected),
            }
        )
    return out


class AtRiskModel:
    """P(the store's buying drops below 40% of its own normal in the next 8 weeks)."""

    def __init__(self, *, seed: int = 0, n_cutoffs: int = 6, step: int = 28):
        self.seed = seed
        self.n_cutoffs = n_cutoffs
        self.step = step
        self.classifier: HistGradientBoostingClassifier | None = None
        self.base_rate = 0.0

    def fit(self, history: History, cutoff: int) -> AtRiskModel:
        history = history.until(cutoff)
        frames = []
        for k in range(self.n_cutoffs):
            t = cutoff - WINDOW - k * self.step
            if t <= history.first_day + 91:
                break
            feats = store_features(history, t)
            feats = feats[feats["n_orders"] >= MIN_ORDERS]
            label = drop_labels(history, t, cutoff).reindex(feats.index, fill_value=False)
            frames.append(feats.assign(label=label.astype(bool).to_numpy()))
        if not frames:
            raise ValueError("not enough history to train the at-risk model (under 5 months)")
        data = pd.concat(frames)
        self.base_rate = float(data["label"].mean())
        if data["label"].nunique() < 2:
            self.classifier = None
            return self
        self.classifier = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.06, random_state=self.seed, **BOOSTING
        ).fit(data[STORE_FEATURES].to_numpy(dtype=float), data["label"].to_numpy())
        return self

    def predict(self, history: History, cutoff: int) -> pd.DataFrame:
        """Per store with 3+ orders: risk (probability) and its features."""
        feats = store_features(history, cutoff)
        feats = feats[feats["n_orders"] >= MIN_ORDERS].copy()
        if feats.empty:
            return feats.assign(risk=[])
        if self.classifier is None:
            feats["risk"] = self.base_rate
        else:
            feats["risk"] = self.classifier.predict_proba(
                feats[STORE_FEATURES].to_numpy(dtype=float)
            )[:, 1]
        return feats

    def flagged(
        self, history: History, cutoff: int, threshold: float = 0.5, currency: str = "Rs"
    ) -> pd.DataFrame:
        """Stores at risk (risk >= threshold and at least one reason), riskiest first."""
        feats = self.predict(history, cutoff)
        if feats.empty:
            return feats.assign(reasons=[])
        feats = feats[feats["risk"] >= threshold].copy()
        feats["reasons"] = [reasons(row, currency) for _, row in feats.iterrows()]
        feats = feats[feats["reasons"].map(len) > 0]
        return feats.sort_values("risk", ascending=False)


def rhythm_baseline(history: History, cutoff: int) -> pd.Series:
    """The plain rule: risk = days since last order / the store's median interval."""
    feats = store_features(history, cutoff)
    feats = feats[feats["n_orders"] >= MIN_ORDERS]
    return (feats["days_since_last"] / feats["median_interval"].clip(lower=1)).astype(float)


def top_share(scores: pd.Series, share: float) -> np.ndarray:
    """The ids of the top `share` of scores."""
    n = max(1, int(round(len(scores) * share)))
    return scores.sort_values(ascending=False).index[:n].to_numpy()
