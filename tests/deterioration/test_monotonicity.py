"""Risk moves the way physiology does: sweeps of every monotone-constrained model input.

For real patients (eICU stays through FHIR and the serving extractor, or the fixed test patients
when the data is absent), each constrained input is swept over its plausible range with the rest
of the patient unchanged; the calibrated risk must never move against the stated direction.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from cds.fhir.record import PatientRecord
from cds.runtime.settings import REPO_ROOT
from cds.services.deterioration.features import DeteriorationFeatures, extract, presence_features, specs
from cds.services.deterioration.model import DeteriorationModel

from .fhir import NOW, obs, sick_patient, well_patient

MODEL = DeteriorationModel(REPO_ROOT / "models" / "deterioration")
CONSTRAINED = [(i, f) for i, f in enumerate(MODEL.metadata["features"]) if f.get("monotone", 0) != 0]
TOL = 1e-12  # float64 risk: equal leaves and clipped linear terms give exactly equal risk


def _grid(name: str) -> np.ndarray:
    base = name.removesuffix("_deviation")
    spec = next((s for s in specs() if s.name == base), None)
    if spec is None:  # counts, flags, age
        return np.array([0, 1, 2, 3, 5, 20, 40, 60, 80, 100], dtype=np.float32)
    hi = spec.high - spec.low if name.endswith("_deviation") else spec.high
    lo = 0.0 if name.endswith("_deviation") else spec.low
    return np.linspace(lo, hi, 60, dtype=np.float32)


def _rows() -> list[np.ndarray]:
    out = []
    for resources in (sick_patient(), well_patient()):
        out.append(extract(PatientRecord.from_resources(resources, now=NOW)).vector(MODEL.features))
    return out


def _eicu_rows(eicu_dir) -> list[np.ndarray]:
    from cds.training import eicu

    rows = []
    for k, stay in enumerate(eicu.stays(eicu_dir)):
        if k % 40 == 0:  # 39 real stays across hospitals
            rec = PatientRecord.from_resources(stay.resources, now=eicu.SCORING_TIME)
            rows.append(extract(rec, eicu.SCORING_TIME).vector(MODEL.features))
    return rows


def _sweep(rows: list[np.ndarray]) -> None:
    assert CONSTRAINED, "the shipped model declares monotone inputs"
    for row in rows:
        for i, f in CONSTRAINED:
            grid = _grid(f["name"])
            batch = np.repeat(row, len(grid), axis=0)
            batch[:, i] = grid
            risk = MODEL.calibration.apply(MODEL.margins(batch))
            steps = np.diff(risk) * f["monotone"]
            assert steps.min() >= -TOL, f"risk moves against {f['name']} (direction {f['monotone']})"


def _fixed_features() -> list[DeteriorationFeatures]:
    return [extract(PatientRecord.from_resources(r, now=NOW)) for r in (sick_patient(), well_patient())]


def _eicu_features(eicu_dir) -> list[DeteriorationFeatures]:
    from cds.training import eicu

    out = []
    for k, stay in enumerate(eicu.stays(eicu_dir)):
        if k % 40 == 0:  # 39 real stays across hospitals
            rec = PatientRecord.from_resources(stay.resources, now=eicu.SCORING_TIME)
            out.append(extract(rec, eicu.SCORING_TIME))
    return out


def _toggle(patients: list[DeteriorationFeatures]) -> None:
    """Coding a condition, procedure or vasoactive agent never moves risk against its direction:
    "not coded" (missing from the extracted values) vs coded, through the model's own row."""
    flags = [f for _, f in CONSTRAINED if f["name"] in presence_features()]
    assert {f["name"] for f in flags} >= {"chronic_kidney_disease", "metastatic_cancer", "vasoactive_agents"}
    for feats in patients:
        for f in flags:
            rows = [
                replace(feats, values={**feats.values, f["name"]: v}).vector(MODEL.features)
                for v in (math.nan, 1.0)
            ]
            risk = MODEL.calibration.apply(MODEL.margins(np.vstack(rows)))
            assert (risk[1] - risk[0]) * f["monotone"] >= -TOL, f"coding {f['name']} moves risk against it"


def test_the_model_declares_the_physiological_directions() -> None:
    d = {f["name"]: f.get("monotone") for f in MODEL.metadata["features"]}
    for name in ("creatinine", "bun", "bilirubin", "fio2", "oxygen_flow"):
        assert d[name] == 1
    assert d["gcs_total"] == -1 and d["gcs_motor"] == -1
    assert MODEL.calibration.method in ("platt", "isotonic")
    if MODEL.calibration.method == "platt":
        assert MODEL.calibration.a > 0  # calibration keeps the direction
    assert MODEL.linear is not None, "the shipped model blends the linear part"
    for term, f in zip(MODEL.linear.terms, MODEL.metadata["features"], strict=True):
        assert term.name == f["name"]
        assert term.coef * f["monotone"] >= 0, f"linear coefficient of {term.name} against its direction"


def test_sweeps_on_the_fixed_patients() -> None:
    _sweep(_rows())


@pytest.mark.data
def test_sweeps_on_real_eicu_patients(eicu_dir) -> None:
    _sweep(_eicu_rows(eicu_dir))


def test_coding_a_condition_never_lowers_the_risk_of_the_fixed_patients() -> None:
    _toggle(_fixed_features())


@pytest.mark.data
def test_coding_a_condition_never_lowers_the_risk_of_real_eicu_patients(eicu_dir) -> None:
    """The regression: a coded chronic kidney disease (and, in the trees alone, vasoactive agents)
    lowered the risk of every stay while 'not coded' was a missing value the constraints skip."""
    _toggle(_eicu_features(eicu_dir))


def test_a_condition_not_coded_enters_the_model_as_zero() -> None:
    rec = PatientRecord.from_resources(well_patient(), now=NOW)
    feats = extract(rec)
    row = feats.vector(MODEL.features)[0]
    for i, name in enumerate(MODEL.features):
        if name in presence_features() and math.isnan(feats.values.get(name, math.nan)):
            assert row[i] == 0.0, name


@pytest.mark.parametrize("code,unit,low,high", [("2160-0", "mg/dL", 0.8, 4.0), ("1975-2", "mg/dL", 0.5, 8.0)])
def test_a_worse_lab_through_fhir_never_lowers_the_risk(
    code: str, unit: str, low: float, high: float
) -> None:
    """The issue's case: same septic vitals, creatinine 0.8 -> 4.0 mg/dL must not lower the risk."""
    base = [r for r in sick_patient() if r.get("code", {}).get("coding", [{}])[0].get("code") != code]
    risks = []
    for v in np.linspace(low, high, 17):
        rec = PatientRecord.from_resources([*base, obs(code, float(v), unit, 3)], now=NOW)
        risks.append(MODEL.assess(rec).risk)
    assert all(b >= a - TOL for a, b in itertools.pairwise(risks))
    assert not math.isnan(risks[0])
