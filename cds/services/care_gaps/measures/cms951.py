"""CMS951 Kidney Health Evaluation (KidneyHealthEvaluationFHIR 0.1.000).

Adults 18-85 at the START of the period with active diabetes and a finished outpatient visit in
the period. Numerator: both an eGFR and a urine albumin-creatinine ratio with a result in the
period. Excluded: active CKD stage 5 or ESRD, hospice, palliative care.
"""

from __future__ import annotations

from cds.fhir.terminology import concept_text
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS951")
_TESTS = ("Estimated Glomerular Filtration Rate", "Urine Albumin Creatinine Ratio")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    age = ctx.age_at_start()
    ip = (
        age is not None
        and SPEC["age"]["min"] <= age <= SPEC["age"]["max"]
        and _active_in_period(ctx, SPEC.vs("Diabetes"))
        and any(
            e.get("status") == "finished" and q.during(q.period_interval(e.get("period")), ctx.interval)
            for e in ctx.retrieve("Encounter", *SPEC.vss(SPEC["qualifying_encounters"]))
        )
    )
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    exclusion = (
        _active_in_period(ctx, *SPEC.vss(["Chronic Kidney Disease, Stage 5", "End Stage Renal Disease"]))
        or common.has_hospice_services(ctx)
        or common.has_palliative_care(ctx)
    )
    numerator = all(_test_in_period(ctx, name) for name in _TESTS)
    return [Criteria(True, True, exclusion, numerator)], _evidence(ctx)


def _active_in_period(ctx: MeasureContext, *oids: str) -> bool:
    """A condition overlapping the days of the period whose clinical status is `active`."""
    return any(
        q.overlaps_days(q.prevalence_interval(c, ctx.birth_date), ctx.days)
        and q.clinical_status_is(c, "active")
        for c in ctx.retrieve("Condition", *oids)
    )


def _test_in_period(ctx: MeasureContext, name: str) -> bool:
    return any(
        q.during_days(q.choice_interval(o, "effective", ctx.birth_date), ctx.days)
        and q.has_value(o)
        and q.status(o) in q.OBSERVATION_DONE
        for o in ctx.retrieve("Observation", SPEC.vs(name))
    )


def _evidence(ctx: MeasureContext) -> Evidence:
    """The newest of either test, with the last date of each (which one is missing matters)."""
    found = []
    lasts = []
    for name, short in zip(_TESTS, ("eGFR", "urine albumin-creatinine ratio"), strict=True):
        times = []
        for obs in ctx.retrieve("Observation", SPEC.vs(name)):
            t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
            if q.status(obs) in q.OBSERVATION_DONE and t is not None:
                times.append(t)
                found.append((t, concept_text(obs.get("code")) or name, None))
        lasts.append(f"{short} {max(times).date().isoformat()}" if times else f"no {short}")
    ev = last_evidence("no eGFR or urine albumin-creatinine ratio on record", found)
    return Evidence(label=ev.label, when=ev.when, value="; ".join(lasts) if found else None)
