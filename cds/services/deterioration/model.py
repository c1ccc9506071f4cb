"""The deterioration assessment: NEWS2 plus the calibrated model risk, with the findings behind them.

One code path for the hook (`DeteriorationService`) and batch scoring (`cds score deterioration`):
both call `DeteriorationModel.assess(record, at)` and get the same `Assessment`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import CodeSet
from cds.hooks.service import ServiceLoadError
from cds.runtime import manifest
from cds.services.deterioration import linear, sepsis
from cds.services.deterioration.calibration import Calibration
from cds.services.deterioration.features import (
    DeteriorationFeatures,
    Finding,
    base_feature,
    extract,
    feature_labels,
    feature_names,
    feature_units,
    presence_features,
)
from cds.services.deterioration.news2 import News2, chart, news2

NAME = "deterioration"
MODEL_MIN_PARAMETERS = 4  # NEWS2 parameters charted in the window before the model alone may raise a card
Band = Literal["low", "info", "warning", "critical"]
Response = Literal["ward", "urgent-ward", "urgent", "emergency"]
NEWS2_VITALS = {
    "respiratory_rate": "respiratory_rate",
    "spo2": "spo2",
    "systolic_bp": "systolic_bp",
    "pulse": "heart_rate",
    "temperature": "temperature",
}


@dataclass(frozen=True)
class Contribution:
    """One feature's push on this patient's log-odds (xgboost pred_contribs), with its charted value."""

    name: str
    label: str
    contribution: float
    finding: Finding | None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "feature": self.name,
            "label": self.label,
            "contribution": round(self.contribution, 4),
        }
        if self.finding is not None:
            d["value"] = round(self.finding.value, 3)
            d["unit"] = self.finding.unit
            if self.finding.time is not None:
                d["time"] = self.finding.time.isoformat()
        return d


@dataclass(frozen=True)
class Assessment:
    patient_id: str | None
    at: datetime
    news2: News2
    risk: float
    band: Band
    reasons: tuple[str, ...]
    contributions: tuple[Contribution, ...]
    features: DeteriorationFeatures
    stale: tuple[str, ...] = field(default=())
    model_version: str = ""
    response: Response = "ward"
    sepsis: sepsis.SepsisPrompt | None = None
    filled: tuple[tuple[str, float], ...] = ()  # inputs not charted that the model filled (name, value)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.patient_id,
            "at": self.at.isoformat(),
            "band": self.band,
            "response": self.response,
            "risk": round(self.risk, 4),
            "sepsis": self.sepsis.risk if self.sepsis else None,
            "news2": self.news2.to_json(),
            "reasons": list(self.reasons),
            "top_contributions": [c.to_json() for c in self.contributions],
            "stale": list(self.stale),
            "filled": {name: value for name, value in self.filled},
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Thresholds:
    warning: float
    critical: float


def filled(rows: np.ndarray, fills: Mapping[int, float]) -> np.ndarray:
    """Rows with a missing value of a near-always-charted input (column -> training median) filled:
    what the model learned for "missing" there came from under 1% of stays, i.e. noise. Training
    (`cds.training.deterioration`) and serving both call this."""
    if not fills:
        return rows
    out = np.array(rows, dtype=np.float32, copy=True)
    for j, v in fills.items():
        col = out[:, j]
        col[np.isnan(col)] = v
    return out


def hypercapnic_failure_codes() -> CodeSet:
    return CodeSet(
        (tuple(p) for p in chart()["scale2_conditions"]["codes"]), name="hypercapnic-respiratory-failure"
    )


class DeteriorationModel:
    """The shipped model (xgboost .ubj + metadata.json), verified against the manifest on load."""

    def __init__(self, model_dir: Path, verify: bool = True) -> None:
        import xgboost as xgb

        model_dir = Path(model_dir)
        if verify:
            manifest.verify(model_dir.parent, model_dir.name)
        try:
            self.metadata: dict[str, Any] = json.loads((model_dir / "metadata.json").read_text())
            self.booster = xgb.Booster()
            self.booster.load_model(model_dir / self.metadata.get("model_file", "model.ubj"))
            self.booster.set_param({"nthread": 1})
            self.linear: linear.LinearModel | None = None
            if self.metadata.get("linear_file"):
                data = json.loads((model_dir / self.metadata["linear_file"]).read_text())
                self.linear = linear.LinearModel.from_json(data)
            self.calibration = Calibration.from_json(self.metadata["calibration"])
            th = self.metadata["thresholds"]
            self.thresholds = Thresholds(float(th["warning"]), float(th["critical"]))
            self.features = tuple(f["name"] for f in self.metadata["features"])
            fills = self.metadata.get("filled_when_missing", {})
            self.fills = {self.features.index(n): float(v) for n, v in fills.items()}
        except (OSError, ValueError, KeyError, TypeError, xgb.core.XGBoostError) as e:
            raise ServiceLoadError(f"deterioration model in {model_dir} cannot be loaded: {e}") from None
        unknown = set(self.features) - set(feature_names())
        if unknown:
            raise ServiceLoadError(
                f"deterioration model needs features this version cannot extract: {sorted(unknown)}"
            )
        if self.booster.num_features() != len(self.features):
            raise ServiceLoadError("deterioration model and its metadata disagree on the number of features")
        if self.linear is not None and self.linear.names != self.features:
            raise ServiceLoadError("deterioration linear part and metadata disagree on the features")
        self.version = f"{self.metadata.get('version', '?')}+{self.metadata.get('model_sha256', '')[:8]}"
        try:
            auroc = self.metadata["evaluation"]["apache_stays"]["model"]["auroc"]
            self.validation_auroc: float | None = float(auroc)
        except (KeyError, TypeError, ValueError):
            self.validation_auroc = None
        self._labels = feature_labels()
        self._units = feature_units()

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """The model's log-odds per feature row: xgboost, blended with the linear part when shipped
        (inplace_predict: no DMatrix on the hot path)."""
        rows = filled(rows, self.fills)
        tree = self.booster.inplace_predict(rows, predict_type="margin", missing=np.nan).astype(np.float64)
        return tree if self.linear is None else linear.blend(tree, self.linear.margins(rows))

    def risk(self, row: np.ndarray) -> float:
        """Calibrated probability for one feature row."""
        return float(self.calibration.apply(self.margins(row)[0]))

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the margin (xgboost SHAP values, bias dropped; blended with the
        linear part's terms the same way the margins are)."""
        import xgboost as xgb

        row = filled(row, self.fills)
        # nthread=1: a one-row DMatrix with the default thread pool costs milliseconds of OpenMP start-up
        tree = self.booster.predict(xgb.DMatrix(row, missing=np.nan, nthread=1), pred_contribs=True)[0][:-1]
        if self.linear is None:
            return tree
        return linear.blend(tree, self.linear.contributions(row[0]))

    def assess(
        self,
        record: PatientRecord,
        at: datetime | None = None,
        scale: int = 1,
        top: int = 3,
        explain: bool | None = None,
    ) -> Assessment:
        """NEWS2, risk, band and the top risk-raising findings of a patient at `at` (default record.now).

        Contributions are computed when `explain`, by default only when the band is not low (the hook
        shows them only on a card).
        """
        feats = extract(record, at)
        score = news2(feats.news2_inputs(), scale=scale)
        row = feats.vector(self.features)
        gaps = tuple((self.features[j], v) for j, v in self.fills.items() if math.isnan(row[0, j]))
        risk = self.risk(row)
        band, reasons = self._band(score, risk)
        contribs: list[Contribution] = []
        if explain or (explain is None and band != "low"):
            values = self.contributions(row)
            for i in np.argsort(-values, kind="stable"):
                if len(contribs) >= top or values[i] <= 0.01:
                    break
                name = self.features[i]
                value = float(row[0, i])
                if math.isnan(value) or (value == 0 and name in presence_features()):
                    continue  # a missing value (or a condition not coded) is not a finding to show
                base = base_feature(name)
                finding = feats.worst.get(base) or Finding(name, value, self._units.get(name, "1"), None)
                contribs.append(Contribution(base, self._labels.get(base, base), float(values[i]), finding))
        stale = tuple(p for p, f in NEWS2_VITALS.items() if f in feats.stale([f]))
        return Assessment(
            patient_id=record.patient_id,
            at=feats.at,
            news2=score,
            risk=risk,
            band=band,
            reasons=tuple(reasons),
            contributions=tuple(contribs),
            features=feats,
            stale=stale,
            model_version=self.version,
            response=response(score),
            sepsis=sepsis.assess(feats, score),
            filled=gaps,
        )

    def _band(self, score: News2, risk: float) -> tuple[Band, list[str]]:
        """Card level: NEWS2 sets it (RCP 2017); the ICU model alone raises at most a warning."""
        b = chart()["bands"]
        reasons: list[str] = []
        if score.total >= b["high_min"]:
            reasons.append(f"NEWS2 {score.total} (7 or more)")
        elif score.total >= b["medium_min"]:
            reasons.append(f"NEWS2 {score.total} (5-6)")
        threes = [p for p, v in score.parts.items() if v >= b["single_parameter"]]
        if threes and score.total < b["high_min"]:
            reasons.append(
                "a single NEWS2 parameter scoring 3 (" + ", ".join(p.replace("_", " ") for p in threes) + ")"
            )
        # The ICU model alone speaks only about a charted patient (age and missing values are no finding).
        model_flags = len(score.parts) >= MODEL_MIN_PARAMETERS and risk >= self.thresholds.warning
        if model_flags:
            level = "critical" if risk >= self.thresholds.critical else "warning"
            reasons.append(
                f"similar ICU patients' mortality {risk:.0%} at or above the model's {level} threshold "
                f"{getattr(self.thresholds, level):.0%}"
            )
        if score.total >= b["high_min"]:
            return "critical", reasons
        if score.total >= b["medium_min"] or threes or (model_flags and risk >= self.thresholds.critical):
            return "warning", reasons
        if model_flags:
            return "info", reasons
        return "low", []


def response(score: News2) -> Response:
    """The RCP 2017 clinical response for a NEWS2 score (Chart 4)."""
    b = chart()["bands"]
    if score.total >= b["high_min"]:
        return "emergency"
    if score.total >= b["medium_min"]:
        return "urgent"
    if any(v >= b["single_parameter"] for v in score.parts.values()):
        return "urgent-ward"
    return "ward"


def spo2_scale(record: PatientRecord, options: Mapping[str, Any] | None = None) -> int:
    """NEWS2 SpO2 scale 2 only for coded hypercapnic respiratory failure or when configured (RCP 2017)."""
    if options and options.get("spo2_scale") == 2:
        return 2
    codes = hypercapnic_failure_codes()
    return 2 if any(codes.matches(c.get("code")) for c in record.conditions()) else 1
