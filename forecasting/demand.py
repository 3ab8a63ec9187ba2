"""Weekly demand per product (and per product x region), 1-12 weeks ahead, with an interval.

One global gradient-boosting model learns from every series at once (a "direct" model: one
row per series, forecast origin and horizon). Inputs and target are divided by the series' own
recent level, so a fast mover and a slow mover share what they teach; rows are weighted by
that level, so the fit minimises the same volume-weighted error as WAPE. Intermittent demand
is handled by the features Croston and TSB use (share of zero weeks, size of non-zero weeks,
weeks since the last sale) and by the Poisson loss, which predicts a mean that may be a
fraction of a unit. The interval is the 10th-90th percentile of a negative binomial around
the model's mean, its dispersion estimated from the series' last year.

The point forecast of a regular series is that mean. An intermittent series (more than 30% zero
weeks in the last half year) is forecast by the median of its negative binomial instead: its
weeks are mostly zero or a few units, the mean (say 0.7) is a quantity that never happens, and
the median is the forecast with the smallest expected absolute error, which WAPE and MASE
score. The mean stays in the `mean` column for totals over many weeks (stock planning), where
the medians of single weeks would add up short.

Choosing per series between this model and ETS/Theta/TSB by their error on the last weeks
before the cut-off (an inner validation window, models refitted without those weeks) was
measured on development cut-offs and lost volume-weighted accuracy: eight weeks are too few to
tell methods apart per series, and the inner window's errors did not carry over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor

from forecasting.features import BOOSTING, EPOCH

MAX_HORIZON = 12
# Weeks and share of zero weeks above which a series is intermittent (as the backtest's
# "sparse products").
INTERMITTENT_WEEKS = 26
INTERMITTENT_ZERO_SHARE = 0.3
DEMAND_FEATURES = [
    "h",
    "lag1",
    "lag2",
    "lag3",
    "lag4",
    "mean4",
    "mean8",
    "mean13",
    "mean26",
    "mean52",
    "seasonal",
    "seasonal_next",
    "zero_share",
    "nonzero_mean",
    "weeks_since_sale",
    "week_of_year",
    "history_weeks",
]


def _window_mean(values: np.ndarray, end: int, width: int) -> np.ndarray:
    start = max(0, end + 1 - width)
    return values[:, start : end + 1].mean(axis=1)


def _week_of_year(day: int) -> int:
    date = np.datetime64(EPOCH) + np.timedelta64(int(day), "D")
    return int(pd.Timestamp(date).isocalendar().week)


def demand_features(values: np.ndarray, origin: int, h: int, target_day: int) -> pd.DataFrame:
    """Features for forecasting column origin+h from columns 0..origin (scaled by level)."""
    n = values.shape[0]
    level = np.maximum(_window_mean(values, origin, 26), 0.05)
    recent = values[:, max(0, origin - 25) : origin + 1]
    nonzero = recent > 0
    count_nonzero = nonzero.sum(axis=1)
    since = np.full(n, float(origin + 1))
    seen = values[:, : origin + 1] > 0
    any_sale = seen.any(axis=1)
    last_sale = origin - np.argmax(seen[:, ::-1], axis=1)
    since[any_sale] = (origin - last_sale)[any_sale]
    season_col = origin + h - 52
    columns = {
        "h": np.full(n, h, dtype=float),
        "lag1": values[:, origin] / level,
        "lag2": values[:, origin - 1] / level if origin >= 1 else np.full(n, np.nan),
        "lag3": values[:, origin - 2] / level if origin >= 2 else np.full(n, np.nan),
        "lag4": values[:, origin - 3] / level if origin >= 3 else np.full(n, np.nan),
        "mean4": _window_mean(values, origin, 4) / level,
        "mean8": _window_mean(values, origin, 8) / level,
        "mean13": _window_mean(values, origin, 13) / level,
        "mean26": _window_mean(values, origin, 26) / level,
        "mean52": _window_mean(values, origin, 52) / level,
        "seasonal": values[:, season_col] / level if season_col >= 0 else np.full(n, np.nan),
        "seasonal_next": (
            values[:, season_col + 1] / level
            if 0 <= season_col + 1 <= origin
            else np.full(n, np.nan)
        ),
        "zero_share": 1 - count_nonzero / recent.shape[1],
        "nonzero_mean": np.where(
            count_nonzero > 0, (recent.sum(axis=1) / np.maximum(count_nonzero, 1)) / level, 0.0
        ),
        "weeks_since_sale": since,
        "week_of_year": np.full(n, _week_of_year(target_day), dtype=float),
        "history_weeks": np.full(n, origin + 1, dtype=float),
    }
    frame = pd.DataFrame(columns)
    frame["level"] = level
    return frame


def _dispersion(values: np.ndarray) -> np.ndarray:
    """Negative-binomial size per series from its last 52 weeks (large = Poisson-like)."""
    window = values[:, -52:]
    mean = window.mean(axis=1)
    var = window.var(axis=1)
    excess = np.maximum(var - mean, 1e-6)
    return np.clip(mean**2 / excess, 0.05, 1e4)


def intermittent(values: np.ndarray) -> np.ndarray:
    """Series (rows) with more than 30% zero weeks in their last 26 weeks."""
    recent = values[:, -INTERMITTENT_WEEKS:]
    if recent.shape[1] == 0:
        return np.zeros(len(values), dtype=bool)
    return (recent == 0).mean(axis=1) > INTERMITTENT_ZERO_SHARE


def nbinom_quantile(q: float, mean: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Quantile `q` of a negative binomial with this mean and size (0 where the mean is 0)."""
    mean = np.maximum(np.nan_to_num(mean, nan=0.0), 0.0)
    p = size / (size + np.maximum(mean, 1e-9))
    return np.where(mean > 0, stats.nbinom.ppf(q, size, p), 0.0)


class DemandModel:
    """Global direct multi-horizon model over a (series x week) matrix ending at the cut-off."""

    def __init__(self, *, seed: int = 0, origins: int = 52, origin_step: int = 1):
        self.seed = seed
        self.origins = origins
        self.origin_step = origin_step
        self.regressor: HistGradientBoostingRegressor | None = None

    def fit(self, wide: pd.DataFrame, cutoff: int, horizon: int = MAX_HORIZON) -> DemandModel:
        """`wide` as from `weekly_series(history, cutoff)`: the last column ends on `cutoff`."""
        values = wide.to_numpy(dtype=float)
        last = values.shape[1] - 1
        frames, targets, weights = [], [], []
        for step in range(self.origins):
            for h in range(1, horizon + 1):
                origin = last - h - step * self.origin_step
                if origin < 12:
                    continue
                target_day = cutoff - 7 * (last - origin - h)
                feats = demand_features(values, origin, h, target_day)
                frames.append(feats)
                targets.append(values[:, origin + h] / feats["level"].to_numpy())
                weights.append(feats["level"].to_numpy())
        if not frames:
            raise ValueError("not enough weekly history to train the demand model (14+ weeks)")
        data = pd.concat(frames, ignore_index=True)
        self.regressor = HistGradientBoostingRegressor(
            loss="poisson", max_iter=250, learning_rate=0.06, random_state=self.seed, **BOOSTING
        ).fit(
            data[DEMAND_FEATURES].to_numpy(dtype=float),
            np.concatenate(targets),
            sample_weight=np.concatenate(weights),
        )
        return self

    def predict(self, wide: pd.DataFrame, cutoff: int, horizon: int = MAX_HORIZON) -> pd.DataFrame:
        """Long frame: series key(s), h, week_end_day, forecast, lower, upper (80% interval),
        mean and intermittent (whether the forecast is the week's median, see the module)."""
        if self.regressor is None:
            raise RuntimeError("the model is not trained")
        values = wide.to_numpy(dtype=float)
        if values.shape[1] < 1 or not np.isfinite(values).all():
            raise ValueError("weekly quantities must be finite, with at least one week")
        origin = values.shape[1] - 1
        size = _dispersion(values)
        sparse = intermittent(values)
        out = []
        for h in range(1, horizon + 1):
            feats = demand_features(values, origin, h, cutoff + 7 * h)
            mean = self.regressor.predict(feats[DEMAND_FEATURES].to_numpy(dtype=float))
            mean = np.maximum(mean * feats["level"].to_numpy(), 0.0)
            point = np.where(sparse, nbinom_quantile(0.5, mean, size), mean)
            frame = pd.DataFrame(
                {
                    "h": h,
                    "week_end_day": cutoff + 7 * h,
                    "forecast": point,
                    "lower": nbinom_quantile(0.1, mean, size),
                },
                index=wide.index,
            )
            frame["upper"] = np.maximum(nbinom_quantile(0.9, mean, size), np.maximum(point, mean))
            frame["mean"] = mean
            frame["intermittent"] = sparse
            out.append(frame)
        return pd.concat(out).reset_index()

    def predict_matrix(self, wide: pd.DataFrame, cutoff: int, horizon: int) -> np.ndarray:
        """Forecasts as a (series x horizon) matrix, for backtests."""
        long = self.predict(wide, cutoff, horizon)
        return long["forecast"].to_numpy().reshape(horizon, len(wide)).T
