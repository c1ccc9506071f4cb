"""CMS125 Breast Cancer Screening (BreastCancerScreeningFHIR 0.0.001).

Women 52-74 at the end of the period with a qualifying visit; a mammogram ending between
October 1 two years before the period and its end. Excluded: hospice, bilateral mastectomy (or
right and left), advanced illness and frailty, nursing home, palliative care.
"""

from __future__ import annotations

from datetime import date

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.qicore import Days
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS125")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    age = ctx.age_at_end()
    ip = (
        age is not None
        and SPEC["age"]["min"] <= age <= SPEC["age"]["max"]
        and ctx.gender == SPEC["sex"]
        and bool(common.qualifying_encounters(ctx))
    )
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    return [Criteria(True, True, _exclusion(ctx), _numerator(ctx))], _evidence(ctx)


def _diagnosis(ctx: MeasureContext, vs_name: str, side: str | None = None) -> bool:
    """A mastectomy diagnosis whose prevalence starts on or before the end of the period."""
    out = False
    for cond in ctx.retrieve("Condition", SPEC.vs(vs_name)):
        if side is not None and not q.has_code(cond.get("bodySite"), *SPEC.code(side)):
            continue
        out = out or q.starts_on_or_before(q.prevalence_interval(cond, ctx.birth_date), ctx.period.end)
    return out


def _procedure(ctx: MeasureContext, vs_name: str) -> bool:
    return any(
        q.procedure_performed(p)
        and q.ends_on_or_before(q.choice_interval(p, "performed", ctx.birth_date), ctx.period.end)
        for p in ctx.retrieve("Procedure", SPEC.vs(vs_name))
    )


def _exclusion(ctx: MeasureContext) -> bool:
    unspecified = "Unilateral Mastectomy, Unspecified Laterality"
    right = (
        _diagnosis(ctx, "Status Post Right Mastectomy")
        or _diagnosis(ctx, unspecified, "Right (qualifier value)")
        or _procedure(ctx, "Unilateral Mastectomy Right")
    )
    left = (
        _diagnosis(ctx, "Status Post Left Mastectomy")
        or _diagnosis(ctx, unspecified, "Left (qualifier value)")
        or _procedure(ctx, "Unilateral Mastectomy Left")
    )
    return (
        common.has_hospice_services(ctx)
        or (right and left)
        or _diagnosis(ctx, "History of bilateral mastectomy")
        or _procedure(ctx, "Bilateral Mastectomy")
        or common.advanced_illness_and_frailty(ctx)
        or common.nursing_home_66(ctx)
        or common.has_palliative_care(ctx)
    )


def _window(ctx: MeasureContext) -> Days:
    """Interval["October 1 Two Years Prior to the Measurement Period", end of "Measurement Period"]."""
    w = SPEC["mammography_window"]
    return Days(
        date(ctx.period.start_date.year - w["years_before_period"], w["month"], w["day"]), ctx.period.end_date
    )


def _numerator(ctx: MeasureContext) -> bool:
    window = _window(ctx)
    return any(
        q.study_performed(o) and q.ends_during_days(q.choice_interval(o, "effective", ctx.birth_date), window)
        for o in ctx.retrieve("Observation", SPEC.vs("Mammography"))
    )


def _evidence(ctx: MeasureContext) -> Evidence:
    found = []
    for obs in ctx.retrieve("Observation", SPEC.vs("Mammography")):
        t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
        if q.study_performed(obs) and t is not None:
            found.append((t, concept_text(obs.get("code")) or "mammogram", None))
    return last_evidence("no mammogram on record", found)
