"""CMS124 Cervical Cancer Screening (CervicalCancerScreeningFHIR 0.0.001).

Women 24-64 at the end of the period with a qualifying visit (the measure's own list); cervical
cytology in the period or 2 years before, or an HPV test at 30 or older in the period or 4 years
before. Excluded: hospice, absence of cervix, palliative care.
"""

from __future__ import annotations

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS124")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    age = ctx.age_at_end()
    ip = (
        age is not None
        and SPEC["age"]["min"] <= age <= SPEC["age"]["max"]
        and ctx.gender == SPEC["sex"]
        and bool(common.qualifying_encounters(ctx, SPEC.vss(SPEC["qualifying_encounters"])))
    )
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    return [Criteria(True, True, _exclusion(ctx), _numerator(ctx))], _evidence(ctx)


def _exclusion(ctx: MeasureContext) -> bool:
    birth, end = ctx.birth_date, ctx.period.end
    return (
        common.has_hospice_services(ctx)
        or any(
            q.procedure_performed(p) and q.ends_on_or_before(q.choice_interval(p, "performed", birth), end)
            for p in ctx.retrieve("Procedure", SPEC.vs("Hysterectomy with No Residual Cervix"))
        )
        or any(
            q.starts_on_or_before(q.prevalence_interval(c, birth), end)
            for c in ctx.retrieve("Condition", SPEC.vs("Congenital or Acquired Absence of Cervix"))
        )
        or common.has_palliative_care(ctx)
    )


def _numerator(ctx: MeasureContext) -> bool:
    birth, lb = ctx.birth_date, SPEC["lookback_years"]
    window = ctx.days_back(lb["Pap Test"])
    for obs in ctx.retrieve("Observation", SPEC.vs("Pap Test")):
        t = q.latest(q.choice_interval(obs, "effective", birth))
        if q.lab_performed(obs) and q.in_days(t, window) and q.has_value(obs):
            return True
    window = ctx.days_back(lb["HPV Test"])
    for obs in ctx.retrieve("Observation", SPEC.vs("HPV Test")):
        t = q.latest(q.choice_interval(obs, "effective", birth))
        age = q.age_at(birth, q.day(t)) if t is not None else None
        if (
            q.lab_performed(obs)
            and age is not None
            and age >= SPEC["hpv_min_age"]
            and q.in_days(t, window)
            and q.has_value(obs)
        ):
            return True
    return False


def _evidence(ctx: MeasureContext) -> Evidence:
    found = []
    for name in ("Pap Test", "HPV Test"):
        for obs in ctx.retrieve("Observation", SPEC.vs(name)):
            t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
            if q.lab_performed(obs) and t is not None:
                found.append((t, concept_text(obs.get("code")) or name, None))
    return last_evidence("no cervical cytology or HPV test on record", found)
