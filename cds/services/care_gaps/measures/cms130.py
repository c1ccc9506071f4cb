"""CMS130 Colorectal Cancer Screening (ColonCancerScreeningFHIR 0.1.000).

Adults 46-75 at the end of the period with a qualifying visit; screened by FOBT in the period,
FIT-DNA within 3 years, sigmoidoscopy or CT colonography within 5, colonoscopy within 10 (the
period plus N prior years). Excluded: hospice, colorectal cancer, total colectomy, advanced illness
and frailty, nursing home, palliative care.
"""

from __future__ import annotations

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS130")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    age = ctx.age_at_end()
    ip = (
        age is not None
        and SPEC["age"]["min"] <= age <= SPEC["age"]["max"]
        and bool(common.qualifying_encounters(ctx))
    )
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    return [Criteria(True, True, _exclusion(ctx), _numerator(ctx))], _evidence(ctx)


def _exclusion(ctx: MeasureContext) -> bool:
    birth, end_day = ctx.birth_date, ctx.period.end_date
    return (
        common.has_hospice_services(ctx)
        or any(
            q.starts_on_or_before_day(q.prevalence_interval(c, birth), end_day)
            for c in ctx.retrieve("Condition", SPEC.vs("Malignant Neoplasm of Colon"))
        )
        or any(
            q.procedure_performed(p)
            and q.ends_on_or_before_day(q.choice_interval(p, "performed", birth), end_day)
            for p in ctx.retrieve("Procedure", SPEC.vs("Total Colectomy"))
        )
        or common.advanced_illness_and_frailty(ctx)
        or common.nursing_home_66(ctx)
        or common.has_palliative_care(ctx)
    )


def _numerator(ctx: MeasureContext) -> bool:
    lb, birth = SPEC["lookback_years"], ctx.birth_date
    for name in ("Fecal Occult Blood Test (FOBT)", "sDNA FIT Test"):
        window = ctx.days_back(lb[name])
        for obs in ctx.retrieve("Observation", SPEC.vs(name)):
            if (
                q.lab_performed(obs)
                and q.has_value(obs)
                and q.in_days(q.latest(q.choice_interval(obs, "effective", birth)), window)
            ):
                return True
    for name in ("Flexible Sigmoidoscopy", "Colonoscopy"):
        window = ctx.days_back(lb[name])
        for proc in ctx.retrieve("Procedure", SPEC.vs(name)):
            if q.procedure_performed(proc) and q.ends_during_days(
                q.choice_interval(proc, "performed", birth), window
            ):
                return True
    window = ctx.days_back(lb["CT Colonography"])
    return any(
        q.study_performed(o) and q.ends_during_days(q.choice_interval(o, "effective", birth), window)
        for o in ctx.retrieve("Observation", SPEC.vs("CT Colonography"))
    )


def _evidence(ctx: MeasureContext) -> Evidence:
    found = []
    birth = ctx.birth_date
    for name in ("Fecal Occult Blood Test (FOBT)", "sDNA FIT Test", "CT Colonography"):
        for obs in ctx.retrieve("Observation", SPEC.vs(name)):
            t = q.latest(q.choice_interval(obs, "effective", birth))
            if q.study_performed(obs) and t is not None:
                found.append((t, concept_text(obs.get("code")) or name, None))
    for name in ("Flexible Sigmoidoscopy", "Colonoscopy"):
        for proc in ctx.retrieve("Procedure", SPEC.vs(name)):
            t = q.latest(q.choice_interval(proc, "performed", birth))
            if q.procedure_performed(proc) and t is not None:
                found.append((t, concept_text(proc.get("code")) or name, None))
    return last_evidence("no colorectal cancer screening on record", found)
