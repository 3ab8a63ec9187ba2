"""`mangalm train`: fit every model, version it, store its predictions and its backtest metrics.

A version is a directory `MANGALM_HOME/models/<version>/` holding one joblib file per model,
`metrics.json` (a holdout backtest of each model against its baselines, fitted on the
history before the holdout window only) and `manifest.json` (what was trained on, when, and
how many predictions were written). Predictions go to the `predictions` table in one
transaction that also deletes the rows of earlier versions, so readers always see exactly one
complete version.

Prediction kinds: `next_order` (per store), `basket` (per store and product), `demand`
(per product, and per product and region in `details.region`), `at_risk` (per store) and
`upsell` (per store and product, `details.source` says why).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sqlalchemy import Connection, text
from threadpoolctl import threadpool_limits

from forecasting import backtest
from forecasting.at_risk import AtRiskModel
from forecasting.demand import MAX_HORIZON, DemandModel
from forecasting.features import from_day, load_history, to_day, weekly_series
from forecasting.next_order import BasketModel, NextOrderModel
from forecasting.upsell import UpsellModel, stopped_buying

KINDS = ("next_order", "basket", "demand", "at_risk", "upsell")
Progress = Callable[[str, float], None]
"""Called as `progress(step_description, fraction_done)`."""


class TrainingError(RuntimeError):
    """Training cannot run (no data, too little history); the message says what to do."""


@dataclass
class TrainResult:
    version: str
    as_of: dt.date
    directory: Path
    predictions: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def new_version(now: dt.datetime | None = None) -> str:
    """A sortable version name: UTC time of training."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S")


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else round(float(value), 4)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _num(value: Any, digits: int = 2) -> float | None:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or pd.isna(value):
        return None
    return round(float(value), digits)


PREDICTION_COLUMNS = (
    "kind",
    "store_id",
    "product_id",
    "predicted_date",
    "quantity",
    "probability",
    "confidence",
    "model_version",
    "details",
)


def _write_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """COPY prediction rows in (hundreds of thousands per second)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def next_order_rows(
    pred: pd.DataFrame, basket: pd.DataFrame, version: str, as_of: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows for kinds `next_order` and `basket`."""
    rows = []
    for store_id, r in pred.iterrows():
        details = {
            "as_of": from_day(as_of).isoformat(),
            "days_ahead": int(r["days_ahead"]),
            "n_orders": int(r["n_orders"]),
            "last_order_date": from_day(int(r["last_day"])).isoformat(),
            "days_since_last": int(r["days_since_last"]),
            "mean_interval_days": _num(r["mean_interval"], 1),
            "median_interval_days": _num(r["median_interval"], 1),
            "expected_value": _num(r["recent_value"]),
        }
        rows.append(
            (
                "next_order",
                int(store_id),
                None,
                from_day(int(r["predicted_day"])),
                None,
                float(np.clip(r["p_within_7"], 0, 1)),
                float(r["confidence"]),
                version,
                _json(details),
            )
        )
    predicted_day = pred["predicted_day"]
    lines = []
    for r in basket.itertuples():
        day = predicted_day.get(r.store_id)
        if day is None:
            continue
        lines.append(
            (
                "basket",
                int(r.store_id),
                int(r.product_id),
                from_day(int(day)),
                float(r.quantity),
                float(r.probability),
                float(r.probability),
                version,
                _json({"rank": int(r.rank), "times_bought": int(r.n_bought)}),
            )
        )
    return rows, lines


def demand_rows(frame: pd.DataFrame, version: str, region: bool) -> list[tuple[Any, ...]]:
    rows = []
    for r in frame.itertuples():
        week_end = from_day(int(r.week_end_day))
        details: dict[str, Any] = {
            "week_start": (week_end - dt.timedelta(days=6)).isoformat(),
            "week": int(r.h),
            "lower": _num(r.lower, 1),
            "upper": _num(r.upper, 1),
        }
        mean = getattr(r, "mean", None)
        if mean is not None and abs(float(mean) - float(r.forecast)) > 1e-9:
            # An intermittent product's point forecast is the week's median; the mean is what
            # adds up over weeks (the forecast tool's total).
            details["mean"] = round(float(mean), 3)
        if region:
            details["region"] = r.region
        rows.append(
            (
                "demand",
                None,
                int(r.product_id),
                week_end,
                round(float(r.forecast), 3),
                None,
                None,
                version,
                _json(details),
            )
        )
    return rows


def at_risk_rows(flagged: pd.DataFrame, version: str, as_of: int) -> list[tuple[Any, ...]]:
    rows = []
    for store_id, r in flagged.iterrows():
        details = {
            "as_of": from_day(as_of).isoformat(),
            "reasons": r["reasons"],
            "last_order_date": from_day(int(r["last_day"])).isoformat(),
            "n_orders": int(r["n_orders"]),
        }
        risk = float(np.clip(r["risk"], 0, 1))
        rows.append(
            ("at_risk", int(store_id), None, None, None, risk, risk, version, _json(details))
        )
    return rows


def upsell_rows(recs: pd.DataFrame, lapsed: pd.DataFrame, version: str) -> list[tuple[Any, ...]]:
    rows = []
    for r in recs.itertuples():
        details = {
            "source": "similar_stores",
            "rank": int(r.rank),
            "similar_store_share": _num(r.store_knn, 3),
            "segment_share": _num(r.segment_popularity, 3),
            "all_store_share": _num(r.popularity, 3),
        }
        p = float(r.probability)
        rows.append(
            (
                "upsell",
                int(r.store_id),
                int(r.product_id),
                None,
                None,
                p,
                p,
                version,
                _json(details),
            )
        )
    for r in lapsed.itertuples():
        details = {
            "source": "stopped_buying",
            "times_bought": int(r.n_bought),
            "usual_gap_days": _num(r.mean_gap, 1),
            "days_since": int(r.days_since),
            "last_bought": from_day(int(r.last_day)).isoformat(),
        }
        # Strength: how regular it was, fading the longer it has been gone.
        p = float(min(0.95, r.n_bought / (r.n_bought + 3)))
        rows.append(
            (
                "upsell",
                int(r.store_id),
                int(r.product_id),
                None,
                None,
                p,
                p,
                version,
                _json(details),
            )
        )
    return rows


def train_all(
    conn: Connection,
    *,
    home: Path,
    as_of: dt.date | None = None,
    seed: int = 0,
    evaluate: bool = True,
    progress: Progress | None = None,
    threads: int | None = 1,
) -> TrainResult:
    """Train every model on the orders up to `as_of` (default: the last order day).

    `threads` caps the BLAS/OpenMP threads (None: all cores). One thread is the default:
    these fits are small, and on a busy machine spinning OpenMP threads slow them tenfold.
    """
    report: Progress = progress or (lambda step, done: None)
    started = time.perf_counter()
    report("reading order history", 0.0)
    history = load_history(conn, cutoff=as_of)
    if history.is_empty():
        raise TrainingError(
            "No orders to learn from: load data first (`mangalm demo` or `mangalm import orders`)."
        )
    cutoff = to_day(as_of) if as_of is not None else history.last_day
    version = new_version()
    directory = home / "models" / version
    directory.mkdir(parents=True, exist_ok=True)
    result = TrainResult(version=version, as_of=from_day(cutoff), directory=directory)
    result.seconds["read"] = time.perf_counter() - started
    rows: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in KINDS}

    steps: list[tuple[str, Callable[[], None]]] = []

    def step_next_order() -> None:
        model = NextOrderModel(seed=seed).fit(history, cutoff)
        basket_model = BasketModel(seed=seed).fit(history, cutoff)
        pred = model.predict(history, cutoff)
        basket = basket_model.predict(history, cutoff, k=10)
        rows["next_order"], rows["basket"] = next_order_rows(pred, basket, version, cutoff)
        joblib.dump(model, directory / "next_order.joblib")
        joblib.dump(basket_model, directory / "basket.joblib")

    def step_demand() -> None:
        model = DemandModel(seed=seed)
        wide = weekly_series(history, cutoff)
        wide = wide[wide.iloc[:, -26:].sum(axis=1) > 0]
        model.fit(wide, cutoff)
        rows["demand"] = demand_rows(model.predict(wide, cutoff, MAX_HORIZON), version, False)
        regional = weekly_series(history, cutoff, by_region=True)
        if not regional.empty:
            regional = regional[regional.iloc[:, -26:].sum(axis=1) > 0]
            # The model is scale-free, so the product-level fit serves regions too.
            rows["demand"] += demand_rows(
                model.predict(regional, cutoff, MAX_HORIZON), version, True
            )
        joblib.dump(model, directory / "demand.joblib")

    def step_at_risk() -> None:
        model = AtRiskModel(seed=seed).fit(history, cutoff)
        rows["at_risk"] = at_risk_rows(model.flagged(history, cutoff), version, cutoff)
        joblib.dump(model, directory / "at_risk.joblib")

    def step_upsell() -> None:
        model = UpsellModel(seed=seed).fit(history, cutoff)
        rows["upsell"] = upsell_rows(
            model.predict(history, cutoff, k=20), stopped_buying(history, cutoff), version
        )
        joblib.dump(model, directory / "upsell.joblib")

    steps = [
        ("next order and basket", step_next_order),
        ("demand", step_demand),
        ("at-risk stores", step_at_risk),
        ("upsell", step_upsell),
    ]
    holdout = [
        ("next_order", backtest.evaluate_next_order, backtest.NEXT_ORDER_HORIZON),
        ("basket", backtest.evaluate_basket, backtest.BASKET_HORIZON),
        ("demand", backtest.evaluate_demand, 7 * backtest.DEMAND_HORIZON),
        ("at_risk", backtest.evaluate_at_risk, 56),
        ("upsell", backtest.evaluate_upsell, 60),
    ]
    total = len(steps) + (len(holdout) if evaluate else 0) + 1
    with threadpool_limits(limits=threads):
        for i, (name, run) in enumerate(steps):
            report(f"training {name}", (i + 1) / total)
            t0 = time.perf_counter()
            try:
                run()
            except ValueError as error:
                result.skipped[name] = str(error)
            result.seconds[name] = time.perf_counter() - t0
        if evaluate:
            for j, (name, evaluator, horizon) in enumerate(holdout):
                report(f"holdout backtest: {name}", (len(steps) + j + 1) / total)
                t0 = time.perf_counter()
                try:
                    result.metrics[name] = {
                        "cutoff": from_day(cutoff - horizon).isoformat(),
                        "metrics": evaluator(history.until(cutoff), cutoff - horizon, seed=seed),
                    }
                except ValueError as error:
                    result.metrics[name] = {"skipped": str(error)}
                result.seconds[f"holdout {name}"] = time.perf_counter() - t0
    report("writing predictions", (total - 1) / total)
    t0 = time.perf_counter()
    # Every kind is replaced, even one skipped this time: stale rows of an older version would
    # describe other data.
    conn.execute(text("DELETE FROM predictions WHERE kind = ANY(:kinds)"), {"kinds": list(KINDS)})
    _write_rows(conn, [row for kind in KINDS for row in rows[kind]])
    result.predictions = {kind: len(rows[kind]) for kind in KINDS}
    result.seconds["write"] = time.perf_counter() - t0
    manifest = {
        "version": version,
        "as_of": result.as_of.isoformat(),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "order_lines": len(history.lines),
        "stores": int(history.lines["store_id"].nunique()),
        "products": int(history.lines["product_id"].nunique()),
        "predictions": result.predictions,
        "skipped": result.skipped,
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (directory / "metrics.json").write_text(
        json.dumps(result.metrics, indent=2, default=_json_default)
    )
    report("done", 1.0)
    return result


def latest_version(home: Path) -> Path | None:
    """The newest trained model directory, if any."""
    root = home / "models"
    if not root.is_dir():
        return None
    versions = sorted(p for p in root.iterdir() if (p / "manifest.json").exists())
    return versions[-1] if versions else None
