"""The `deterioration` service (patient-view): NEWS2 with its RCP response, the ICU model's figure, a
sepsis prompt; a card only when it matters.

The summary leads with NEWS2 and the RCP 2017 response band; the suggestion is that band's response
and never more (the model's figure is shown in the detail, labelled as the mortality of similar ICU
patients, and never escalates the response). Card level: `critical` for NEWS2 >= 7, `warning` for
NEWS2 5-6, a single NEWS2 parameter of 3 or model risk at/above its critical threshold, `info` for
model risk at/above its warning threshold alone. A separate sepsis card follows NICE NG51
(`cds.services.deterioration.sepsis`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import msgspec

from cds.hooks.cards import Action, Card, Link, Source, Suggestion, override_reason, truncate_summary
from cds.hooks.service import CDSService, ServiceLoadError
from cds.knowledge import KNOWLEDGE_DIR
from cds.services.deterioration import knowledge_files
from cds.services.deterioration.features import Finding, conditions_knowledge, feature_labels, knowledge
from cds.services.deterioration.model import NAME, Assessment, DeteriorationModel, spo2_scale
from cds.services.deterioration.news2 import chart
from cds.services.deterioration.sepsis import SepsisPrompt, rules

if TYPE_CHECKING:
    from cds.fhir.record import PatientRecord
    from cds.hooks.request import HookRequest

RESPONSE = KNOWLEDGE_DIR / "deterioration_response.json"
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
    return knowledge_files.load(RESPONSE, knowledge_files.ResponseFile)


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


class DeteriorationOptions(msgspec.Struct, kw_only=True):
    """`[services.deterioration]`."""

    # NEWS2 SpO2 scale: 1 = scale 2 only for coded hypercapnic respiratory failure; 2 = always (RCP 2017).
    spo2_scale: Literal[1, 2] = 1


class DeteriorationService(CDSService[DeteriorationOptions]):
    """NEWS2 with its RCP response, the ICU model's figure and a NICE NG51 sepsis prompt on patient-view."""

    id = NAME
    hook = "patient-view"
    Options = DeteriorationOptions
    # Added in v2: clients that send the v1 prefetch keys still get an answer (vasoactive drugs then
    # count as not given, as stays without infusion rows did in training).
    optional_prefetch = ("medicationAdministrations",)

    def __init__(
        self, options: DeteriorationOptions | None = None, *, models_dir: Path | None = None
    ) -> None:
        super().__init__(options, models_dir=models_dir)
        self.scale_options = {"spo2_scale": self.options.spo2_scale}  # as `spo2_scale()` reads them

    def load(self) -> Self:
        """The model (its manifest hashes verified) and every knowledge file the service reads, each
        checked against its declaration now, so a broken file stops the service at start-up
        (`/readyz` names it) rather than failing the first request."""
        if self.models_dir is None:
            raise ServiceLoadError("deterioration needs models_dir (the directory holding models/manifest)")
        self.model = DeteriorationModel(self.models_dir / NAME)
        self._worst = {f["name"]: f["worst"] for f in knowledge()["features"]}
        # the code lists, response, sepsis and NEWS2 tables: read now, not on a first call
        conditions_knowledge(), _response(), rules(), chart()
        return self

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        a = self.model.assess(record, scale=spo2_scale(record, self.scale_options))
        cards = [] if a.band == "low" else [self.card(a, request)]
        if a.sepsis is not None:
            cards.append(self.sepsis_card(a, a.sepsis, request))
        return cards

    def _service_request(
        self,
        a: Assessment,
        request: HookRequest,
        text: str,
        priority: str,
        code: dict[str, Any] | None,
        reason: str,
    ) -> dict[str, Any]:
        sr: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "priority": priority,
            "code": {"coding": [code], "text": text} if code else {"text": text},
            "subject": {"reference": f"Patient/{a.patient_id or request.patient_id}"},
            "reasonCode": [{"text": reason}],
        }
        return sr

    def card(self, a: Assessment, request: HookRequest) -> Card:
        """The deterioration card: NEWS2 and its RCP response first, the response as the suggestion."""
        card_url = f"{request.base_url.rstrip('/')}/models/{NAME}"
        n = a.news2
        resp = _response()["responses"][a.response]
        head = f"NEWS2 {n.total}: {resp['summary']}"
        if a.response == "urgent-ward":
            head = f"NEWS2 {n.total} with a red score: {resp['summary']}"
        tail = "" if n.complete else f" ({len(n.missing)} of 7 not charted)"
        if a.band == "info" or (a.response == "ward" and a.band == "warning"):
            tail += "; ICU model flags high risk, see detail"
        summary = truncate_summary(head + tail)
        sr = self._service_request(
            a,
            request,
            resp["text"],
            resp["priority"],
            resp.get("code"),
            f"NEWS2 {n.total} ({n.band} clinical risk)",
        )
        return Card(
            summary=summary,
            indicator=a.band,  # type: ignore[arg-type]
            source=Source(label="NEWS2 (RCP 2017) and deterioration model (cds)", url=card_url),
            kind=f"{NAME}:{a.band}",
            detail=self.detail(a),
            suggestions=(
                Suggestion(
                    label=resp["label"],
                    actions=(Action(type="create", description=resp["text"], resource=sr),),
                    is_recommended=a.response != "ward",
                ),
            ),
            override_reasons=(
                override_reason("already-reviewed", "Already reviewed by the clinical team"),
                override_reason("treatment-limits", "Treatment limits or end-of-life care in place"),
                override_reason("data-wrong", "Observations are wrong or out of date"),
            ),
            links=(Link(label="Model card: how the ICU figure is calculated", url=card_url),),
            score=round(a.risk, 4),
            model_version=a.model_version,
        )

    def sepsis_card(self, a: Assessment, p: SepsisPrompt, request: HookRequest) -> Card:
        """The NICE NG51 sepsis prompt with the bundle (lactate, blood cultures, antibiotics review)."""
        kb = rules()
        bundle = kb["bundle"]
        n = a.news2
        lact = f", lactate {_value(p.lactate)}" if p.lactate is not None else ""
        summary = truncate_summary(
            f"Suspected sepsis, {p.risk} risk (NICE NG51): NEWS2 {n.total}{lact}. Senior review and sepsis bundle"
            if p.risk == "high"
            else f"Suspected sepsis, moderate risk (NICE NG51): NEWS2 {n.total}{lact}. Review within 1 hour"
        )
        reason = f"Suspected sepsis, {p.risk} risk (NICE NG51)"
        repeat = p.lactate is not None and p.lactate.value > kb["lactate_suspect_above"]
        items = [
            (bundle["lactate"]["repeat_label" if repeat else "label"], bundle["lactate"]["code"]),
            (bundle["blood_cultures"]["label"], bundle["blood_cultures"]["code"]),
            (bundle["antibiotics"]["label"], None),
        ]
        priority = "stat" if p.risk == "high" else "urgent"
        suggestions = tuple(
            Suggestion(
                label=label,
                actions=(
                    Action(
                        type="create",
                        description=label,
                        resource=self._service_request(
                            a,
                            request,
                            code["display"] if code else bundle["antibiotics"]["text"],
                            priority,
                            code,
                            reason,
                        ),
                    ),
                ),
            )
            for label, code in items
        )
        f = a.features
        lines = [f"**Why this card:** {'; '.join(p.reasons)}.", ""]
        if p.lactate is not None:
            lines.append(f"- lactate {_value(p.lactate)}{_when(p.lactate)}")
        else:
            lines.append("- lactate: not measured in the last 24 h")
        if p.infection:
            lines.append(f"- infection recorded: {p.infection}")
        lines.append(f"- NEWS2 {n.total} ({n.band} clinical risk) from the newest observations")
        gaps = f"; not checked: {', '.join(p.qsofa_missing)}" if p.qsofa_missing else ""
        lines += [
            "",
            f"qSOFA {p.qsofa} of 3{gaps} — supporting information only: the Surviving Sepsis Campaign 2021 "
            "advises against qSOFA as a single screening tool.",
        ]
        if f.vasoactive:
            newest = f" (newest {f.vasoactive_time:%Y-%m-%d %H:%M} UTC)" if f.vasoactive_time else ""
            lines.append(f"Vasoactive drugs given in the last 24 h: {', '.join(f.vasoactive)}{newest}.")
        lines += [
            "",
            "Sepsis bundle (suggestions): measure lactate (repeat when above 2 mmol/L), blood cultures before "
            "antibiotics, review antibiotics (within 1 hour when high risk).",
            "",
            "Sources: NICE NG51 Suspected sepsis (2016, updated 2024); Evans L et al. Surviving Sepsis Campaign "
            "2021, Intensive Care Med 2021;47:1181-247. Decision support, not a diagnosis.",
        ]
        return Card(
            summary=summary,
            indicator="critical" if p.risk == "high" else "warning",
            source=Source(
                label="Sepsis prompt: NICE NG51 risk by NEWS2 (cds)",
                url=f"{request.base_url.rstrip('/')}/models/{NAME}",
            ),
            kind=f"{NAME}:sepsis",
            detail="\n".join(lines),
            suggestions=suggestions,
            selection_behavior="any",
            override_reasons=(
                override_reason("already-reviewed", "Already reviewed by the clinical team"),
                override_reason("not-sepsis", "Sepsis considered and excluded"),
                override_reason("treatment-limits", "Treatment limits or end-of-life care in place"),
            ),
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
        auroc = self.model.validation_auroc
        validated = f"; validation AUROC {auroc:.2f}, grouped by hospital" if auroc is not None else ""
        lines += [
            "",
            f"**Similar patients in the ICU database: {a.risk:.0%} in-hospital mortality** (eICU model "
            f"{a.model_version}{validated}; ICU stays, not ward patients: a comparison, not a prognosis; "
            f"flagged at {th.warning:.0%} and {th.critical:.0%}). It does not change the NEWS2 response.",
        ]
        if a.filled:
            labels = feature_labels()
            assumed = ", ".join(f"{labels.get(n, n)} {v:g} (the training median)" for n, v in a.filled)
            lines.append(f"Not charted, so assumed for the ICU figure: {assumed}.")
        if a.contributions:
            lines += ["", "**Findings that raise the ICU figure most:**"]
            for c in a.contributions:
                fnd = c.finding
                if c.name in ("ventilated", "intubated", "dialysis"):
                    lines.append(f"- {c.label} in the last 24 h")
                elif c.name in f.coded:
                    lines.append(f"- {c.label}: {f.coded[c.name]}")
                elif c.name == "vasoactive_agents":
                    newest = f" (newest {f.vasoactive_time:%Y-%m-%d %H:%M} UTC)" if f.vasoactive_time else ""
                    lines.append(f"- vasoactive drugs in the last 24 h: {', '.join(f.vasoactive)}{newest}")
                elif fnd is not None and fnd.time is None:
                    lines.append(f"- {c.label} {_value(fnd)}")
                elif fnd is not None:
                    how = WORST_WORDS.get(self._worst.get(c.name, ""), "worst")
                    lines.append(f"- {how} {c.label}: {_value(fnd)}{_when(fnd)}")
        rule_only = [x for x in ("lactate", "potassium") if x in f.latest]
        if rule_only:
            lines += [
                "",
                "**Also charted (not used by the ICU model, which had no training data for them):**",
            ]
            for x in rule_only:
                lines.append(f"- {f.latest[x].name} {_value(f.latest[x])}{_when(f.latest[x])} (newest)")
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
