"""The `care-gaps` service (patient-view): open gaps in eight CMS eCQMs, one card each.

The measures are evaluated exactly (cds/measures) over the measurement period containing today:
the calendar year (how CMS reports them; default) or the 12 months ending today. A gap is a patient
in the denominator, not excluded or excepted, and not in the numerator (in it, for the inverse
CMS122). Each card says what is due, why (the last relevant test and its date, or none found), the
measure and the guideline behind it, and offers the order that closes the gap.

Options (`[services.care-gaps]`): `period` = "calendar-year" | "rolling-12-months",
`max_cards` (default 3), `measures` (default all eight), `count_current_visit` (default true):
the visit the chart is opened in (context.encounterId) is usually still open (no period end), so
by the letter of the CQL it is not yet "during" the period and a patient's first visit of the year
would show no gaps; with this option that visit counts as ending now. `accept_legacy_bp_panel`
(default true): blood pressure panels coded with the older LOINC 55284-4 count as the QI-Core panel
85354-9. The measure engine itself (and `cds measure evaluate`) stays exact.
Decision support for clinicians, to be validated locally before clinical use; never a diagnosis.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds.cards import SEVERITY_RANK, Action, Card, Link, Source, Suggestion, override_reason, truncate_summary
from cds.fhirvalue import as_list
from cds.hookrequest import HookRequest
from cds.measures.engine import MEASURE_IDS, UnknownMeasureError, evaluate, resolve_measure
from cds.measures.period import Period
from cds.measures.result import Evidence, MeasureResult
from cds.measures.spec import MeasureSpec, load_spec
from cds.measures.valuesets import ValueSetError, default_valuesets
from cds.record import PatientRecord
from cds.services.base import ServiceLoadError
from cds.settings import Settings
from cds.terminology import LOINC, CodeSet

PERIODS = ("calendar-year", "rolling-12-months")
DEFAULT_MAX_CARDS = 3

# US Core ServiceRequest categories (SNOMED CT).
_CATEGORIES = {
    "laboratory": ("108252007", "Laboratory procedure"),
    "imaging": ("363679005", "Imaging"),
    "procedure": ("103693007", "Diagnostic procedure"),
}
SNOMED = "http://snomed.info/sct"
OVERRIDE_REASONS = (
    override_reason("patient-declined", "Patient declined"),
    override_reason("done-elsewhere", "Done elsewhere (will document)"),
    override_reason("not-applicable", "Not applicable to this patient"),
)


class CareGapsService:
    id = "care-gaps"

    def __init__(self, settings: Settings) -> None:
        opts = settings.service_options(self.id)
        self.period_kind = opts.get("period", "calendar-year")
        if self.period_kind not in PERIODS:
            raise ServiceLoadError(f"services.care-gaps.period must be one of {', '.join(PERIODS)}")
        max_cards = opts.get("max_cards", DEFAULT_MAX_CARDS)
        if isinstance(max_cards, bool) or not isinstance(max_cards, int) or max_cards < 1:
            raise ServiceLoadError("services.care-gaps.max_cards must be a whole number of at least 1")
        self.max_cards = max_cards
        self.count_current_visit = opts.get("count_current_visit", True)
        if not isinstance(self.count_current_visit, bool):
            raise ServiceLoadError("services.care-gaps.count_current_visit must be true or false")
        self.accept_legacy_bp_panel = opts.get("accept_legacy_bp_panel", True)
        if not isinstance(self.accept_legacy_bp_panel, bool):
            raise ServiceLoadError("services.care-gaps.accept_legacy_bp_panel must be true or false")
        measures = opts.get("measures", MEASURE_IDS)
        if (
            not isinstance(measures, list | tuple)
            or not measures
            or not all(isinstance(m, str) for m in measures)
        ):
            raise ServiceLoadError(
                'services.care-gaps.measures must be a list of measure ids, e.g. ["CMS130"]'
            )
        try:
            self.measures = tuple(dict.fromkeys(resolve_measure(m) for m in measures))
            self.valuesets = default_valuesets()
            self.specs = {m: load_spec(m) for m in self.measures}
        except (UnknownMeasureError, ValueSetError, OSError, KeyError, ValueError) as e:
            raise ServiceLoadError(f"care-gaps: cannot load the measures: {e}") from e

    def period_for(self, now: datetime) -> Period:
        today = now.date()
        if self.period_kind == "rolling-12-months":
            return Period.rolling_12_months(today)
        return Period.calendar_year(today)

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        if record.patient is None:
            return []
        period = self.period_for(record.now)
        if self.count_current_visit:
            record = with_current_visit_closed(record, request.context.get("encounterId"))
        if self.accept_legacy_bp_panel:
            record = with_legacy_bp_panels(record)
        failed: list[str] = []
        results = evaluate(record, period, self.measures, self.valuesets, failed=failed)
        gaps: list[tuple[int, int, Card]] = []
        for result in results:
            groups = result.open_gap_groups
            if groups:
                spec = self.specs[result.measure_id]
                card = gap_card(spec, result, groups, record)
                gaps.append((SEVERITY_RANK[card.indicator], int(spec["care_gap"]["importance"]), card))
        gaps.sort(key=lambda g: (g[0], g[1]), reverse=True)
        cards = [card for _, _, card in gaps[: self.max_cards]]
        if failed:  # the other measures still answer; these say they could not
            cards.append(not_evaluated_card(failed))
        return cards


def with_current_visit_closed(record: PatientRecord, encounter_id: Any) -> PatientRecord:
    """The record with the current, still open visit ending now (see `count_current_visit`)."""
    if not isinstance(encounter_id, str) or not encounter_id:
        return record
    encounter_id = encounter_id.rsplit("/", 1)[-1]
    encounters = record.of_type("Encounter")
    for i, enc in enumerate(encounters):
        period = enc.get("period")
        if enc.get("id") != encounter_id or not isinstance(period, dict) or period.get("end"):
            continue
        if enc.get("status") not in ("arrived", "triaged", "in-progress", "onleave", "finished"):
            return record
        closed = {**enc, "period": {**period, "end": record.now.isoformat()}}
        by_type = {**record.by_type, "Encounter": (*encounters[:i], closed, *encounters[i + 1 :])}
        return PatientRecord(patient=record.patient, by_type=by_type, now=record.now)
    return record


# QI-Core's blood pressure profile is LOINC 85354-9; many EHRs (and Synthea) still send the older
# panel 55284-4 with the same systolic/diastolic components. At the point of care both count, or a
# patient with a perfectly good reading would get a false "blood pressure" gap (CMS165).
_BP_PANEL = {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}
_LEGACY_BP = CodeSet.of(LOINC, "55284-4")
_CURRENT_BP = CodeSet.of(LOINC, "85354-9")


def with_legacy_bp_panels(record: PatientRecord) -> PatientRecord:
    """The record with 55284-4 panels also coded as 85354-9 (see `accept_legacy_bp_panel`)."""
    observations = record.of_type("Observation")
    changed = False
    out = []
    for obs in observations:
        code = obs.get("code")
        if _LEGACY_BP.matches(code) and not _CURRENT_BP.matches(code) and isinstance(code, dict):
            obs = {**obs, "code": {**code, "coding": [*as_list(code.get("coding")), _BP_PANEL]}}
            changed = True
        out.append(obs)
    if not changed:
        return record
    return PatientRecord(
        patient=record.patient, by_type={**record.by_type, "Observation": tuple(out)}, now=record.now
    )


# --- cards -------------------------------------------------------------------------------------
def not_evaluated_card(measure_ids: list[str]) -> Card:
    """Measures that raised on this chart's data: the clinician learns they were not checked."""
    names = ", ".join(measure_ids)
    return Card(
        summary=truncate_summary(f"Care gaps not checked for {names}: chart data could not be read"),
        indicator="info",
        source=Source(label="CMS eCQMs (cds)"),
        kind="care-gaps:not-evaluated",
        detail=(
            f"{names} could not be evaluated because part of this patient's record was malformed; "
            "the other measures were. Check these manually. The error has been logged."
        ),
    )


def _date(t: datetime | None) -> str:
    return t.date().isoformat() if t else "unknown date"


def _summary(spec: MeasureSpec, ev: Evidence | None) -> str:
    gap = spec["care_gap"]
    if ev is not None and ev.out_of_control and ev.value:
        if spec.id == "CMS122":
            text = f"HbA1c {ev.value} on {_date(ev.when)} is above 9%: diabetes not in control ({spec.id})"
        else:
            text = f"Blood pressure {ev.value} on {_date(ev.when)} is not below 140/90 ({spec.id})"
        return truncate_summary(text)
    if spec.id == "CMS122" and ev is not None and ev.value == "no result":
        return truncate_summary(f"HbA1c on {_date(ev.when)} has no result: repeat the test ({spec.id})")
    due = gap["due"]
    if spec.id == "CMS165" and (ev is None or ev.when is None or ev.value == "incomplete reading"):
        due = gap["due_no_reading"]
    last = f"last {_date(ev.when)}" if ev is not None and ev.when else "none on record"
    return truncate_summary(f"{due[0].upper()}{due[1:]} due ({spec.id}): {last}")


def _why(spec: MeasureSpec, result: MeasureResult) -> str:
    ev = result.evidence
    gap = spec["care_gap"]
    label = gap["test_label"]
    if ev is None or ev.when is None:
        found = f"No {label} found in the record."
    elif ev.out_of_control and ev.value:
        found = f"Most recent {label}: {ev.value} on {_date(ev.when)}, {gap['out_of_control_text']}."
    elif spec.id == "CMS951" and ev.value:
        found = f"Last tests: {ev.value}."
    else:
        value = f" ({ev.value})" if ev.value else ""
        found = f"Last {label}: {ev.label}{value} on {_date(ev.when)}."
    return f"{found} {gap['window_text']}"


def _indication(spec: MeasureSpec, groups: list[int]) -> str:
    """For multi-population measures (CMS347): which population the patient is in."""
    labels = spec["care_gap"].get("group_labels")
    if not labels:
        return ""
    return " Indication: " + "; ".join(labels[g - 1] for g in groups) + "."


def _detail(spec: MeasureSpec, result: MeasureResult, groups: list[int]) -> str:
    gap = spec["care_gap"]
    p = result.period
    return "\n".join(
        [
            f"**Why:** {_why(spec, result)}{_indication(spec, groups)}",
            "",
            f"**Measure:** [{spec.id} {spec.title}]({spec['ecqi_url']}), CMS eCQM "
            f"({spec.library} {spec['library_version']}), measurement period "
            f"{p.start_date.isoformat()} to {p.end_date.isoformat()}.",
            "",
            f"**Guideline:** [{gap['guideline']['label']}]({gap['guideline']['url']})",
            "",
            "_Decision support following the CMS measure logic; confirm with the patient's full history._",
        ]
    )


def _coding(entry: list[str]) -> dict[str, str]:
    system, code, display = entry
    return {"system": system, "code": code, "display": display}


def _order_resource(spec: MeasureSpec, item: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """A draft order (status draft, intent order) for the clinician to sign."""
    code = {"coding": [_coding(c) for c in item["coding"]], "text": item["coding"][0][2]}
    subject = {"reference": f"Patient/{patient_id}"}
    note = [{"text": f"Closes a care gap in {spec.id} {spec.title}."}]
    if item["resourceType"] == "MedicationRequest":
        return {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "order",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                            "code": "community",
                            "display": "Community",
                        }
                    ]
                }
            ],
            "medicationCodeableConcept": code,
            "subject": subject,
            "dosageInstruction": [
                {
                    "text": item.get("dosage", "Take as directed"),
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": 1,
                                "unit": "tablet",
                                "system": "http://unitsofmeasure.org",
                                "code": "{tbl}",
                            }
                        }
                    ],
                }
            ],
            "note": note,
        }
    cat_code, cat_display = _CATEGORIES[item.get("category", "procedure")]
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": cat_code, "display": cat_display}]}],
        "code": code,
        "subject": subject,
        "note": note,
    }


def _suggestions(spec: MeasureSpec, groups: list[int], record: PatientRecord) -> tuple[Suggestion, ...]:
    patient_id = record.patient_id or ""
    age = record.age()
    out: list[Suggestion] = []
    for order in spec["care_gap"]["orders"]:
        if "groups" in order and not set(order["groups"]) & set(groups):
            continue
        if "min_age" in order and (age is None or age < order["min_age"]):
            continue
        actions = tuple(
            Action(
                type="create",
                description=f"{order['label']}: {item['coding'][0][2]}",
                resource=_order_resource(spec, item, patient_id),
            )
            for item in order["resources"]
        )
        out.append(Suggestion(label=order["label"], actions=actions, is_recommended=not out))
    return tuple(out)


def gap_card(spec: MeasureSpec, result: MeasureResult, groups: list[int], record: PatientRecord) -> Card:
    """The card for one open gap of one measure."""
    ev = result.evidence
    guideline = spec["care_gap"]["guideline"]
    return Card(
        summary=_summary(spec, ev),
        indicator="warning" if ev is not None and ev.out_of_control else "info",
        source=Source(label=f"CMS eCQM {spec.id}: {spec.title}", url=spec["ecqi_url"]),
        kind=f"measure:{spec.id}",
        detail=_detail(spec, result, groups),
        suggestions=_suggestions(spec, groups, record),
        override_reasons=OVERRIDE_REASONS,
        links=(Link(label=f"Guideline: {guideline['label']}"[:120], url=guideline["url"]),),
        score=float(spec["care_gap"]["importance"]) / 100,
        model_version=f"{spec.library} {spec['library_version']}",
    )
