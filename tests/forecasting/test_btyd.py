"""BG/NBD and Pareto/NBD fits recover the parameters that generated the data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from forecasting.btyd import BGNBD, ParetoNBD
from forecasting.cdnow import read_cdnow, run_cdnow


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


def test_cdnow_benchmark_runs_on_a_small_file(tmp_path: Path) -> None:
    # Customers who buy at Poisson rates and may drop out after each purchase (BG/NBD-shaped),
    # first purchases in the first quarter of 1997, followed for 78 weeks.
    rng = np.random.default_rng(3)
    start = dt.date(1997, 1, 1)
    rows = []
    for i in range(200):
        first = start + dt.timedelta(days=int(rng.integers(0, 90)))
        rate, drop = rng.gamma(0.5, 1 / 4.0), rng.beta(0.8, 2.5)
        week, weeks = 0.0, [0.0]
        while rng.random() > drop:
            week += rng.exponential(1 / max(rate, 1e-3))
            if week > 70:
                break
            weeks.append(week)
        for w in weeks:
            day = first + dt.timedelta(days=int(w * 7))
            rows.append(f" {i:05d} {i % 100:04d} {day:%Y%m%d}  1   12.50")
    path = tmp_path / "CDNOW_sample.txt"
    path.write_text("\n".join(rows) + "\n")
    assert read_cdnow(path)["customer_id"].nunique() == 200
    result = run_cdnow(path)
    summary = result["summary"]
    for name in ("model", "bg_nbd", "pareto_nbd", "zero"):
        assert summary[f"repeat_purchases/{name}"]["rmse"] >= 0
    assert summary["repeat_purchases/zero"]["total_error_pct"] == -100.0
    assert 0 <= summary["buys_again/recency"]["auc"] <= 1
    assert result["fits"]["bg_nbd"]["r"] > 0
