"""A sign-constrained logistic model over the same features, blended with the xgboost margin.

Why: with ~1,500 ICU stays and ~140 deaths, trees alone learn step functions that move between
hospitals; a penalised logistic model over the same (monotone) features is smoother, and the average
of the two log-odds ranks patients from unseen hospitals better than either alone (grouped
cross-validation in the model card). Each coefficient is bounded to the feature's monotone direction
(the xgboost `monotone_constraints` of `deterioration_features.json`), so the blend keeps the
promise that risk never falls as creatinine, BUN, FiO2 ... rise or GCS falls.

The model is data (`linear.json`): per feature an optional log1p, the training range it is clipped
to, the median that stands in for a missing value, a missing-value indicator, the standardisation
and the coefficient. Serving needs numpy only; fitting needs scipy (training extras).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from cds.runtime import shapes

# Right-skewed inputs (lab values spanning orders of magnitude) enter as log1p: monotone, so the sign
# constraint still means what it says.
LOG_FEATURES = frozenset(
    {"creatinine", "bun", "bilirubin", "oxygen_flow", "urine_output", "wbc_deviation", "glucose_deviation"}
)
CLIP_QUANTILES = (0.005, 0.995)  # values beyond the training range count as its edge: no extrapolation


class Term(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One feature's part of the linear predictor."""

    name: str
    log: bool
    low: float
    high: float
    median: float
    mean: float
    sd: float
    coef: float
    missing_mean: float  # the indicator's training mean and sd (0 sd: never missing in training)
    missing_sd: float
    missing_coef: float

    def z(self, x: float) -> float:
        """Transformed, clipped, standardised value; the training median when x is missing."""
        if math.isnan(x):
            return (self.median - self.mean) / self.sd
        v = math.log1p(max(x, 0.0)) if self.log else x
        return (min(max(v, self.low), self.high) - self.mean) / self.sd

    def contribution(self, x: float) -> float:
        missing = 1.0 if math.isnan(x) else 0.0
        return self.coef * self.z(x) + self.missing_coef * (missing - self.missing_mean) / self.missing_sd


KIND = "logistic regression, L2-penalised, coefficients bounded by monotone direction"
FORMULA = (
    "margin = intercept + sum(coef * z + missing_coef * (missing - missing_mean) / missing_sd); "
    "z = (clip(log1p(x) if log else x, low, high) - mean) / sd; for a missing x, z uses the median "
    "(already transformed) and missing = 1"
)


class LinearModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`linear.json`: the declared shape of the file and the model it describes."""

    terms: tuple[Term, ...]
    intercept: float
    penalty_c: float
    kind: str = KIND
    formula: str = FORMULA

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def contributions(self, row: Sequence[float]) -> np.ndarray:
        """Each feature's push on the log-odds relative to the mean training patient."""
        return np.array([t.contribution(float(x)) for t, x in zip(self.terms, row, strict=True)])

    def margin(self, row: Sequence[float]) -> float:
        return float(self.intercept + self.contributions(row).sum())

    def margins(self, X: np.ndarray) -> np.ndarray:
        return np.array([self.margin(r) for r in np.asarray(X, dtype=np.float64)])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_json(cls, data: Any) -> LinearModel:
        """The model from decoded `linear.json`; ValueError naming the problem otherwise."""
        model = shapes.convert(data, cls)
        if any(t.sd <= 0 or t.missing_sd <= 0 or not t.low <= t.high for t in model.terms):
            raise ValueError("linear model terms need positive sd and low <= high")
        return model


def _design(X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Transformed columns (NaN kept)."""
    Z = np.array(X, dtype=np.float64, copy=True)
    for j, n in enumerate(names):
        if n in LOG_FEATURES:
            Z[:, j] = np.log1p(np.maximum(Z[:, j], 0.0))
    return Z


def fit(
    X: np.ndarray, y: np.ndarray, names: Sequence[str], directions: Sequence[int], c: float
) -> LinearModel:
    """Penalised logistic fit (L-BFGS-B) with coef >= 0 for direction 1 and <= 0 for -1."""
    from scipy.optimize import minimize

    T = _design(X, names)
    missing = np.isnan(T)
    terms_in: list[dict[str, float]] = []
    cols, ind = [], []
    for j in range(T.shape[1]):
        present = T[~missing[:, j], j]
        if present.size:
            low, high = (float(q) for q in np.quantile(present, CLIP_QUANTILES))
            median = float(np.median(present))
        else:
            low = high = median = 0.0
        v = np.where(missing[:, j], median, np.clip(T[:, j], low, high))
        mean, sd = float(v.mean()), float(v.std()) or 1.0
        mm, ms = float(missing[:, j].mean()), float(missing[:, j].std()) or 1.0
        cols.append((v - mean) / sd)
        ind.append((missing[:, j] - mm) / ms)
        terms_in.append(
            {"low": low, "high": high, "median": median, "mean": mean, "sd": sd, "mm": mm, "ms": ms}
        )
    Z = np.column_stack(cols + ind)
    k = T.shape[1]
    yf = y.astype(np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = Z @ w[:-1] + w[-1]
        g = 1.0 / (1.0 + np.exp(-m)) - yf
        value = c * float(np.sum(np.logaddexp(0.0, m) - yf * m)) + 0.5 * float(w[:-1] @ w[:-1])
        return value, np.append(c * (Z.T @ g) + w[:-1], c * g.sum())

    bounds: list[tuple[float | None, float | None]] = [
        (0.0, None) if d == 1 else (None, 0.0) if d == -1 else (None, None) for d in directions
    ]
    bounds += [(None, None)] * (k + 1)
    result = minimize(
        loss,
        np.zeros(2 * k + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 10000, "gtol": 1e-9, "ftol": 1e-14},
    )
    w = result.x
    terms = tuple(
        Term(
            name=n,
            log=n in LOG_FEATURES,
            low=p["low"],
            high=p["high"],
            median=p["median"],
            mean=p["mean"],
            sd=p["sd"],
            coef=float(w[j]),
            missing_mean=p["mm"],
            missing_sd=p["ms"],
            missing_coef=float(w[k + j]),
        )
        for j, (n, p) in enumerate(zip(names, terms_in, strict=True))
    )
    return LinearModel(terms=terms, intercept=float(w[-1]), penalty_c=c)


def blend(tree_margin: np.ndarray | float, linear_margin: np.ndarray | float) -> np.ndarray:
    """The model's log-odds: the mean of the xgboost and the linear log-odds (one definition for
    training and serving; Platt calibration is fitted on this)."""
    return 0.5 * (np.asarray(tree_margin, dtype=np.float64) + np.asarray(linear_margin, dtype=np.float64))
