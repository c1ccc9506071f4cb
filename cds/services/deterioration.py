"""The `deterioration` service (patient-view): NEWS2 and a calibrated risk, a card only when it matters.

No card when both are low (few cards is the point). `warning` for NEWS2 5-6, a single NEWS2
parameter of 3, or risk at/above the model's warning threshold; `critical` for NEWS2 >= 7 or risk
at/above the critical threshold (thresholds come from `metadata.json`, chosen in evaluation).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cds.cards import Action, Card, Link, Source, Suggestion, override_reason, truncate_summary
from cds.features.deterioration import Finding, knowledge
from cds.scores.deterioration import NAME, Assessment, DeteriorationModel, spo2_scale
from cds.scores.news2 import chart
from cds.services.base import ServiceLoadError

if TYPE_CHECKING:
    from cds.hookrequest import HookRequest
    from cds.record import PatientRecord
    from cds.settings import Settings

RESPONSE = Path(__file__).resolve().parents[1] / "knowledge" / "deterioration_response.json"
UNIT_TEXT = {
    "mm[Hg]": " mmHg",
    "Cel": " °C",
    "/min": "/min",
    "%": "%",
    "10*3/uL": " ×10³/µL",
    "{score}": "",
    "[pH]": "",
    "mL": " mL",
    "mg/dL": " mg/dL",
    "g/dL": " g/dL",
    "mmol/L": " mmol/L",
    "L/min": " L/min",
    "a": " years",
    "1": "",
}
WORST_WORDS = {"max": "highest", "min": "lowest", "furthest": "most abnormal", "sum": "24 h total"}
NEWS2_ROWS = (
    ("respiratory_rate", "Respiration rate", "respiratory_rate"),
    ("spo2", "SpO2", "spo2"),
    ("oxygen", "Air or oxygen", None),
    ("systolic_bp", "Systolic BP", "systolic_bp"),
    ("pulse", "Pulse", "heart_rate"),
    ("consciousness", "Consciousness", None),
    ("temperature", "Temperature", "temperature"),
)


@lru_cache(maxsize=1)
def _response() -> dict[str, Any]:
    return json.loads(RESPONSE.read_text())


def _value(f: Finding) -> str:
    v = f.value
    text = (
        f"{v:.0f}"
        if abs(v - round(v)) < 1e-9 or abs(v) >= 100
        else f"{v:.1f}"
        if abs(v) >= 10
        else f"{v:.2g}"
    )
    return text + UNIT_TEXT.get(f.unit, f" {f.unit}")


def _when(f: Finding) -> str:
    return f" at {f.time:%Y-%m-%d %H:%M} UTC" if f.time is not None else ""


class DeteriorationService:
    """NEWS2 + calibrated in-hospital death risk on patient-view."""

    id = NAME

    def __init__(self, settings: Settings) -> None:
        self.options = dict(settings.service_options(self.id))
        if self.options.get("spo2_scale", 1) not in (1, 2):
            raise ServiceLoadError("services.deterioration.spo2_scale must be 1 or 2")
        self.model = DeteriorationModel(Path(settings.models_dir) / NAME)  # verifies the manifest hashes
        self._worst = {f["name"]: f["worst"] for f in knowledge()["features"]}

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        a = self.model.assess(record, scale=spo2_scale(record, self.options))
        if a.band == "low":
            return []
        return [self.card(a, request)]

    def card(self, a: Assessment, request: HookRequest) -> Card:
        """The warning or critical card of an assessment."""
        card_url = f"{request.base_url.rstrip('/')}/models/{NAME}"
        n = a.news2
        word = "Critical" if a.band == "critical" else "Warning"
        summary = truncate_summary(  # an incomplete NEWS2 is said in the detail, where the gaps are named
            f"{word}: NEWS2 {n.total} ({n.band}), {a.risk:.0%} risk of in-hospital death. "
            + ("Urgent review" if a.band == "critical" else "Review soon")
        )
        cfg = _response()["service_request"]
        patient_ref = f"Patient/{a.patient_id or request.patient_id}"
        service_request = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "priority": cfg["priority"][a.band],
            "code": {"coding": [cfg["code"]], "text": cfg["text"]},
            "subject": {"reference": patient_ref},
            "reasonCode": [{"text": f"NEWS2 {n.total} ({n.band}); model risk {a.risk:.0%}"}],
        }
        return Card(
            summary=summary,
            indicator="critical" if a.band == "critical" else "warning",
            source=Source(label="NEWS2 and deterioration model (cds)", url=card_url),
            kind=f"{NAME}:{a.band}",
            detail=self.detail(a),
            suggestions=(
                Suggestion(
                    label="Request rapid-response team review",
                    actions=(Action(type="create", description=cfg["text"], resource=service_request),),
                    is_recommended=a.band == "critical",
                ),
            ),
            override_reasons=(
                override_reason("already-reviewed", "Already reviewed by the clinical team"),
                override_reason("treatment-limits", "Treatment limits or end-of-life care in place"),
                override_reason("data-wrong", "Observations are wrong or out of date"),
            ),
            links=(Link(label="Model card: how this risk is calculated", url=card_url),),
            score=round(a.risk, 4),
            model_version=a.model_version,
        )

    def detail(self, a: Assessment) -> str:
        """Markdown: why, NEWS2 breakdown, calibrated risk, top findings, stale or missing vitals."""
        n, f = a.news2, a.features
        lines = [f"**Why this card:** {'; '.join(a.reasons)}.", ""]
        incomplete = f", incomplete: {len(n.missing)} of 7 parameters not charted" if n.missing else ""
        lines += [
            f"**NEWS2 {n.total} — {n.band} clinical risk** (SpO2 scale {n.scale}, newest values of the last 24 h"
            f"{incomplete})",
            "",
            "| Parameter | Value | Points |",
            "|---|---|---|",
        ]
        for key, label, feature in NEWS2_ROWS:
            if key not in n.parts:
                lines.append(f"| {label} | not charted | – |")
                continue
            if feature is not None:
                value = _value(f.latest[feature]) + _when(f.latest[feature])
            elif key == "oxygen":
                value = "oxygen" if f.on_oxygen else "air"
            else:
                level, t, how = f.consciousness  # type: ignore[misc]
                if how == "ACVPU":
                    value = chart()["consciousness"]["names"].get(level, level)
                else:  # derived from GCS: say so, without claiming the confusion is new
                    value = f"{'alert' if level == 'A' else 'not fully alert'} ({how})"
                value += f" at {t:%Y-%m-%d %H:%M} UTC" if t else ""
            lines.append(f"| {label} | {value} | {n.parts[key]} |")
        th = self.model.thresholds
        lines += [
            "",
            f"**Calibrated risk of in-hospital death: {a.risk:.0%}** (warning at {th.warning:.0%}, "
            f"critical at {th.critical:.0%}; model {a.model_version}, trained on ICU stays, where death "
            "stands in for deterioration).",
        ]
        if a.contributions:
            lines += ["", "**Findings that raise the risk most:**"]
            for c in a.contributions:
                fnd = c.finding
                if c.name in ("ventilated", "intubated", "dialysis"):
                    lines.append(f"- {c.label} in the last 24 h")
                elif fnd is not None and fnd.time is None:
                    lines.append(f"- {c.label} {_value(fnd)}")
                elif fnd is not None:
                    how = WORST_WORDS.get(self._worst.get(c.name, ""), "worst")
                    lines.append(f"- {how} {c.label}: {_value(fnd)}{_when(fnd)}")
        missing = [p.replace("_", " ") for p in n.missing]
        stale = [p.replace("_", " ") for p in a.stale]
        if missing or stale:
            lines.append("")
            if missing:
                lines.append(f"**Not charted in the last 24 h:** {', '.join(missing)} (NEWS2 is incomplete).")
            if stale:
                lines.append(f"**Older than {knowledge()['stale_hours']} h:** {', '.join(stale)}.")
        lines += ["", "Decision support, not a diagnosis. Check the patient and the chart."]
        return "\n".join(lines)
