"""CMS131 Diabetes: Eye Exam (DiabetesEyeExamFHIR 0.0.002).

Adults 18-75 at the end of the period with diabetes and a qualifying visit (the measure's own list).
Numerator: with diabetic retinopathy, a retinal exam in the period; without, in the period or the
year before. Excluded: hospice, advanced illness and frailty, nursing home, palliative care.
"""

from __future__ import annotations

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.qicore import Days
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS131")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    ip = common.diabetes_initial_population(ctx, SPEC, SPEC.vss(SPEC["qualifying_encounters"]))
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    exclusion = common.hospice_frailty_nursing_home_or_palliative(ctx)
    retinopathy = any(
        q.overlaps_days(q.prevalence_interval(c, ctx.birth_date), ctx.days)
        for c in ctx.retrieve("Condition", SPEC.vs("Diabetic Retinopathy"))
    )
    window = ctx.days if retinopathy else ctx.days_back(SPEC["lookback_years_without_retinopathy"])
    return [Criteria(True, True, exclusion, _exam_during(ctx, window))], _evidence(ctx)


def _exam_during(ctx: MeasureContext, window: Days) -> bool:
    return any(
        q.exam_performed(o) and q.during_days(q.choice_interval(o, "effective", ctx.birth_date), window)
        for o in ctx.retrieve("Observation", SPEC.vs("Retinal or Dilated Eye Exam"))
    )


def _evidence(ctx: MeasureContext) -> Evidence:
    found = []
    for obs in ctx.retrieve("Observation", SPEC.vs("Retinal or Dilated Eye Exam")):
        t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
        if q.exam_performed(obs) and t is not None:
            found.append((t, concept_text(obs.get("code")) or "retinal exam", None))
    return last_evidence("no retinal eye exam on record", found)
