"""Probability calibration stored as data: Platt coefficients or isotonic breakpoints.

Training fits a calibrator on out-of-fold margins; serving applies it from `metadata.json`, so no
pickled estimator is ever loaded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["platt", "isotonic"]


@dataclass(frozen=True)
class Calibration:
    """Maps a raw xgboost margin (log-odds) to a calibrated probability."""

    method: Method
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, margin: np.ndarray | float) -> np.ndarray:
        m = np.asarray(margin, dtype=np.float64)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * m + self.b)))
        return np.interp(m, self.x, self.y)

    def to_json(self) -> dict[str, Any]:
        if self.method == "platt":
            return {
                "method": "platt",
                "input": "xgboost margin (log-odds)",
                "formula": "p = 1 / (1 + exp(-(a * margin + b)))",
                "a": self.a,
                "b": self.b,
            }
        return {
            "method": "isotonic",
            "input": "xgboost margin (log-odds)",
            "formula": "p = linear interpolation of (x, y), clipped at the ends",
            "x": list(self.x),
            "y": list(self.y),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("method") == "platt":
            return cls("platt", a=float(data["a"]), b=float(data["b"]))
        if data.get("method") == "isotonic":
            x, y = tuple(map(float, data["x"])), tuple(map(float, data["y"]))
            if len(x) != len(y) or len(x) < 2 or any(b < a for a, b in itertools.pairwise(x)):
                raise ValueError("isotonic calibration needs increasing x and as many y")
            return cls("isotonic", x=x, y=y)
        raise ValueError(f"unknown calibration method {data.get('method')!r}")


def fit(margin: np.ndarray, y: np.ndarray, method: Method = "platt") -> Calibration:
    """Fit a calibrator on held-out margins and outcomes."""
    margin = np.asarray(margin, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if method == "platt":
        a, b = logistic_fit(margin, y)
        return Calibration("platt", a=a, b=b)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
    return Calibration(
        "isotonic",
        x=tuple(float(v) for v in iso.X_thresholds_),
        y=tuple(float(v) for v in iso.y_thresholds_),
    )


def logistic_fit(
    x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, slope: bool = True
) -> tuple[float, float]:
    """Unpenalised logistic regression y ~ b + a*x (+ offset) by Newton's method: (a, b).

    With `slope=False` only the intercept is fitted (a is returned as 1): calibration-in-the-large.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    off = np.zeros_like(x) if offset is None else np.asarray(offset, dtype=np.float64)
    design = np.column_stack([x, np.ones_like(x)]) if slope else np.ones((len(x), 1))
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        eta = design @ beta + off
        p = 1.0 / (1.0 + np.exp(-eta))
        w = p * (1 - p) + 1e-12
        grad = design.T @ (y - p)
        hess = design.T @ (design * w[:, None])
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(beta)), grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return (float(beta[0]), float(beta[1])) if slope else (1.0, float(beta[0]))
