"""BG/NBD and Pareto/NBD fits recover the parameters that generated the data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.btyd import BGNBD, ParetoNBD
from forecasting.cdnow import CALIBRATION_END, RepeatModel, read_cdnow, run_cdnow, summarise


def _simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    big_t = rng.uniform(27, 39, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > big_t[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, big_t


def test_bgnbd_recovers_its_parameters() -> None:
    x, t_x, big_t = _simulate_bgnbd(2000, r=0.25, alpha=4.0, a=0.8, b=2.5)
    fit = BGNBD().fit(x, t_x, big_t)
    assert fit.r == pytest.approx(0.25, rel=0.25)
    assert fit.alpha == pytest.approx(4.0, rel=0.35)
    expected = fit.expected(39, x, t_x, big_t)
    assert np.all(expected >= 0)
    # More past purchases, same recency and age: more expected purchases.
    more = fit.expected(39, np.array([1.0, 5.0]), np.array([30.0, 30.0]), np.array([35.0, 35.0]))
    assert more[1] > more[0]


def test_pareto_nbd_gives_sane_expectations() -> None:
    x, t_x, big_t = _simulate_bgnbd(500, r=0.5, alpha=10.0, a=0.8, b=2.5, seed=1)
    # The published CDNOW fit; the likelihood must be finite everywhere on real-shaped data.
    fit = ParetoNBD(r=0.553, alpha=10.578, s=0.606, beta=11.669)
    params = np.array([fit.r, fit.alpha, fit.s, fit.beta])
    assert np.all(np.isfinite(ParetoNBD.log_likelihood(params, x, t_x, big_t)))
    assert np.all(fit.expected(39, x, t_x, big_t) >= 0)
    alive = fit.p_alive(x, t_x, big_t)
    assert np.all((alive >= 0) & (alive <= 1))
    # A customer who bought often but long ago is less likely alive than one who just bought.
    pair = fit.p_alive(np.array([5.0, 5.0]), np.array([5.0, 34.0]), np.array([35.0, 35.0]))
    assert pair[0] < pair[1]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="t_x <= T"):
        BGNBD().fit(np.array([1.0]), np.array([10.0]), np.array([5.0]))


def _cdnow_like_rows(customers: int = 200, seed: int = 3) -> list[str]:
    """CDNOW_sample.txt lines for customers who buy at Poisson rates and may drop out after
    each purchase (BG/NBD-shaped), first purchases in the first quarter of 1997, 70 weeks."""
    rng = np.random.default_rng(seed)
    start = dt.date(1997, 1, 1)
    rows = []
    for i in range(customers):
        first = start + dt.timedelta(days=int(rng.integers(0, 90)))
        rate, drop = rng.gamma(0.5, 1 / 4.0), rng.beta(0.8, 2.5)
        spend = round(float(rng.lognormal(2.5, 0.5)), 2)
        week, weeks = 0.0, [0.0]
        while rng.random() > drop:
            week += rng.exponential(1 / max(rate, 1e-3))
            if week > 70:
                break
            weeks.append(week)
        for w in weeks:
            day = first + dt.timedelta(days=int(w * 7))
            rows.append(f" {i:05d} {i % 100:04d} {day:%Y%m%d}  1   {spend:.2f}")
    return rows


def test_cdnow_benchmark_runs_on_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "CDNOW_sample.txt"
    path.write_text("\n".join(_cdnow_like_rows()) + "\n")
    assert read_cdnow(path)["customer_id"].nunique() == 200
    result = run_cdnow(path)
    summary = result["summary"]
    for name in ("model", "bg_nbd", "pareto_nbd", "bg_nbd_spend", "zero"):
        assert summary[f"repeat_purchases/{name}"]["rmse"] >= 0
    assert summary["repeat_purchases/zero"]["total_error_pct"] == -100.0
    for name in ("model", "recency", "frequency", "bg_nbd", "pareto_nbd", "bg_nbd_spend"):
        assert 0 <= summary[f"buys_again/{name}"]["auc"] <= 1
    assert result["fits"]["bg_nbd"]["r"] > 0
    # The calibration windows all lie inside the calibration period.
    windows = result["fits"]["model"]["inner_windows"]
    assert len(windows) >= 2
    for window in windows:
        end = dt.date.fromisoformat(window["cutoff"]) + dt.timedelta(weeks=window["weeks"])
        assert end == CALIBRATION_END
    with pytest.raises(ValueError, match="holdout_weeks"):
        run_cdnow(path, holdout_weeks=0)


def _purchases(rows: list[str], tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "CDNOW_sample.txt"
    path.write_text("\n".join(rows) + "\n")
    return read_cdnow(path)


def test_repeat_model_never_uses_purchases_after_the_cut_off(tmp_path: Path) -> None:
    purchases = _purchases(_cdnow_like_rows(), tmp_path)
    model = RepeatModel().fit(purchases, CALIBRATION_END)
    # Rewrite everything after the cut-off: twice as many purchases, other amounts.
    later = purchases[purchases["date"] > pd.Timestamp(CALIBRATION_END)]
    extra = later.assign(date=later["date"] + pd.Timedelta(days=1), dollars=later["dollars"] * 3)
    changed = pd.concat([purchases, extra], ignore_index=True)
    again = RepeatModel().fit(changed, CALIBRATION_END)
    assert again.factor == model.factor
    assert again.windows == model.windows
    cohort = summarise(purchases, CALIBRATION_END)
    np.testing.assert_array_equal(again.predict(cohort, 39), model.predict(cohort, 39))
    # The same input gives the same model.
    np.testing.assert_array_equal(
        RepeatModel().fit(purchases, CALIBRATION_END).predict(cohort, 39),
        model.predict(cohort, 39),
    )


def test_repeat_model_calibration_follows_the_inner_windows(tmp_path: Path) -> None:
    purchases = _purchases(_cdnow_like_rows(seed=5), tmp_path)
    plain = RepeatModel().fit(purchases, CALIBRATION_END)
    # Customers buy twice as often in the last 24 weeks of calibration than their history says:
    # every inner window then sees more purchases than predicted, and the factor goes up.
    start = pd.Timestamp(CALIBRATION_END) - pd.Timedelta(weeks=24)
    late = purchases[
        (purchases["date"] > start) & (purchases["date"] <= start + pd.Timedelta(weeks=23))
    ]
    boosted = pd.concat([purchases, late.assign(date=late["date"] + pd.Timedelta(days=2))])
    boosted = boosted.groupby(["customer_id", "date"], as_index=False)["dollars"].sum()
    busier = RepeatModel().fit(boosted, CALIBRATION_END)
    assert busier.factor > plain.factor
    assert busier.factor > 1.0
    # With no inner window after the cohort is complete there is nothing to learn from.
    short = RepeatModel(min_horizon_weeks=40).fit(purchases, CALIBRATION_END)
    assert short.windows == [] and short.factor == 1.0
    with pytest.raises(ValueError, match="no purchases"):
        RepeatModel().fit(purchases, dt.date(1990, 1, 1))
    with pytest.raises(ValueError, match="fit the model first"):
        RepeatModel().predict(summarise(purchases, CALIBRATION_END), 39)


def test_bgnbd_spend_covariate_is_recovered() -> None:
    # Customers with a higher covariate buy faster: rate scale alpha * exp(-0.8 z).
    rng = np.random.default_rng(7)
    n = 3000
    z = rng.normal(0, 1, n)
    lam = rng.gamma(0.5, 1 / (4.0 * np.exp(-0.8 * z)))
    p = rng.beta(0.8, 2.5, n)
    big_t = rng.uniform(27, 39, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > big_t[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    fit = BGNBD().fit(x, t_x, big_t, covariates=z)
    assert fit.gamma is not None and fit.delta is not None
    assert fit.gamma[0] == pytest.approx(0.8, abs=0.2)
    assert abs(fit.delta[0]) < 0.4
    # Same history, higher covariate: more purchases expected.
    one = np.array([2.0, 2.0]), np.array([20.0, 20.0]), np.array([30.0, 30.0])
    more = fit.expected(39, *one, covariates=np.array([-1.0, 1.0]))
    assert more[1] > more[0]
    with pytest.raises(ValueError, match="with covariates"):
        fit.expected(39, *one)
    with pytest.raises(ValueError, match="one row per customer"):
        fit.expected(39, *one, covariates=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="without covariates"):
        BGNBD().fit(x, t_x, big_t).expected(39, *one, covariates=np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        BGNBD().fit(x, t_x, big_t, covariates=np.full(n, np.nan))
