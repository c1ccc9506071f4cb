"""CMS347 Statin Therapy for the Prevention and Treatment of Cardiovascular Disease
(StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR 0.2.000).

Four population groups, each with a qualifying visit in the period: (1) clinical ASCVD;
(2) 20-75 with LDL >= 190 mg/dL or familial hypercholesterolemia, no ASCVD; (3) 40-75 with
diabetes and none of the above; (4) 40-75 with a 10-year CVD risk >= 20% and none of the above
(ages at the START of the period). Numerator: a statin ordered in the period or covering it.
Exclusions: breastfeeding, rhabdomyolysis. Exceptions: statin allergy or adverse reaction,
hospice, palliative care, hepatitis/liver disease, statin-associated muscle symptoms, ESRD, a
documented medical reason for not ordering a statin.
"""

from __future__ import annotations

from typing import Any

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS347")
STATINS = (
    "Low Intensity Statin Therapy",
    "Moderate Intensity Statin Therapy",
    "High Intensity Statin Therapy",
)
_ASCVD_CONDITIONS = (
    "Myocardial Infarction",
    "Cerebrovascular Disease Stroke or TIA",
    "Atherosclerosis and Peripheral Arterial Disease",
    "Ischemic Heart Disease or Other Related Diagnoses",
    "Stable and Unstable Angina",
)
_ASCVD_PROCEDURES = ("PCI", "CABG Surgeries", "Carotid Intervention", "CABG or PCI Procedure")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    encounters = _qualifying_encounters(ctx)
    if not encounters:
        return [Criteria(False, False, False, False, False) for _ in range(4)], Evidence(label="")
    ascvd = _ascvd(ctx)
    ldl = _ldl_190(ctx)
    fh = _hypercholesterolemia(ctx)
    diabetes = _flagged_overlapping(ctx, "Diabetes")
    age = ctx.age_at_start()

    def in_age(key: str) -> bool:
        a = SPEC[key]
        return age is not None and a["min"] <= age <= a["max"]

    ips = [
        ascvd or _subsequent_mi(ctx),
        in_age("age_population_2") and (ldl or fh) and not ascvd,
        in_age("age_population_3") and diabetes and not (ascvd or ldl or fh),
        in_age("age_population_4") and _cvd_risk_high(ctx) and not (ascvd or fh or ldl or diabetes),
    ]
    if not any(ips):
        return [Criteria(False, False, False, False, False) for _ in range(4)], Evidence(label="")
    exclusion = _flagged_overlapping(ctx, "Breastfeeding", "Rhabdomyolysis")
    numerator = bool(_statins_in_period(ctx))
    exception = _exception(ctx, encounters)
    groups = [Criteria(ip, ip, exclusion, numerator, exception) for ip in ips]
    return groups, _evidence(ctx)


def _qualifying_encounters(ctx: MeasureContext) -> list[dict[str, Any]]:
    """ "Qualifying Encounter during day of Measurement Period" (finished only)."""
    return ctx.memo(
        "CMS347.Encounters",
        lambda: [
            e
            for e in ctx.retrieve("Encounter", *SPEC.vss(SPEC["qualifying_encounters"]))
            if q.during_days(q.period_interval(e.get("period")), ctx.days) and e.get("status") == "finished"
        ],
    )


def _flagged(cond: dict[str, Any]) -> bool:
    return q.problem_list_or_health_concern(cond)


def _flagged_overlapping(ctx: MeasureContext, *names: str) -> bool:
    """Problem-list or health-concern conditions whose prevalence overlaps the days of the period."""
    return any(
        _flagged(c) and q.overlaps_days(q.prevalence_interval(c, ctx.birth_date), ctx.days)
        for c in ctx.retrieve("Condition", *SPEC.vss(list(names)))
    )


def _started_by_end(ctx: MeasureContext, conditions: list[dict[str, Any]]) -> bool:
    end = ctx.period.end_date
    return any(
        _flagged(c) and q.starts_on_or_before_day(q.prevalence_interval(c, ctx.birth_date), end)
        for c in conditions
    )


def _ascvd(ctx: MeasureContext) -> bool:
    """ "ASVCD Diagnosis or Procedure before End of Measurement Period"."""
    if _started_by_end(ctx, ctx.retrieve("Condition", *SPEC.vss(list(_ASCVD_CONDITIONS)))):
        return True
    end = ctx.period.end_date
    return any(
        q.starts_on_or_before_day(q.choice_interval(p, "performed", ctx.birth_date), end)
        and p.get("status") == "completed"
        for p in ctx.retrieve("Procedure", *SPEC.vss(list(_ASCVD_PROCEDURES)))
    )


def _subsequent_mi(ctx: MeasureContext) -> bool:
    """ "Myocardial Infarction before End of Measurement Period" (ICD-10-CM I22.2)."""
    code = SPEC.code("Subsequent non-ST elevation (NSTEMI) myocardial infarction")
    return _started_by_end(ctx, ctx.retrieve("Condition", code))


def _hypercholesterolemia(ctx: MeasureContext) -> bool:
    return _started_by_end(ctx, ctx.retrieve("Condition", SPEC.vs("Familial Hypercholesterolemia")))


def _ldl_190(ctx: MeasureContext) -> bool:
    """ "LDL Result Greater Than or Equal To 190" (mg/dL) starting on or before the end of the period."""
    for obs in ctx.retrieve("Observation", SPEC.vs("LDL Cholesterol")):
        v = q.value_quantity(obs)
        if (
            v is not None
            and v[1] == "mg/dL"
            and v[0] >= SPEC["ldl_mg_dl_at_least"]
            and q.starts_on_or_before_day(
                q.choice_interval(obs, "effective", ctx.birth_date), ctx.period.end_date
            )
            and obs.get("status") in ("final", "amended", "corrected", "appended")
        ):
            return True
    return False


def _cvd_risk_high(ctx: MeasureContext) -> bool:
    """ "Ten Year CVD Risk is High": a 10-year risk >= 20% during the period."""
    codes = (
        SPEC.code("Cardiovascular disease 10Y risk [Likelihood]"),
        SPEC.code("Cardiovascular disease 10Y risk [Likelihood] ACC-AHA Pooled Cohort by Goff 2013"),
    )
    for obs in ctx.retrieve("Observation", *codes):
        v = q.value_quantity(obs)
        if (
            v is not None
            and v[1] == "%"
            and v[0] >= SPEC["cvd_risk_percent_at_least"]
            and q.during_days(q.choice_interval(obs, "effective", ctx.birth_date), ctx.days)
        ):
            return True
    return False


def _statins_in_period(ctx: MeasureContext) -> list[dict[str, Any]]:
    """ "Statin Therapy Prescribed Anytime during day of Measurement Period"."""
    out = []
    for req in ctx.retrieve("MedicationRequest", *SPEC.vss(list(STATINS))):
        if req.get("status") not in ("active", "completed") or req.get("intent") != "order":
            continue
        authored = q.instant(req.get("authoredOn"))
        if q.in_days(authored, ctx.days) or any(
            q.overlaps_days(q.choice_interval(_repeat(d), "bounds", ctx.birth_date), ctx.days)
            for d in q.items(req.get("dosageInstruction"))
        ):
            out.append(req)
    return out


def _repeat(dosage: Any) -> dict[str, Any]:
    timing = dosage.get("timing") if isinstance(dosage, dict) else None
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    return repeat if isinstance(repeat, dict) else {}


def _exception(ctx: MeasureContext, encounters: list[dict[str, Any]]) -> bool:
    return (
        _statin_allergy(ctx)
        or common.has_hospice_services(ctx)
        or common.has_palliative_care(ctx)
        or _flagged_overlapping(ctx, "Hepatitis A", "Hepatitis B", "Liver Disease")
        or _flagged_overlapping(ctx, "Statin Associated Muscle Symptoms")
        or _flagged_overlapping(ctx, "End Stage Renal Disease")
        or _statin_adverse_event(ctx)
        or _medical_reason_not_ordered(ctx, encounters)
    )


def _statin_allergy(ctx: MeasureContext) -> bool:
    return any(
        q.overlaps_days(q.choice_interval(a, "onset", ctx.birth_date), ctx.days)
        and q.clinical_status_is(a, "active", q.ALLERGY_CLINICAL)
        for a in ctx.retrieve("AllergyIntolerance", SPEC.vs("Statin Allergen"))
    )


def _statin_adverse_event(ctx: MeasureContext) -> bool:
    return any(
        q.in_days(
            q.instant(e.get("recordedDate")),
            ctx.days,
        )
        for e in ctx.retrieve("AdverseEvent", SPEC.vs("Statin Allergen"))
    )


def _medical_reason_not_ordered(ctx: MeasureContext, encounters: list[dict[str, Any]]) -> bool:
    """A statin not ordered (doNotPerform) for a medical reason during a qualifying visit."""
    reasons = ctx.valuesets[SPEC.vs("Medical Reason")]
    for req in ctx.retrieve("MedicationRequest", *SPEC.vss(list(STATINS)), negated=True):
        if req.get("status") != "completed" or not any(
            reasons.matches(r) for r in q.items(req.get("reasonCode"))
        ):
            continue
        authored = q.point(q.instant(req.get("authoredOn")))
        if any(
            q.during(authored, q.period_interval(e.get("period")) or q.Interval(None, None))
            for e in encounters
        ):
            return True
    return False


def _evidence(ctx: MeasureContext) -> Evidence:
    found = []
    for req in ctx.retrieve("MedicationRequest", *SPEC.vss(list(STATINS))):
        t = q.instant(req.get("authoredOn"))
        if req.get("status") in ("active", "completed") and t is not None:
            found.append(
                (t, concept_text(req.get("medicationCodeableConcept")) or "statin", req.get("status"))
            )
    return last_evidence("no statin prescription on record", found)
