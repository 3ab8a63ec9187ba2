"""BG/NBD and Pareto/NBD ("buy till you die") models, fitted by maximum likelihood with scipy.

The likelihoods and conditional expectations follow Fader, Hardie and Lee, "Counting your
customers the easy way" (2005, BG/NBD) and Fader and Hardie's note on the Pareto/NBD (2005).
Inputs per customer: x (repeat purchases in the calibration period), t_x (time of the last
purchase since the first) and T (time from the first purchase to the end of calibration), in
any one time unit (weeks, by convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special


def _check(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> None:
    if np.any(t_x > big_t + 1e-9) or np.any(x < 0):
        raise ValueError("need 0 <= t_x <= T and x >= 0 for every customer")


@dataclass
class BGNBD:
    """BG/NBD; optionally with time-invariant covariates z per customer.

    With covariates (Fader and Hardie's way of adding them), customer i's purchase-rate scale
    is alpha * exp(-z_i . gamma) (so gamma > 0 means a higher z buys more often) and the
    dropout beta parameter is b * exp(z_i . delta) (delta > 0: less likely to drop out).
    """

    r: float = 1.0
    alpha: float = 1.0
    a: float = 1.0
    b: float = 1.0
    gamma: np.ndarray | None = None
    delta: np.ndarray | None = None

    @staticmethod
    def _ll(
        r: float,
        alpha: float | np.ndarray,
        a: float,
        b: float | np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
    ) -> np.ndarray:
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + big_t)
        a3 = np.where(
            x > 0,
            special.betaln(a + 1, b + np.maximum(x, 1) - 1)
            - special.betaln(a, b)
            - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
        return a1 + np.logaddexp(a2, a3)

    @classmethod
    def log_likelihood(
        cls, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        r, alpha, a, b = params
        return cls._ll(r, alpha, a, b, x, t_x, big_t)

    def _scales(self, covariates: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-customer alpha and b."""
        if self.gamma is None or self.delta is None:
            if covariates is not None:
                raise ValueError("this BG/NBD was fitted without covariates")
            return np.full(n, self.alpha), np.full(n, self.b)
        if covariates is None:
            raise ValueError("this BG/NBD was fitted with covariates: pass them")
        z = _covariate_matrix(covariates, n, len(self.gamma))
        return self.alpha * np.exp(-z @ self.gamma), self.b * np.exp(z @ self.delta)

    def fit(
        self,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        covariates: np.ndarray | None = None,
    ) -> BGNBD:
        _check(x, t_x, big_t)

        def loss(log_params: np.ndarray) -> float:
            return -float(self.log_likelihood(np.exp(log_params), x, t_x, big_t).sum())

        best = optimize.minimize(
            loss,
            np.zeros(4),
            method="Nelder-Mead",
            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-6},
        )
        self.r, self.alpha, self.a, self.b = (float(v) for v in np.exp(best.x))
        self.gamma = self.delta = None
        if covariates is None:
            return self
        z = _covariate_matrix(covariates, len(x))
        k = z.shape[1]

        def loss_z(params: np.ndarray) -> float:
            r, alpha, a, b = np.exp(params[:4])
            value = -float(
                self._ll(
                    r,
                    alpha * np.exp(-z @ params[4 : 4 + k]),
                    a,
                    b * np.exp(z @ params[4 + k :]),
                    x,
                    t_x,
                    big_t,
                ).sum()
            )
            return value if np.isfinite(value) else 1e12

        # Start from the fit without covariates (all coefficients zero).
        best = optimize.minimize(
            loss_z,
            np.concatenate([best.x, np.zeros(2 * k)]),
            method="Nelder-Mead",
            options={"maxiter": 4000 * k, "maxfev": 4000 * k, "xatol": 1e-6, "fatol": 1e-6},
        )
        self.r, self.alpha, self.a, self.b = (float(v) for v in np.exp(best.x[:4]))
        self.gamma, self.delta = best.x[4 : 4 + k].copy(), best.x[4 + k :].copy()
        return self

    def p_alive(
        self,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        covariates: np.ndarray | None = None,
    ) -> np.ndarray:
        alpha, b = self._scales(covariates, len(x))
        r, a = self.r, self.a
        ratio = (a / (b + np.maximum(x, 1) - 1)) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
        return np.where(x > 0, 1 / (1 + ratio), 1.0)

    def expected(
        self,
        t: float,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        covariates: np.ndarray | None = None,
    ) -> np.ndarray:
        """Expected purchases in (T, T + t] for each customer."""
        alpha, b = self._scales(covariates, len(x))
        r, a = self.r, self.a
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
        ratio = np.where(
            x > 0,
            (a / (b + np.maximum(x, 1) - 1)) * ((alpha + big_t) / (alpha + t_x)) ** (r + x),
            0.0,
        )
        return first * second / (1 + ratio)


def _covariate_matrix(covariates: np.ndarray, n: int, k: int | None = None) -> np.ndarray:
    z = np.asarray(covariates, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n:
        raise ValueError(f"covariates need one row per customer ({n}), got shape {z.shape}")
    if k is not None and z.shape[1] != k:
        raise ValueError(f"the model was fitted with {k} covariates, got {z.shape[1]}")
    if not np.all(np.isfinite(z)):
        raise ValueError("covariates must be finite numbers")
    return z


@dataclass
class ParetoNBD:
    r: float = 1.0
    alpha: float = 1.0
    s: float = 1.0
    beta: float = 1.0

    @staticmethod
    def _log_a0(
        params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        r, alpha, s, beta = params
        rsx = r + s + x
        if alpha >= beta:
            second, base = s + 1, alpha
            z = lambda t: (alpha - beta) / (alpha + t)  # noqa: E731
        else:
            second, base = r + x, beta
            z = lambda t: (beta - alpha) / (beta + t)  # noqa: E731
        term_tx = np.log(special.hyp2f1(rsx, second, rsx + 1, z(t_x))) - rsx * np.log(base + t_x)
        term_t = np.log(special.hyp2f1(rsx, second, rsx + 1, z(big_t))) - rsx * np.log(base + big_t)
        # log(exp(term_tx) - exp(term_t)), term_tx >= term_t
        return term_tx + np.log1p(-np.exp(np.minimum(term_t - term_tx, -1e-12)))

    @classmethod
    def log_likelihood(
        cls, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        r, alpha, s, beta = params
        head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        first = -(r + x) * np.log(alpha + big_t) - s * np.log(beta + big_t)
        second = np.log(s / (r + s + x)) + cls._log_a0(params, x, t_x, big_t)
        return head + np.logaddexp(first, second)

    def fit(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> ParetoNBD:
        _check(x, t_x, big_t)

        def loss(log_params: np.ndarray) -> float:
            value = -float(self.log_likelihood(np.exp(log_params), x, t_x, big_t).sum())
            return value if np.isfinite(value) else 1e12

        best = optimize.minimize(
            loss,
            np.log([0.5, 10.0, 0.5, 10.0]),
            method="Nelder-Mead",
            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-6},
        )
        self.r, self.alpha, self.s, self.beta = (float(v) for v in np.exp(best.x))
        return self

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        params = np.array([r, alpha, s, beta])
        log_ratio = (
            np.log(s / (r + s + x))
            + (r + x) * np.log(alpha + big_t)
            + s * np.log(beta + big_t)
            + self._log_a0(params, x, t_x, big_t)
        )
        return 1 / (1 + np.exp(log_ratio))

    def expected(self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """Expected purchases in (T, T + t] for each customer."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        rate = (r + x) * (beta + big_t) / ((alpha + big_t) * (s - 1))
        return (
            rate
            * (1 - ((beta + big_t) / (beta + big_t + t)) ** (s - 1))
            * self.p_alive(x, t_x, big_t)
        )
