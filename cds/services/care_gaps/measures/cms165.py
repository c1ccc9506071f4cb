"""CMS165 Controlling High Blood Pressure (ControllingHighBloodPressureFHIR 0.1.000).

Adults 18-85 at the end of the period with essential hypertension overlapping its first six months
and a qualifying visit. Numerator: the lowest systolic < 140 and the lowest diastolic < 90 on the
most recent day with an outpatient blood pressure in the period (readings from emergency,
inpatient and similar encounters do not count). Excluded: hospice, pregnancy/ESRD/kidney
transplant/CKD 5, dialysis or transplant, ESRD services, frailty (with advanced illness at 66-80),
nursing home, palliative care.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.period import add_months
from cds.services.care_gaps.measures.qicore import Interval
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS165")
_MMHG = ("mm[Hg]", "mmHg", "")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    age = ctx.age_at_end()
    ip = (
        age is not None
        and SPEC["age"]["min"] <= age <= SPEC["age"]["max"]
        and _hypertension(ctx)
        and bool(common.qualifying_encounters(ctx))
    )
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    reading = lowest_on_most_recent_day(ctx)
    controlled = (
        reading is not None
        and reading[1] is not None
        and reading[2] is not None
        and reading[1] < SPEC["systolic_below"]
        and reading[2] < SPEC["diastolic_below"]
    )
    return [Criteria(True, True, _exclusion(ctx), controlled)], _evidence(ctx, reading)


def _hypertension(ctx: MeasureContext) -> bool:
    """ "Essential Hypertension Diagnosis": overlaps Interval[start of MP, start of MP + 6 months)."""
    end = datetime.combine(
        add_months(ctx.period.start_date, SPEC["hypertension_window_months"]),
        datetime.min.time(),
        ctx.period.start.tzinfo,
    ) - timedelta(milliseconds=1)
    window = Interval(ctx.period.start, end)
    return any(
        q.overlaps(q.prevalence_interval(c, ctx.birth_date), window)
        for c in ctx.retrieve("Condition", SPEC.vs("Essential Hypertension"))
    )


def _exclusion(ctx: MeasureContext) -> bool:
    birth, end = ctx.birth_date, ctx.period.end
    diagnoses = SPEC.vss(
        [
            "Pregnancy",
            "End Stage Renal Disease",
            "Kidney Transplant Recipient",
            "Chronic Kidney Disease, Stage 5",
        ]
    )
    return (
        common.has_hospice_services(ctx)
        or any(
            q.overlaps(q.prevalence_interval(c, birth), ctx.interval)
            for c in ctx.retrieve("Condition", *diagnoses)
        )
        or any(
            q.procedure_performed(p) and q.ends_on_or_before(q.choice_interval(p, "performed", birth), end)
            for p in ctx.retrieve("Procedure", *SPEC.vss(["Kidney Transplant", "Dialysis Services"]))
        )
        or any(
            q.encounter_performed(e) and q.starts_on_or_before(q.period_interval(e.get("period")), end)
            for e in ctx.retrieve("Encounter", SPEC.vs("ESRD Monthly Outpatient Services"))
        )
        or common.advanced_illness_and_frailty_or_frail_81(ctx)
        or common.nursing_home_66(ctx)
        or common.has_palliative_care(ctx)
    )


def _component(obs: dict[str, Any], name: str) -> float | None:
    """`singleton from (component where code ~ X return value as Quantity)` in mm[Hg]."""
    system, code = SPEC.code(name)
    values = []
    for comp in q.items(obs.get("component")):
        if isinstance(comp, dict) and q.has_code(comp.get("code"), system, code):
            v = comp.get("valueQuantity")
            if isinstance(v, dict) and isinstance(v.get("value"), int | float):
                unit = str(v.get("code") or v.get("unit") or "")
                values.append(float(v["value"]) if unit in _MMHG else None)
            else:
                values.append(None)
    return values[0] if len(values) == 1 else None


def qualifying_readings(ctx: MeasureContext) -> list[tuple[datetime, dict[str, Any]]]:
    """ "Qualifying Systolic/Diastolic Blood Pressure Reading": final BP panels in the period, not
    from an emergency, inpatient, pre-admission or short-stay encounter."""

    def compute() -> list[tuple[datetime, dict[str, Any]]]:
        excluded = set(SPEC["excluded_encounter_classes"])
        out = []
        for obs in ctx.retrieve("Observation", SPEC.code("Blood pressure panel")):
            if not q.study_performed(obs):
                continue
            enc = ctx.encounter(obs.get("encounter"))
            cls = enc.get("class") if enc else None
            if isinstance(cls, dict) and isinstance(cls.get("code"), str) and cls["code"] in excluded:
                continue
            t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
            if t is not None and q.in_days(t, ctx.days):
                out.append((t, obs))
        return out

    return ctx.memo("CMS165.QualifyingBP", compute)


def lowest_on_most_recent_day(ctx: MeasureContext) -> tuple[date, float | None, float | None] | None:
    """(most recent BP day, lowest systolic, lowest diastolic); a reading without a value sorts first."""
    readings = qualifying_readings(ctx)
    if not readings:
        return None
    last_day = max(q.day(t) for t, _ in readings)
    that_day = [o for t, o in readings if q.day(t) == last_day]

    def lowest(name: str) -> float | None:
        values = [_component(o, name) for o in that_day]
        return None if any(v is None for v in values) else min(values)  # type: ignore[type-var]

    return last_day, lowest("Systolic blood pressure"), lowest("Diastolic blood pressure")


def _evidence(ctx: MeasureContext, reading: tuple[date, float | None, float | None] | None) -> Evidence:
    if reading is not None:
        _, sbp, dia = reading
        t = max(t for t, _ in qualifying_readings(ctx) if q.day(t) == reading[0])
        value = f"{sbp:g}/{dia:g} mmHg" if sbp is not None and dia is not None else "incomplete reading"
        high = (sbp is not None and sbp >= SPEC["systolic_below"]) or (
            dia is not None and dia >= SPEC["diastolic_below"]
        )
        return Evidence(label="blood pressure", when=t, value=value, out_of_control=high)
    found = []
    for obs in ctx.retrieve("Observation", SPEC.code("Blood pressure panel")):
        when = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
        sbp, dia = _component(obs, "Systolic blood pressure"), _component(obs, "Diastolic blood pressure")
        if q.study_performed(obs) and when is not None and sbp is not None and dia is not None:
            found.append((when, "blood pressure", f"{sbp:g}/{dia:g} mmHg"))
    return last_evidence("no blood pressure on record", found)
