"""The `care-gaps` service (patient-view): open gaps in eight CMS eCQMs, one card each.

The measures are evaluated exactly (cds/services/care_gaps/measures) over the measurement period containing today:
the calendar year (how CMS reports them; default) or the 12 months ending today. A gap is a patient
in the denominator, not excluded or excepted, and not in the numerator (in it, for the inverse
CMS122). Each card says what is due, why (the last relevant test and its date, or none found), the
measure and the guideline behind it, and offers the order that closes the gap.

Options (`[services.care-gaps]`): `period` = "calendar-year" | "rolling-12-months",
`max_cards` (default 3; the last card then says how many more gaps there are), `measures`
(default all eight). Point-of-care readings (cds/services/care_gaps/point_of_care.py, each
labelled in the cards it affects): `count_current_visit` (default true): the visit the chart is
opened in (context.encounterId), arrived or in progress, counts as a finished office visit ending
now, so that a patient's first visit of the year shows its gaps; `assume_current_visit` (default
false; ambulatory deployments): a current office visit is assumed when the hook names none;
`map_visit_codes` (default true): ambulatory visits coded with common SNOMED CT check-up or
follow-up concepts count as the measures' visit concepts; `accept_any_egfr` (default true): any eGFR
(MDRD...) counts in CMS951; `accept_legacy_bp_panel` (default true): blood pressure panels coded
with the older LOINC 55284-4 count as the QI-Core panel 85354-9. No cards at all for a deceased
patient or one receiving hospice care. The measure engine itself (and `cds measure evaluate`)
stays exact.
Decision support for clinicians, to be validated locally before clinical use; never a diagnosis.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import msgspec

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import CodeSet
from cds.hooks.cards import (
    SEVERITY_RANK,
    Action,
    Card,
    Indicator,
    Link,
    Source,
    Suggestion,
    override_reason,
    truncate_summary,
)
from cds.hooks.request import HookRequest
from cds.hooks.service import CDSService, ServiceLoadError
from cds.services.care_gaps import point_of_care as poc
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext, direct_codes
from cds.services.care_gaps.measures.engine import MEASURE_IDS, UnknownMeasureError, evaluate, resolve_measure
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.result import Evidence, MeasureResult
from cds.services.care_gaps.measures.spec import MeasureSpec, load_spec
from cds.services.care_gaps.measures.valuesets import ValueSetError, default_valuesets

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


class CareGapsOptions(msgspec.Struct, kw_only=True):
    """`[services.care-gaps]` (see the module docstring)."""

    period: Literal["calendar-year", "rolling-12-months"] = "calendar-year"
    max_cards: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_CARDS
    measures: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)] = MEASURE_IDS
    count_current_visit: bool = True
    assume_current_visit: bool = False
    map_visit_codes: bool = True
    accept_any_egfr: bool = True
    accept_legacy_bp_panel: bool = True


class CareGapsService(CDSService[CareGapsOptions]):
    id = "care-gaps"
    hook = "patient-view"
    Options = CareGapsOptions

    def __init__(self, options: CareGapsOptions | None = None, *, models_dir: Path | None = None) -> None:
        super().__init__(options, models_dir=models_dir)
        o = self.options
        self.period_kind = o.period
        self.max_cards = o.max_cards
        self.count_current_visit = o.count_current_visit
        self.assume_current_visit = o.assume_current_visit
        self.map_visit_codes = o.map_visit_codes
        self.accept_any_egfr = o.accept_any_egfr
        self.accept_legacy_bp_panel = o.accept_legacy_bp_panel

    def load(self) -> Self:
        """The selected measures' specs, the value sets they use and the point-of-care code lists,
        each checked now, so a broken file stops the service at start-up (`/readyz` names it)."""
        try:
            self.measures = tuple(dict.fromkeys(resolve_measure(m) for m in self.options.measures))
            self.valuesets = default_valuesets()
            self.specs = {m: load_spec(m) for m in self.measures}
            self.visit_codes = _qualifying_visits(self.valuesets)
            direct_codes()  # the codes the measures name directly: read now, not on a first call
        except (UnknownMeasureError, ValueSetError, OSError, KeyError, ValueError) as e:
            raise ServiceLoadError(f"care-gaps: cannot load the measures: {e}") from e
        poc.knowledge()  # ServiceLoadError naming care_gaps_point_of_care.json
        return self

    def period_for(self, now: datetime) -> Period:
        today = now.date()
        if self.period_kind == "rolling-12-months":
            return Period.rolling_12_months(today)
        return Period.calendar_year(today)

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        if record.patient is None or poc.is_deceased(record):
            return []
        period = self.period_for(record.now)
        adjusted = self.point_of_care(request, record, period)
        record = adjusted.record
        ctx = MeasureContext(record, period, self.valuesets)
        failed: list[str] = []
        results = evaluate(record, period, self.measures, self.valuesets, context=ctx, failed=failed)
        if common.has_hospice_services(ctx):  # memoised: every measure's exclusions asked it
            return []
        gaps: list[tuple[int, int, MeasureResult, list[int]]] = []
        for result in results:
            groups = result.open_gap_groups
            if groups:
                spec = self.specs[result.measure_id]
                indicator = gap_indicator(result)
                gaps.append((SEVERITY_RANK[indicator], int(spec["care_gap"]["importance"]), result, groups))
        gaps.sort(key=lambda g: (g[0], g[1]), reverse=True)
        shown, dropped = gaps[: self.max_cards], gaps[self.max_cards :]
        cards = []
        for i, (_, _, result, groups) in enumerate(shown):
            more = [self.specs[g[2].measure_id] for g in dropped] if i == len(shown) - 1 else []
            cards.append(
                gap_card(self.specs[result.measure_id], result, groups, record, adjusted.notes, more)
            )
        if failed:  # the other measures still answer; these say they could not
            cards.append(not_evaluated_card(failed))
        return cards

    def point_of_care(self, request: HookRequest, record: PatientRecord, period: Period) -> poc.Adjusted:
        """The record as the point of care reads it (see the module docstring), with notes."""
        notes: list[str] = []
        if self.count_current_visit or self.assume_current_visit:
            encounter_id = request.context.get("encounterId") if self.count_current_visit else None
            step = poc.current_visit(record, encounter_id, self.assume_current_visit)
            record, notes = step.record, notes + step.notes
        if self.map_visit_codes:
            step = poc.mapped_visit_codes(record, period, self.visit_codes)
            record, notes = step.record, notes + step.notes
        if self.accept_any_egfr:
            step = poc.any_egfr(record)
            record, notes = step.record, notes + step.notes
        if self.accept_legacy_bp_panel:
            record = poc.legacy_bp_panels(record)
        return poc.Adjusted(record, notes)


def _qualifying_visits(valuesets: Any) -> CodeSet:
    """The visit concepts every measure accepts (Office Visit; Preventive Care Services Established
    Office Visit, 18 and Up): a visit already coded with one of them needs no mapping."""
    oids = common.libraries()["AdultOutpatientEncounters"]["valuesets"]
    return (
        valuesets[oids["Office Visit"]]
        | valuesets[oids["Preventive Care Services Established Office Visit, 18 and Up"]]
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
    """The card summary from the measure's care_gap texts (its knowledge file): out of control,
    a summary for a particular evidence value, else what is due and when it was last done."""
    gap = spec["care_gap"]
    if ev is not None and ev.value:
        text = gap.get("out_of_control_summary") if ev.out_of_control else None
        text = text or gap.get("evidence_summaries", {}).get(ev.value)
        if text:
            return truncate_summary(f"{text.format(value=ev.value, date=_date(ev.when))} ({spec.id})")
    due = gap["due"]
    if "due_no_reading" in gap and (
        ev is None or ev.when is None or ev.value in gap.get("due_no_reading_values", ())
    ):
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
    elif "last_text" in gap and ev.value:
        found = gap["last_text"].format(value=ev.value)
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
    if item.get("intent") == "plan":  # a task for the clinician (treatment review), not an order
        return {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "plan",
            "code": code,
            "subject": subject,
            "note": [{"text": item.get("note", note[0]["text"])}],
        }
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


def _suggestions(
    spec: MeasureSpec,
    groups: list[int],
    record: PatientRecord,
    result: MeasureResult | None = None,
    missing: tuple[str, ...] = (),
) -> tuple[Suggestion, ...]:
    """The orders that close the gap: for CMS951 only the missing components; for CMS122 above 9%
    the treatment review first (`out_of_control_orders`), then the orders."""
    patient_id = record.patient_id or ""
    age = record.age()
    out: list[Suggestion] = []
    orders = list(spec["care_gap"]["orders"])
    ev = result.evidence if result is not None else None
    if ev is not None and ev.out_of_control:
        orders = list(spec["care_gap"].get("out_of_control_orders", [])) + orders
    for order in orders:
        if "groups" in order and not set(order["groups"]) & set(groups):
            continue
        if "min_age" in order and (age is None or age < order["min_age"]):
            continue
        items = order["resources"]
        if missing:
            items = [i for i in items if i["coding"][0][1] in missing]
        if not items:
            continue
        label = order["label"]
        if missing and len(items) < len(order["resources"]):
            shorts = {c["order_code"]: c["short"] for c in spec["care_gap"]["components"]}
            label = "Order " + " and ".join(shorts.get(i["coding"][0][1], i["coding"][0][2]) for i in items)
        actions = tuple(
            Action(
                type="create",
                description=f"{label}: {item['coding'][0][2]}",
                resource=_order_resource(spec, item, patient_id),
            )
            for item in items
        )
        out.append(Suggestion(label=label[:80], actions=actions, is_recommended=not out))
    return tuple(out)


def gap_indicator(result: MeasureResult) -> Indicator:
    ev = result.evidence
    return "warning" if ev is not None and ev.out_of_control else "info"


def gap_card(
    spec: MeasureSpec,
    result: MeasureResult,
    groups: list[int],
    record: PatientRecord,
    notes: list[str] | tuple[str, ...] = (),
    more: list[MeasureSpec] | tuple[MeasureSpec, ...] = (),
) -> Card:
    """The card for one open gap of one measure; `notes`: the point-of-care readings applied;
    `more`: the gaps the card cap leaves out (said on the last card)."""
    ev = result.evidence
    guideline = spec["care_gap"]["guideline"]
    detail = _detail(spec, result, groups)
    missing: tuple[str, ...] = ()
    if "components" in spec["care_gap"]:  # a gap closed by several tests: say which were found
        components = components_found(spec, record, result.period)
        missing = tuple(k for k, found in components.items() if not found[0])
        detail += "\n\n**Found:** " + " ".join(found[1] for found in components.values())
    treatment = spec["care_gap"].get("treatment_guideline")
    if treatment and ev is not None and ev.out_of_control:
        review = spec["care_gap"]["out_of_control_orders"][0]["resources"][0]["note"]
        detail += f"\n\n**Treatment:** {review} [{treatment['label']}]({treatment['url']})"
    if notes:
        detail += "\n\n**Point of care:** " + "; ".join(notes) + " (not part of the CMS measure logic)."
    summary = _summary(spec, ev)
    if more:
        names = ", ".join(f"{m.id} {m['care_gap']['due']}" for m in more)
        detail += f"\n\n**+{len(more)} more gap{'s' if len(more) > 1 else ''} not shown:** {names}."
        summary = truncate_summary(f"{summary} (+{len(more)} more)") if len(summary) < 125 else summary
    return Card(
        summary=summary,
        indicator=gap_indicator(result),
        source=Source(label=f"CMS eCQM {spec.id}: {spec.title}", url=spec["ecqi_url"]),
        kind=f"measure:{spec.id}",
        detail=detail,
        suggestions=_suggestions(spec, groups, record, result, missing),
        override_reasons=OVERRIDE_REASONS,
        links=(Link(label=f"Guideline: {guideline['label']}"[:120], url=guideline["url"]),),
        score=float(spec["care_gap"]["importance"]) / 100,
        model_version=f"{spec.library} {spec['library_version']}",
    )


def components_found(spec: MeasureSpec, record: PatientRecord, period: Period) -> dict[str, tuple[bool, str]]:
    """For each component of a measure's gap (`care_gap.components`: its value set and the code of
    the order that closes it; CMS951's eGFR and urine ACR): whether a result counts in the period,
    and what was found, with why it did not count. Keyed by the order's code."""
    vs = default_valuesets()
    out = {}
    for component in spec["care_gap"]["components"]:
        loinc, short = component["order_code"], component["short"]
        codes = vs[spec.vs(component["valueset"])]
        best: tuple[int, str, str] | None = None  # (rank, date, reason): counts > in period > older
        for obs in record.of_type("Observation"):
            if not codes.matches(obs.get("code")):
                continue
            t = q.latest(q.choice_interval(obs, "effective", record.birth_date))
            if t is None:
                continue
            when = q.day(t)
            if not period.start_date <= when <= period.end_date:
                rank, reason = (
                    0,
                    "before the measurement period" if when < period.start_date else "after today",
                )
            elif q.status(obs) not in q.OBSERVATION_DONE:
                rank, reason = 1, f"status {q.status(obs) or 'missing'}, not final"
            elif not q.has_value(obs):
                rank, reason = 1, "no result value"
            else:
                rank, reason = 2, ""
            cand = (rank, when.isoformat(), reason)
            if best is None or cand[:2] > best[:2]:
                best = cand
        if best is None:
            out[loinc] = (False, f"No {short} on record.")
        elif best[0] == 2:
            out[loinc] = (True, f"{short[0].upper()}{short[1:]} {best[1]} counts.")
        else:
            out[loinc] = (False, f"{short[0].upper()}{short[1:]} {best[1]} does not count: {best[2]}.")
    return out
