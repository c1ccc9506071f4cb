"""The linear part of the deterioration model: sign bounds hold, so the blend stays monotone.

Property tests on random cohorts (not the shipped model alone): whatever the data, a feature
declared "risk never falls as it rises" gets a coefficient >= 0 (<= 0 for the opposite), and the
margin of any patient moves the declared way when that feature is swept - through the log1p,
the clipping to the training range and the missing-value rule.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.services.deterioration import linear

NAMES = ["creatinine", "heart_rate_deviation", "gcs_total", "male", "ventilated"]
DIRECTIONS = [1, 1, -1, 0, 1]
TOL = 1e-9  # margins are float64 sums of ~10 terms


def _cohort(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Random patients where, on purpose, some true effects run against the declared direction."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.lognormal(0.0, 0.7, n),  # creatinine
            np.abs(rng.normal(20, 15, n)),  # heart-rate deviation
            rng.integers(3, 16, n).astype(float),  # GCS
            rng.integers(0, 2, n).astype(float),  # male
            np.where(rng.random(n) < 0.3, 1.0, np.nan),  # ventilated: 1 or missing
        ]
    )
    X[rng.random((n, 5)) < 0.2] = np.nan  # charts miss values
    signs = rng.choice([-1.0, 1.0], size=5)
    logit = -2 + np.nansum((np.nan_to_num(X) - np.nanmean(X, axis=0)) * signs * 0.1, axis=1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_coefficients_keep_the_declared_direction(seed: int) -> None:
    X, y = _cohort(seed)
    model = linear.fit(X, y, NAMES, DIRECTIONS, c=0.05)
    for term, d in zip(model.terms, DIRECTIONS, strict=True):
        assert term.coef * d >= 0 or d == 0, term.name


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), row_index=st.integers(0, 299))
def test_sweeping_a_constrained_feature_never_moves_the_margin_against_it(seed: int, row_index: int) -> None:
    X, y = _cohort(seed)
    model = linear.fit(X, y, NAMES, DIRECTIONS, c=0.05)
    row = X[row_index].copy()
    for j, d in enumerate(DIRECTIONS):
        if d == 0:
            continue
        lo, hi = np.nanmin(X[:, j]) - 5, np.nanmax(X[:, j]) + 50  # beyond the training range too
        batch = np.repeat(row[None, :], 80, axis=0)
        batch[:, j] = np.linspace(lo, hi, 80)
        steps = np.diff(model.margins(batch)) * d
        assert steps.min() >= -TOL, NAMES[j]


def test_json_round_trip_gives_the_same_margins() -> None:
    X, y = _cohort(7)
    model = linear.fit(X, y, NAMES, DIRECTIONS, c=0.05)
    again = linear.LinearModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again == model
    np.testing.assert_allclose(again.margins(X), model.margins(X), rtol=0, atol=TOL)


def test_margin_is_intercept_plus_contributions_and_missing_means_the_median() -> None:
    X, y = _cohort(11)
    model = linear.fit(X, y, NAMES, DIRECTIONS, c=0.05)
    row = X[0].copy()
    assert model.margin(row) == pytest.approx(model.intercept + model.contributions(row).sum(), abs=TOL)
    term = model.terms[0]
    row[0] = math.nan
    z = model.terms[0].z(math.nan)
    assert z == pytest.approx((term.median - term.mean) / term.sd, abs=TOL)
    # a present value equal to the (log-scale) median differs from missing only by the indicator
    row_present = row.copy()
    row_present[0] = math.expm1(term.median)
    diff = model.contributions(row)[0] - model.contributions(row_present)[0]
    assert diff == pytest.approx(term.missing_coef / term.missing_sd, abs=1e-7)


def test_blend_is_the_mean_of_the_two_log_odds() -> None:
    assert float(linear.blend(1.0, -3.0)) == -1.0
    np.testing.assert_array_equal(linear.blend(np.array([0.0, 2.0]), np.array([2.0, 2.0])), [1.0, 2.0])


def test_a_broken_linear_file_is_refused() -> None:
    X, y = _cohort(3)
    data = linear.fit(X, y, NAMES, DIRECTIONS, c=0.05).to_json()
    data["terms"][0]["sd"] = 0.0
    with pytest.raises(ValueError, match="positive sd"):
        linear.LinearModel.from_json(data)
