"""Calibration stored as data, and the calibration metrics the evaluation reports."""

from __future__ import annotations

import numpy as np
import pytest

from cds.services.deterioration.calibration import Calibration, fit, logistic_fit
from cds.training.evaluation import at_threshold, calibration_slope_intercept


def synthetic(n: int = 20000, a: float = 1.5, b: float = -2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * x + b)))).astype(float)
    return x, y


def test_logistic_fit_recovers_known_coefficients() -> None:
    x, y = synthetic()
    a, b = logistic_fit(x, y)
    assert a == pytest.approx(1.5, abs=0.08) and b == pytest.approx(-2.0, abs=0.08)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_round_trips_through_json(method: str) -> None:
    x, y = synthetic(5000)
    cal = fit(x, y, method)
    again = Calibration.from_json(cal.to_json())
    grid = np.linspace(-4, 4, 50)
    assert np.allclose(cal.apply(grid), again.apply(grid))
    assert np.all(np.diff(again.apply(grid)) >= -1e-12)  # monotone in the margin


def test_bad_calibration_data_is_refused() -> None:
    with pytest.raises(ValueError):
        Calibration.from_json({"method": "pickle"})
    with pytest.raises(ValueError):
        Calibration.from_json({"method": "isotonic", "x": [1, 0], "y": [0.1, 0.2]})


def test_calibration_slope_and_intercept() -> None:
    x, y = synthetic()
    p = 1 / (1 + np.exp(-(1.5 * x - 2.0)))
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.06) and intercept == pytest.approx(0.0, abs=0.05)
    over = 1 / (1 + np.exp(-(3.0 * x - 2.0)))  # overconfident predictions: slope well below 1
    assert calibration_slope_intercept(y, over)[0] == pytest.approx(0.5, abs=0.05)


def test_threshold_table() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.5, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2])
    t = at_threshold(y, s, 0.5)
    assert (t["alerts"], t["alert_rate"], t["sensitivity"], t["ppv"]) == (
        3,
        0.3,
        round(2 / 3, 4),
        round(2 / 3, 4),
    )


def test_fast_auroc_and_auprc_match_scikit_learn() -> None:
    """The bootstrap's rank-based AUROC and step-wise AP equal sklearn's, ties included."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from cds.training.evaluation import _auprc, _auroc

    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(10, 800))
        y = (rng.random(n) < 0.15).astype(int)
        y[:2] = (1, 0)
        p = np.round(rng.random(n) + 0.3 * y, int(rng.integers(1, 4)))  # rounding makes ties
        assert _auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert _auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
