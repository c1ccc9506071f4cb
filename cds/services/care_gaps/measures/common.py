"""The shared eCQM libraries: Hospice 6.12.000, PalliativeCare 1.11.000,
AdvancedIllnessandFrailty 1.16.000 and AdultOutpatientEncounters 4.11.000.

Each public function is one CQL definition, memoised on the context so that eight measures share
one evaluation. Value sets and codes come from cds/knowledge/ecqm-libraries.json.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cds.fhir.value import as_dict
from cds.knowledge import KNOWLEDGE_DIR
from cds.runtime.shapes import checked_json
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.medication_period import medication_request_period
from cds.services.care_gaps.measures.spec import LibrariesFile, MeasureSpec, check_libraries

LIBRARIES_FILE = KNOWLEDGE_DIR / "ecqm-libraries.json"


@lru_cache(maxsize=1)
def libraries() -> dict[str, Any]:
    """The shared libraries' value sets, codes and parameters, checked against LibrariesFile."""
    data: dict[str, Any] = checked_json(LIBRARIES_FILE, LibrariesFile, check_libraries)
    return data


def _vs(library: str, name: str) -> str:
    return libraries()[library]["valuesets"][name]


def _code(library: str, name: str) -> tuple[str, str]:
    system, code = libraries()[library]["codes"][name]
    return system, code


# --- Hospice ---------------------------------------------------------------------------------
def has_hospice_services(ctx: MeasureContext) -> bool:
    """Hospice."Has Hospice Services"."""
    return ctx.memo("Hospice.Has Hospice Services", lambda: _hospice(ctx))


def _hospice(ctx: MeasureContext) -> bool:
    lib, days, birth = "Hospice", ctx.days, ctx.birth_date
    home = _code(lib, "Discharge to home for hospice care (procedure)")
    facility = _code(lib, "Discharge to healthcare facility for hospice care (procedure)")
    for enc in ctx.retrieve("Encounter", _vs(lib, "Encounter Inpatient")):
        disposition = as_dict(enc.get("hospitalization")).get("dischargeDisposition")
        if (
            q.encounter_performed(enc)
            and (q.has_code(disposition, *home) or q.has_code(disposition, *facility))
            and q.ends_during_days(q.period_interval(enc.get("period")), days)
        ):
            return True
    for enc in ctx.retrieve("Encounter", _vs(lib, "Hospice Encounter")):
        if q.encounter_performed(enc) and q.overlaps_days(q.period_interval(enc.get("period")), days):
            return True
    yes = _code(lib, "Yes (qualifier value)")
    for obs in ctx.retrieve("Observation", _code(lib, "Hospice care [Minimum Data Set]")):
        if (
            q.assessment_performed(obs)
            and q.has_code(obs.get("valueCodeableConcept"), *yes)
            and q.overlaps_days(q.choice_interval(obs, "effective", birth), days)
        ):
            return True
    for req in ctx.retrieve("ServiceRequest", _vs(lib, "Hospice Care Ambulatory")):
        if q.is_order(req) and q.during_days(q.point(q.instant(req.get("authoredOn"))), days):
            return True
    for proc in ctx.retrieve("Procedure", _vs(lib, "Hospice Care Ambulatory")):
        if q.procedure_performed(proc) and q.overlaps_days(q.choice_interval(proc, "performed", birth), days):
            return True
    return any(
        q.overlaps_days(q.prevalence_interval(c, birth), days)
        for c in ctx.retrieve("Condition", _vs(lib, "Hospice Diagnosis"))
    )


# --- PalliativeCare --------------------------------------------------------------------------
def has_palliative_care(ctx: MeasureContext) -> bool:
    """PalliativeCare."Has Palliative Care in the Measurement Period"."""
    return ctx.memo("PalliativeCare", lambda: _palliative(ctx))


def _palliative(ctx: MeasureContext) -> bool:
    lib, days, birth = "PalliativeCare", ctx.days, ctx.birth_date
    facit = _code(
        lib, "Functional Assessment of Chronic Illness Therapy - Palliative Care Questionnaire (FACIT-Pal)"
    )
    for obs in ctx.retrieve("Observation", facit):
        if q.assessment_performed(obs) and q.overlaps_days(q.choice_interval(obs, "effective", birth), days):
            return True
    for cond in ctx.retrieve("Condition", _vs(lib, "Palliative Care Diagnosis")):
        if q.overlaps_days(q.prevalence_interval(cond, birth), days):
            return True
    for enc in ctx.retrieve("Encounter", _vs(lib, "Palliative Care Encounter")):
        if q.encounter_performed(enc) and q.overlaps_days(q.period_interval(enc.get("period")), days):
            return True
    return any(
        q.procedure_performed(p) and q.overlaps_days(q.choice_interval(p, "performed", birth), days)
        for p in ctx.retrieve("Procedure", _vs(lib, "Palliative Care Intervention"))
    )


# --- AdvancedIllnessandFrailty ---------------------------------------------------------------
def has_frailty(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Has Criteria Indicating Frailty"."""
    return ctx.memo("AIF.Frailty", lambda: _frailty(ctx))


def _frailty(ctx: MeasureContext) -> bool:
    lib, days, birth = "AdvancedIllnessandFrailty", ctx.days, ctx.birth_date
    device_vs = _vs(lib, "Frailty Device")
    for req in ctx.retrieve("DeviceRequest", device_vs):
        if (
            q.is_order(req)
            and q.do_not_perform(req) is not True
            and q.during_days(q.point(q.instant(req.get("authoredOn"))), days)
        ):
            return True
    devices = ctx.valuesets[device_vs]
    for obs in ctx.retrieve("Observation", _code(lib, "Medical equipment used")):
        if (
            q.assessment_performed(obs)
            and devices.matches(obs.get("valueCodeableConcept"))
            and q.ends_during_days(q.choice_interval(obs, "effective", birth), days)
        ):
            return True
    for cond in ctx.retrieve("Condition", _vs(lib, "Frailty Diagnosis")):
        if q.overlaps_days(q.prevalence_interval(cond, birth), days):
            return True
    for enc in ctx.retrieve("Encounter", _vs(lib, "Frailty Encounter")):
        if q.encounter_performed(enc) and q.overlaps_days(q.period_interval(enc.get("period")), days):
            return True
    return any(
        q.symptom(o) and q.overlaps_days(q.choice_interval(o, "effective", birth), days)
        for o in ctx.retrieve("Observation", _vs(lib, "Frailty Symptom"))
    )


def has_advanced_illness(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Has Advanced Illness in Year Before or During Measurement Period"."""

    def compute() -> bool:
        lib = "AdvancedIllnessandFrailty"
        window = ctx.days_back(libraries()[lib]["advanced_illness_lookback_years"])
        return any(
            q.starts_during_days(q.prevalence_interval(c, ctx.birth_date), window)
            for c in ctx.retrieve("Condition", _vs(lib, "Advanced Illness"))
        )

    return ctx.memo("AIF.AdvancedIllness", compute)


def has_dementia_medications(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Has Dementia Medications in Year Before or During Measurement Period"."""

    def compute() -> bool:
        lib = "AdvancedIllnessandFrailty"
        window = ctx.days_back(libraries()[lib]["advanced_illness_lookback_years"])
        return any(
            q.medication_active(m) and q.overlaps_days(medication_request_period(m), window)
            # `[MedicationRequest: medication in "Dementia Medications"]`: an explicit code path,
            # which the translator does not expand to referenced Medication resources.
            for m in ctx.retrieve(
                "MedicationRequest", _vs(lib, "Dementia Medications"), medication_reference=False
            )
        )

    return ctx.memo("AIF.Dementia", compute)


def advanced_illness_and_frailty(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Is Age 66 or Older with Advanced Illness and Frailty"."""
    age = ctx.age_at_end()
    lib = libraries()["AdvancedIllnessandFrailty"]
    return (
        age is not None
        and age >= lib["age_at_least"]
        and has_frailty(ctx)
        and (has_advanced_illness(ctx) or has_dementia_medications(ctx))
    )


def advanced_illness_and_frailty_or_frail_81(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Is Age 66 to 80 with Advanced Illness and Frailty or Is Age 81 or Older with Frailty"."""
    age = ctx.age_at_end()
    lib = libraries()["AdvancedIllnessandFrailty"]
    if age is None:
        return False
    if lib["age_at_least"] <= age < lib["frailty_only_age_at_least"]:
        return has_frailty(ctx) and (has_advanced_illness(ctx) or has_dementia_medications(ctx))
    return age >= lib["frailty_only_age_at_least"] and has_frailty(ctx)


def nursing_home_66(ctx: MeasureContext) -> bool:
    """AIFrailLTCF."Is Age 66 or Older Living Long Term in a Nursing Home"."""
    age = ctx.age_at_end()
    lib = "AdvancedIllnessandFrailty"
    if age is None or age < libraries()[lib]["age_at_least"]:
        return False

    def compute() -> bool:
        last: tuple[Any, dict[str, Any]] | None = None
        end_day = ctx.period.end_date
        for obs in ctx.retrieve("Observation", _code(lib, "Housing status")):
            iv = q.choice_interval(obs, "effective", ctx.birth_date)
            if q.assessment_performed(obs) and q.ends_on_or_before_day(iv, end_day):
                assert iv is not None and iv.high is not None
                if last is None or iv.high >= last[0]:  # sort asc by end, Last: ties keep the later one
                    last = (iv.high, obs)
        return last is not None and q.has_code(
            last[1].get("valueCodeableConcept"), *_code(lib, "Lives in a nursing home (finding)")
        )

    return ctx.memo("AIF.NursingHome", compute)


# --- AdultOutpatientEncounters ---------------------------------------------------------------
def qualifying_encounters(ctx: MeasureContext, oids: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """AdultOutpatientEncounters."Qualifying Encounters" (or a measure's own list of value sets):
    performed encounters whose period falls on the days of the measurement period."""
    if oids is None:
        oids = tuple(libraries()["AdultOutpatientEncounters"]["valuesets"].values())
    return ctx.memo(
        "QualifyingEncounters:" + ",".join(oids),
        lambda: [
            e
            for e in ctx.retrieve("Encounter", *oids)
            if q.encounter_performed(e) and q.during_days(q.period_interval(e.get("period")), ctx.days)
        ],
    )


# --- shared by the diabetes measures (CMS122, CMS131) ------------------------------------------
def diabetes_initial_population(
    ctx: MeasureContext, spec: MeasureSpec, encounter_oids: tuple[str, ...] | None = None
) -> bool:
    """ "Initial Population" of CMS122 and CMS131: age in the measure's range at the end of the
    period, a qualifying encounter (`encounter_oids`: the measure's own list, if any) and diabetes
    overlapping the period."""
    age = ctx.age_at_end()
    return (
        age is not None
        and spec["age"]["min"] <= age <= spec["age"]["max"]
        and bool(qualifying_encounters(ctx, encounter_oids))
        and any(
            q.overlaps_days(q.prevalence_interval(c, ctx.birth_date), ctx.days)
            for c in ctx.retrieve("Condition", spec.vs("Diabetes"))
        )
    )


def hospice_frailty_nursing_home_or_palliative(ctx: MeasureContext) -> bool:
    """ "Denominator Exclusions" of CMS122 and CMS131: hospice, advanced illness and frailty,
    long-term nursing home at 66 or older, palliative care."""
    return (
        has_hospice_services(ctx)
        or advanced_illness_and_frailty(ctx)
        or nursing_home_66(ctx)
        or has_palliative_care(ctx)
    )
